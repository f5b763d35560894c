"""UCF101: find the clips, split them without leaking actors, decode them into a uint8 cache.

Two layouts are understood (:mod:`vidpred.data.ucf101_layout` finds the clips in either, splits
them and downloads the Kaggle copy):

* the original archive: ``UCF-101/<Class>/v_<Class>_gXX_cYY.avi`` with, when present,
  ``ucfTrainTestlist/{classInd,trainlist0N,testlist0N}.txt``;
* the Kaggle copy (``matthewjansen/ucf101-action-recognition``): ``train|val|test/<Class>/`` with
  ``train.csv``/``val.csv``/``test.csv`` whose ``clip_path`` starts with ``/`` (relative to the root).

The Kaggle split is random by clip, so one actor's clips land in train and in test; by default we
split by the group number instead (official split 1: test = groups 1–7).

Any UCF101 classes can be selected (``DataConfig.classes``, ``--classes``); the five exercise
classes are the default. Frames are centre-cropped to a square before resizing (``crop``), since
UCF101 frames are 4:3 (:mod:`vidpred.data.videos` reads them). This module holds :func:`prepare`,
which reports what it did not use and why, and repairs its cache; the names of the other two
modules are importable from here too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import DataConfig, config_hash
from ..utils import atomic_write, json_text, remove_stale_temp_files
from .ucf101_layout import (
    BAD_NAME,
    CLIP_NAME,
    KAGGLE_COLUMNS,
    KAGGLE_DATASET,
    LEAVES_ROOT,
    NO_PATH_OR_LABEL,
    OFFICIAL_TEST_GROUPS,
    VAL_GROUPS,
    Scan,
    VideoFile,
    assign_splits,
    detect_layout,
    download_kaggle,
    few,
    find_clips,
    parse_name,
    scan_clips,
)
from .videos import (
    CROPS,
    MAX_VIDEO_BYTES,
    VIDEO_SUFFIXES,
    VideoError,
    decode_video,
    load_cached,
    not_cached_line,
    open_regular,
    sha256_file,
    square_crop,
)
from .windows import Clip

__all__ = ["BAD_NAME", "CLIP_NAME", "CROPS", "KAGGLE_COLUMNS", "KAGGLE_DATASET", "LEAVES_ROOT", "MAX_VIDEO_BYTES",
           "NO_PATH_OR_LABEL", "OFFICIAL_TEST_GROUPS", "VAL_GROUPS", "VIDEO_SUFFIXES", "Clip", "PrepareReport", "Scan",
           "VideoError", "VideoFile", "assign_splits", "decode_video", "detect_layout", "download_kaggle", "few",
           "find_clips", "load_cached", "log", "not_cached_line", "open_regular", "parse_name", "prepare", "scan_clips",
           "sha256_file", "square_crop"]

log = logging.getLogger(__name__)


@dataclass
class PrepareReport:
    """What :func:`prepare` did: clips per split, what it reused, what it skipped or left out and why."""

    cache_dir: Path
    clips: dict[str, list[Clip]] = field(default_factory=dict)
    decoded: int = 0
    reused: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # source path -> reason
    rebuilt: dict[str, str] = field(default_factory=dict)  # cache file -> why it was decoded again
    other_classes: dict[str, int] = field(default_factory=dict)  # unselected class -> clips
    ignored: dict[str, list[str]] = field(default_factory=dict)  # reason -> paths not used
    missing_classes: list[str] = field(default_factory=list)  # selected classes with no clip in the data
    cleaned: list[str] = field(default_factory=list)  # stale temporary files and entries of deleted sources
    not_cached: str | None = None  # why decoded clips could not be written to the cache


def _empty_split(split: str, files: list[VideoFile], splits: dict[str, str], report: PrepareReport,
                 cfg: DataConfig, root: Path) -> str:
    """Why ``split`` has no clip, and what to do: one line."""
    mine = [f for f in files if splits[f.name] == split]
    if mine:
        first = next((str(f.path) for f in mine if str(f.path) in report.skipped), str(mine[0].path))
        return (f"the {split} split is empty: its {len(mine)} video(s) were all skipped ({first}: "
                f"{report.skipped.get(first, 'unusable')}); replace them or add clips")
    classes = f"the selected classes ({few(cfg.classes)})"
    if cfg.split == "kaggle":
        return (f"the {split} split is empty: {root}/{split}.csv and {root}/{split}/ hold no clip of {classes}; "
                "add clips there or pass --split group")
    official = all(f.split in ("train", "test") for f in files) and any(f.split == "test" for f in files)
    where = {"test": "in ucfTrainTestlist/testlist01.txt" if official else "of groups 1–7",
             "val": "of groups 8–10 outside the test split",
             "train": "outside the test split and groups 8–10" if official else "of groups 11 and above"}[split]
    hint = " or pass --split kaggle" if detect_layout(root) == "kaggle" else ""
    return f"the {split} split is empty: no clip {where} among {classes}; add such clips{hint}"


def prepare(cfg: DataConfig, root: str | Path | None = None, progress: bool = False) -> PrepareReport:
    """Decode the clips of ``cfg`` into ``cfg.cache_dir`` and return them split.

    The cache folder is named by a hash of the preprocessing config, so a changed config builds a
    new cache. Each clip is written atomically and the manifest after it, so an interrupted run
    resumes where it stopped; a source whose sha256 changed is decoded again, and so is a cached
    clip that is truncated or does not match the manifest (reported in ``rebuilt``). Nothing is
    written when nothing changed, so a complete read-only cache works; where the cache folder cannot be made
    (a read-only disk) the clips are decoded in memory and ``not_cached`` says why. Unusable videos (corrupt,
    unreadable, not a regular file, shorter than one window) are skipped and reported, never fatal;
    an empty split is an error that says why.
    """
    root = Path(root or cfg.data_dir or "")
    if not str(root):
        raise ValueError("UCF101 needs a folder: pass --data-dir (or download with --download)")
    if cfg.crop not in CROPS:
        raise ValueError(f"unknown crop {cfg.crop!r}; choose {' or '.join(CROPS)}")
    scan = scan_clips(root, cfg.classes)
    files = scan.files
    splits = assign_splits(files, cfg.split)
    key = config_hash({"size": cfg.image_size, "classes": list(cfg.classes), "split": cfg.split,
                       "crop": cfg.crop, "root": str(root.resolve())})
    cache = Path(cfg.cache_dir) / f"ucf101-{key}"
    frames_dir = cache / "frames"
    manifest_path = cache / "manifest.json"
    report = PrepareReport(cache, {"train": [], "val": [], "test": []}, other_classes=dict(scan.other_classes),
                           ignored=scan.ignored, missing_classes=scan.missing)
    if not frames_dir.is_dir():
        try:
            frames_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # an empty cache on a read-only disk: decode in memory, as below when a write fails
            report.not_cached = f"{cache}: {err.strerror or err}"
    writable = not report.not_cached
    stored: dict = {}
    if manifest_path.exists():
        try:
            stored = json.loads(manifest_path.read_text())
        except ValueError as err:
            report.rebuilt[str(manifest_path)] = f"not valid JSON ({err}); every clip is checked again"
    manifest = json.loads(json_text(stored))  # a copy, compared with what is on disk before writing
    manifest.update(config_hash=key, image_size=cfg.image_size, classes=list(cfg.classes), split=cfg.split,
                    crop=cfg.crop)
    entries: dict = manifest.setdefault("clips", {})
    min_frames = (cfg.window_length - 1) * cfg.frame_step + 1

    report.cleaned += [str(p) for p in remove_stale_temp_files(frames_dir) + remove_stale_temp_files(cache)]
    used = {f.name for f in files}
    for name, entry in list(entries.items()):  # clips whose source was deleted
        if name not in used and not os.path.lexists(entry.get("source", "")):
            entries.pop(name)
            report.cleaned.append(f"{name} (its source {entry.get('source')} is gone)")
            with contextlib.suppress(OSError):
                (frames_dir / f"{name}.npy").unlink(missing_ok=True)

    def save_manifest() -> None:
        nonlocal stored
        manifest["skipped"] = report.skipped
        if manifest == stored or not writable:
            return  # nothing changed: a read-only cache stays usable
        try:
            atomic_write(manifest_path, lambda h: h.write(json_text(manifest, indent=1).encode()))
            stored = json.loads(json_text(manifest))
        except OSError as err:
            report.not_cached = report.not_cached or f"{cache}: {err.strerror or err}"

    bar = files
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(files, desc="decode", unit="clip")
    for f in bar:
        frames_path = frames_dir / f"{f.name}.npy"
        try:
            digest = sha256_file(f.path)
        except VideoError as err:
            report.skipped[str(f.path)] = str(err).split(": ", 1)[-1]
            continue
        entry = entries.get(f.name)
        frames = None
        if entry and entry.get("sha256") == digest:
            frames, why = load_cached(frames_path, entry.get("frames"), cfg.image_size)
            if frames is None:
                report.rebuilt[str(frames_path)] = why
            else:
                report.reused += 1
        if frames is None:
            try:
                frames = decode_video(f.path, cfg.image_size, crop=cfg.crop)
            except VideoError as err:
                report.skipped[str(f.path)] = str(err).split(": ", 1)[-1]
                entries.pop(f.name, None)
                save_manifest()
                continue
            report.decoded += 1
            if writable:  # else not_cached already says why the frames are not kept
                try:
                    atomic_write(frames_path, lambda h, a=frames: np.save(h, a))
                except OSError as err:  # a read-only or full cache: use the frames, say they were not kept
                    report.not_cached = report.not_cached or f"{cache}: {err.strerror or err}"
                    entries.pop(f.name, None)
                else:
                    entries[f.name] = {"source": str(f.path), "label": f.label, "group": f.group,
                                       "split": splits[f.name], "frames": int(len(frames)), "sha256": digest}
                    save_manifest()
        if len(frames) < min_frames:
            report.skipped[str(f.path)] = (f"too short: {len(frames)} frames, a window needs {min_frames}")
            continue
        report.clips[splits[f.name]].append(Clip(f.name, f.label, f.group, frames))
    save_manifest()
    for split in ("train", "val", "test"):
        if not report.clips[split]:
            raise ValueError(_empty_split(split, files, splits, report, cfg, root))
    return report
