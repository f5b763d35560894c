"""UCF101: find the clips, split them without leaking actors, decode them into a uint8 cache.

Two layouts are understood:

* the original archive: ``UCF-101/<Class>/v_<Class>_gXX_cYY.avi`` with, when present,
  ``ucfTrainTestlist/{classInd,trainlist0N,testlist0N}.txt``;
* the Kaggle copy (``matthewjansen/ucf101-action-recognition``): ``train|val|test/<Class>/`` with
  ``train.csv``/``val.csv``/``test.csv`` whose ``clip_path`` starts with ``/`` (relative to the root).

The Kaggle split is random by clip, so one actor's clips land in train and in test; by default we
split by the group number instead (official split 1: test = groups 1–7).

Any UCF101 classes can be selected (``DataConfig.classes``, ``--classes``); the five exercise
classes are the default. Frames are centre-cropped to a square before resizing (``crop``), since
UCF101 frames are 4:3. :func:`prepare` reports what it did not use and why, and repairs its cache.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..config import DataConfig, config_hash
from ..utils import atomic_write, json_text, remove_stale_temp_files
from .windows import Clip

KAGGLE_DATASET = "matthewjansen/ucf101-action-recognition"
CLIP_NAME = re.compile(r"v_(?P<label>[A-Za-z]+)_g(?P<group>\d+)_c(?P<clip>\d+)", re.IGNORECASE)
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm")
OFFICIAL_TEST_GROUPS = range(1, 8)  # split 1 of the official lists
VAL_GROUPS = range(8, 11)  # taken out of the training groups
CROPS = ("center", "none")  # centre square crop before resizing, or squash the whole frame
MAX_VIDEO_BYTES = 2 << 30  # a UCF101 clip is < 30 MB; anything over 2 GiB is not one of them
KAGGLE_COLUMNS = ("clip_path", "label")
BAD_NAME = "not named v_<Class>_gXX_cYY"
LEAVES_ROOT = "listed in a Kaggle CSV with a clip_path that leaves the data folder (not read)"
NO_PATH_OR_LABEL = "listed in a Kaggle CSV row without a clip_path or a label"

log = logging.getLogger(__name__)


class VideoError(ValueError):
    """A video that cannot be used; the message names the file and the reason."""


@dataclass
class VideoFile:
    path: Path
    name: str  # v_<Class>_gXX_cYY
    label: str
    group: int
    split: str | None = None  # the split the layout itself assigns (Kaggle folders / official lists)


@dataclass
class Scan:
    """What :func:`scan_clips` found: the videos to use, and what it left out and why."""

    files: list[VideoFile] = field(default_factory=list)
    other_classes: Counter = field(default_factory=Counter)  # class not selected -> clips
    ignored: dict[str, list[str]] = field(default_factory=dict)  # reason -> paths
    missing: list[str] = field(default_factory=list)  # selected classes with no clip

    def ignore(self, reason: str, path: str | Path) -> None:
        self.ignored.setdefault(reason, []).append(str(path))


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


def few(names, n: int = 5) -> str:
    """'a, b, c' or 'a, b, c, … and 7 more'."""
    names = list(names)
    shown = ", ".join(map(str, names[:n]))
    return shown if len(names) <= n else f"{shown} and {len(names) - n} more"


def parse_name(path: str | Path) -> tuple[str, str, int]:
    """(clip name, class, group) from a UCF101 file name such as ``v_PushUps_g03_c02.avi``."""
    match = CLIP_NAME.search(Path(path).name)
    if not match:
        raise VideoError(f"{path}: not a UCF101 clip name (expected v_<Class>_gXX_cYY)")
    return match.group(0), match.group("label"), int(match.group("group"))


def detect_layout(root: str | Path) -> str:
    """'kaggle' or 'original'; a clear error when ``root`` holds neither."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"UCF101 folder {root} does not exist")
    if any((root / f"{s}.csv").exists() or (root / s).is_dir() for s in ("train", "val", "test")):
        return "kaggle"
    if (root / "UCF-101").is_dir() or any(p.is_dir() and p.name[:1].isupper() for p in root.iterdir()):
        return "original"
    raise FileNotFoundError(f"{root} holds neither the original UCF-101/<Class>/ layout nor the "
                            "Kaggle train|val|test/<Class>/ layout")


def _videos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES) if folder.is_dir() else []


def _add(scan: Scan, path: Path, label: str, split: str | None) -> None:
    try:
        name, _, group = parse_name(path)
    except VideoError:
        scan.ignore(BAD_NAME, path)
        return
    scan.files.append(VideoFile(path, name, label, group, split))


def _read_kaggle_csv(table: Path) -> list[dict[str, str]]:
    with open(table, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in KAGGLE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{table} has no {' or '.join(repr(c) for c in missing)} column (columns: "
                             f"{', '.join(reader.fieldnames or []) or 'none'}); the Kaggle CSVs have "
                             "clip_name,clip_path,label — re-download it, or delete the CSVs to use the folders")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{table} lists no clips; re-download it, or delete it to use the "
                         f"{table.stem}/<Class>/ folder as it is")
    return rows


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` stays in ``root`` once its ``..`` are applied (links inside the folder are the user's own)."""
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(root))


def _find_kaggle(root: Path, classes: set[str], scan: Scan) -> None:
    for split in ("train", "val", "test"):
        table = root / f"{split}.csv"
        if table.exists():
            listed = set()
            for number, row in enumerate(_read_kaggle_csv(table), start=1):
                # clip_path is written as '/train/PushUps/v_...avi': relative to the root.
                listed_as, label = row["clip_path"] or "", row["label"] or ""  # None in a short row
                if not listed_as.strip("/\\") or not label:
                    scan.ignore(NO_PATH_OR_LABEL, f"data row {number} of {table}")
                    continue
                path = root / listed_as.lstrip("/\\")
                if not _inside(path, root):  # '/../other/x.avi': never read a file outside the data folder
                    scan.ignore(LEAVES_ROOT, f"{listed_as} in {table}")
                    continue
                listed.add(path)
                if label not in classes:
                    scan.other_classes[label] += 1
                elif not os.path.lexists(path):
                    scan.ignore("listed in a Kaggle CSV but missing", f"{path} ({table.name})")
                else:
                    _add(scan, path, label, split)
            for cls in sorted(classes):
                for path in _videos(root / split / cls):
                    if path not in listed:
                        scan.ignore("present but not listed in the Kaggle CSV of its split", path)
        elif (root / split).is_dir():
            for folder in sorted(p for p in (root / split).iterdir() if p.is_dir()):
                if folder.name not in classes:
                    scan.other_classes[folder.name] += len(_videos(folder))
                    continue
                for path in _videos(folder):
                    _add(scan, path, folder.name, split)


def _official_test_names(root: Path, split_number: int = 1) -> set[str] | None:
    for lists in (root / "ucfTrainTestlist", root.parent / "ucfTrainTestlist"):
        test_list = lists / f"testlist0{split_number}.txt"
        if test_list.exists():
            return {Path(line.split()[0]).stem for line in test_list.read_text().splitlines() if line.strip()}
    return None


def _find_original(root: Path, classes: set[str], scan: Scan) -> None:
    videos = root / "UCF-101" if (root / "UCF-101").is_dir() else root
    test_names = _official_test_names(root)
    for folder in sorted(p for p in videos.iterdir() if p.is_dir()):
        if folder.name not in classes:
            if n := len(_videos(folder)):
                scan.other_classes[folder.name] += n
            continue
        for path in _videos(folder):
            split = None if test_names is None else ("test" if path.stem in test_names else "train")
            _add(scan, path, folder.name, split)


def scan_clips(root: str | Path, classes: tuple[str, ...]) -> Scan:
    """The videos of ``classes`` under ``root`` (either layout), and what was left out and why.

    A file that is not named like a clip, a second file of one clip name, a Kaggle file its CSV does
    not list: each is left out and reported, never fatal. Selected classes with no clip are listed
    in ``missing``; when no selected class has one, it is an error.
    """
    root = Path(root)
    scan = Scan()
    (_find_kaggle if detect_layout(root) == "kaggle" else _find_original)(root, set(classes), scan)
    by_name: dict[str, VideoFile] = {}
    for f in sorted(scan.files, key=lambda f: (f.name, str(f.path))):
        if f.name in by_name:
            scan.ignore("a second file of one clip name (the first is used)", f.path)
        else:
            by_name[f.name] = f
    scan.files = list(by_name.values())
    scan.missing = [c for c in classes if c not in {f.label for f in scan.files}]
    if not scan.files:
        there = f"classes there: {few(sorted(scan.other_classes), 8)}" if scan.other_classes else "no other class either"
        raise FileNotFoundError(f"no clip of {', '.join(classes)} under {root} ({there}); check --classes: "
                                "UCF101 names such as ApplyEyeMakeup, comma-separated")
    return scan


def find_clips(root: str | Path, classes: tuple[str, ...]) -> list[VideoFile]:
    """Every video of ``classes`` under ``root``, in either layout."""
    return scan_clips(root, classes).files


def assign_splits(files: list[VideoFile], mode: str = "group") -> dict[str, str]:
    """name -> 'train' | 'val' | 'test'.

    ``group``: official split 1 where the lists exist, else test = groups 1–7, and val = groups
    8–10 of the rest, so no actor is in two splits. ``kaggle``: the folders as given (leaks actors).
    """
    if mode == "kaggle":
        missing = [f.path for f in files if f.split is None]
        if missing:
            raise ValueError(f"split 'kaggle' needs the Kaggle layout; {missing[0]} has no split folder")
        return {f.name: f.split for f in files}
    if mode != "group":
        raise ValueError(f"unknown split {mode!r}; choose 'group' or 'kaggle'")
    has_official = all(f.split in ("train", "test") for f in files) and any(f.split == "test" for f in files)
    splits = {}
    for f in files:
        test = f.split == "test" if has_official else f.group in OFFICIAL_TEST_GROUPS
        splits[f.name] = "test" if test else "val" if f.group in VAL_GROUPS else "train"
    return splits


def open_regular(path: str | Path) -> int:
    """A read-only descriptor of ``path`` if it is a regular file (links resolved), else VideoError.

    Opened non-blocking and checked with ``fstat``, so a FIFO, a device such as /dev/zero or a
    folder named like a clip is refused at once instead of hanging or reading forever.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise VideoError(f"{path}: cannot open it: {err.strerror or err}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_VIDEO_BYTES:
        os.close(fd)
        kind = ("a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device" if stat.S_ISCHR(info.st_mode) or
                stat.S_ISBLK(info.st_mode) else "a folder" if stat.S_ISDIR(info.st_mode) else
                "a socket" if stat.S_ISSOCK(info.st_mode) else f"{info.st_size} bytes, over the {MAX_VIDEO_BYTES >> 30} GiB limit"
                if stat.S_ISREG(info.st_mode) else "not a regular file")
        target = f" (a link to {os.path.realpath(path)})" if os.path.islink(path) else ""
        raise VideoError(f"{path}: not a video file: {kind}{target}")
    return fd


def square_crop(frame: np.ndarray, crop: str = "center") -> np.ndarray:
    """The centred square of ``frame`` (``crop='center'``), or the frame itself (``'none'``)."""
    if crop == "none":
        return frame
    if crop != "center":
        raise ValueError(f"unknown crop {crop!r}; choose {' or '.join(CROPS)}")
    height, width = frame.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return frame[top : top + side, left : left + side]


def decode_video(path: str | Path, size: int = 64, max_frames: int | None = None,
                 crop: str = "none") -> np.ndarray:
    """Frames (T, size, size) uint8: decoded with OpenCV, grayscale, cropped, resized with INTER_AREA.

    ``crop='center'`` keeps the centred square of each frame (no distortion); the default squashes
    the whole frame. :func:`prepare` passes ``DataConfig.crop``.
    """
    os.close(open_regular(path))  # refuse FIFOs and devices before OpenCV blocks on them
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoError(f"{path}: OpenCV cannot open it (missing, not a video, or an unknown codec)")
    frames = []
    try:
        while max_frames is None or len(frames) < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            if frame.ndim == 3:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            frames.append(cv2.resize(square_crop(frame, crop), (size, size), interpolation=cv2.INTER_AREA))
    finally:
        capture.release()
    if not frames:
        raise VideoError(f"{path}: no frame could be decoded (corrupt or empty file)")
    return np.stack(frames)


def sha256_file(path: Path) -> str:
    """The sha256 of a regular file, read at most to :data:`MAX_VIDEO_BYTES`; VideoError otherwise."""
    digest = hashlib.sha256()
    with os.fdopen(open_regular(path), "rb") as handle:
        remaining = MAX_VIDEO_BYTES
        while remaining > 0 and (block := handle.read(min(1 << 20, remaining))):
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


def load_cached(path: Path, expected_frames: int | None, size: int) -> tuple[np.ndarray | None, str]:
    """(frames, '') from a cached ``.npy``, or (None, why it cannot be used)."""
    if not path.exists():
        return None, "missing from the cache"
    try:
        frames = np.load(path, allow_pickle=False)
    except Exception as err:  # truncated or empty: EOFError, ValueError, OSError, …
        return None, f"unreadable ({type(err).__name__}: {err or 'no data'})"
    if frames.dtype != np.uint8 or frames.ndim != 3 or frames.shape[1:] != (size, size):
        return None, f"holds {frames.dtype} {tuple(frames.shape)}, not uint8 (T, {size}, {size})"
    if len(frames) != expected_frames:
        return None, f"{len(frames)} frames where the manifest says {expected_frames}"
    return frames, ""


def not_cached_line(not_cached: str, cache_dir: str) -> str:
    """What `vidpred prepare` says when it could not write the cache: the folder, why, and how to keep the clips."""
    return (f"could not write the cache {not_cached}; the clips were decoded in memory only and will be decoded "
            f"again next time: to keep them, run vidpred from a folder where {cache_dir} can be written")


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


def _unreachable(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) is a network failure."""
    import socket

    try:
        from requests.exceptions import ConnectionError as RequestsConnectionError
        from requests.exceptions import Timeout
        network: tuple[type, ...] = (RequestsConnectionError, Timeout, ConnectionError, socket.gaierror, TimeoutError)
    except ImportError:
        network = (ConnectionError, socket.gaierror, TimeoutError)
    seen = 0
    while err is not None and seen < 20:
        if isinstance(err, network):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def download_kaggle() -> Path:
    """Download the Kaggle copy of UCF101 with kagglehub (needs Kaggle credentials) and return its root."""
    try:
        import kagglehub
    except ImportError as err:
        raise RuntimeError("downloading UCF101 needs kagglehub: pip install kagglehub") from err
    try:
        path = Path(kagglehub.dataset_download(KAGGLE_DATASET))
    except Exception as err:
        if not _unreachable(err):
            raise
        raise RuntimeError(f"Kaggle is unreachable from here ({type(err).__name__}); download {KAGGLE_DATASET} "
                           "(or the original UCF101 archive) on a machine with network, copy it here and pass "
                           "--data-dir <folder> (either layout) instead of --download") from None
    # The archive may unpack into one sub-folder; return the folder that holds the layout.
    for candidate in (path, *sorted(p for p in path.iterdir() if p.is_dir())):
        try:
            detect_layout(candidate)
            return candidate
        except FileNotFoundError:
            continue
    raise FileNotFoundError(f"kagglehub downloaded {KAGGLE_DATASET} to {path}, but no UCF101 layout is in it")
