"""UCF101: find the clips, split them without leaking actors, decode them into a uint8 cache.

Two layouts are understood:

* the original archive: ``UCF-101/<Class>/v_<Class>_gXX_cYY.avi`` with, when present,
  ``ucfTrainTestlist/{classInd,trainlist0N,testlist0N}.txt``;
* the Kaggle copy (``matthewjansen/ucf101-action-recognition``): ``train|val|test/<Class>/`` with
  ``train.csv``/``val.csv``/``test.csv`` whose ``clip_path`` starts with ``/`` (relative to the root).

The Kaggle split is random by clip, so one actor's clips land in train and in test; by default we
split by the group number instead (official split 1: test = groups 1–7).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..config import DataConfig, config_hash
from ..utils import atomic_write
from .windows import Clip

KAGGLE_DATASET = "matthewjansen/ucf101-action-recognition"
CLIP_NAME = re.compile(r"v_(?P<label>[A-Za-z]+)_g(?P<group>\d+)_c(?P<clip>\d+)", re.IGNORECASE)
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm")
OFFICIAL_TEST_GROUPS = range(1, 8)  # split 1 of the official lists
VAL_GROUPS = range(8, 11)  # taken out of the training groups


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
class PrepareReport:
    """What :func:`prepare` did: clips per split, what it reused, what it skipped and why."""

    cache_dir: Path
    clips: dict[str, list[Clip]] = field(default_factory=dict)
    decoded: int = 0
    reused: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # source path -> reason


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


def _file(path: Path, split: str | None = None) -> VideoFile:
    name, label, group = parse_name(path)
    return VideoFile(path, name, label, group, split)


def _find_kaggle(root: Path, classes: set[str]) -> list[VideoFile]:
    files: dict[Path, VideoFile] = {}
    for split in ("train", "val", "test"):
        table = root / f"{split}.csv"
        if table.exists():
            with open(table, newline="") as handle:
                for row in csv.DictReader(handle):
                    if row["label"] in classes:
                        # clip_path is written as '/train/PushUps/v_...avi': relative to the root.
                        path = root / row["clip_path"].lstrip("/\\")
                        files[path] = _file(path, split)
        elif (root / split).is_dir():
            for cls in classes:
                for path in sorted((root / split / cls).glob("*")):
                    if path.suffix.lower() in VIDEO_SUFFIXES:
                        files[path] = _file(path, split)
    return sorted(files.values(), key=lambda f: f.name)


def _official_test_names(root: Path, split_number: int = 1) -> set[str] | None:
    for lists in (root / "ucfTrainTestlist", root.parent / "ucfTrainTestlist"):
        test_list = lists / f"testlist0{split_number}.txt"
        if test_list.exists():
            return {Path(line.split()[0]).stem for line in test_list.read_text().splitlines() if line.strip()}
    return None


def _find_original(root: Path, classes: set[str]) -> list[VideoFile]:
    videos = root / "UCF-101" if (root / "UCF-101").is_dir() else root
    test_names = _official_test_names(root)
    files = []
    for cls in sorted(classes):
        for path in sorted((videos / cls).glob("*")):
            if path.suffix.lower() in VIDEO_SUFFIXES:
                split = None if test_names is None else ("test" if path.stem in test_names else "train")
                files.append(_file(path, split))
    return files


def find_clips(root: str | Path, classes: tuple[str, ...]) -> list[VideoFile]:
    """Every video of ``classes`` under ``root``, in either layout."""
    root = Path(root)
    finder = _find_kaggle if detect_layout(root) == "kaggle" else _find_original
    files = finder(root, set(classes))
    if not files:
        raise FileNotFoundError(f"no videos of {', '.join(classes)} under {root}")
    return files


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


def decode_video(path: str | Path, size: int = 64, max_frames: int | None = None) -> np.ndarray:
    """Frames (T, size, size) uint8: decoded with OpenCV, grayscale, resized with INTER_AREA."""
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
            frames.append(cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA))
    finally:
        capture.release()
    if not frames:
        raise VideoError(f"{path}: no frame could be decoded (corrupt or empty file)")
    return np.stack(frames)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare(cfg: DataConfig, root: str | Path | None = None, progress: bool = False) -> PrepareReport:
    """Decode the clips of ``cfg`` into ``cfg.cache_dir`` and return them split.

    The cache folder is named by a hash of the preprocessing config, so a changed config builds a
    new cache. Each clip is written atomically and the manifest after it, so an interrupted run
    resumes where it stopped; a source whose sha256 changed is decoded again. Unusable videos
    (corrupt, unreadable, shorter than one window) are skipped and reported, never fatal.
    """
    root = Path(root or cfg.data_dir or "")
    if not str(root):
        raise ValueError("UCF101 needs a folder: pass --data-dir (or download with --download)")
    files = find_clips(root, cfg.classes)
    splits = assign_splits(files, cfg.split)
    key = config_hash({"size": cfg.image_size, "classes": list(cfg.classes), "split": cfg.split,
                       "root": str(root.resolve())})
    cache = Path(cfg.cache_dir) / f"ucf101-{key}"
    (cache / "frames").mkdir(parents=True, exist_ok=True)
    manifest_path = cache / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.update(config_hash=key, image_size=cfg.image_size, classes=list(cfg.classes), split=cfg.split)
    entries: dict = manifest.setdefault("clips", {})
    report = PrepareReport(cache, {"train": [], "val": [], "test": []})
    min_frames = (cfg.window_length - 1) * cfg.frame_step + 1

    def save_manifest() -> None:
        manifest["skipped"] = report.skipped
        atomic_write(manifest_path, lambda h: h.write(json.dumps(manifest, indent=1).encode()))

    bar = files
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(files, desc="decode", unit="clip")
    for f in bar:
        frames_path = cache / "frames" / f"{f.name}.npy"
        try:
            digest = sha256_file(f.path)
        except OSError as err:
            report.skipped[str(f.path)] = f"unreadable: {err.strerror or err}"
            continue
        entry = entries.get(f.name)
        if entry and entry.get("sha256") == digest and frames_path.exists():
            frames = np.load(frames_path)
            report.reused += 1
        else:
            try:
                frames = decode_video(f.path, cfg.image_size)
            except VideoError as err:
                report.skipped[str(f.path)] = str(err).split(": ", 1)[-1]
                entries.pop(f.name, None)
                save_manifest()
                continue
            atomic_write(frames_path, lambda h, a=frames: np.save(h, a))
            entries[f.name] = {"source": str(f.path), "label": f.label, "group": f.group,
                               "split": splits[f.name], "frames": int(len(frames)), "sha256": digest}
            report.decoded += 1
            save_manifest()
        if len(frames) < min_frames:
            report.skipped[str(f.path)] = (f"too short: {len(frames)} frames, a window needs {min_frames}")
            continue
        report.clips[splits[f.name]].append(Clip(f.name, f.label, f.group, frames))
    save_manifest()
    return report


def download_kaggle() -> Path:
    """Download the Kaggle copy of UCF101 with kagglehub (needs Kaggle credentials) and return its root."""
    try:
        import kagglehub
    except ImportError as err:
        raise RuntimeError("downloading UCF101 needs kagglehub: pip install kagglehub") from err
    path = Path(kagglehub.dataset_download(KAGGLE_DATASET))
    # The archive may unpack into one sub-folder; return the folder that holds the layout.
    for candidate in (path, *sorted(p for p in path.iterdir() if p.is_dir())):
        try:
            detect_layout(candidate)
            return candidate
        except FileNotFoundError:
            continue
    raise FileNotFoundError(f"kagglehub downloaded {KAGGLE_DATASET} to {path}, but no UCF101 layout is in it")

