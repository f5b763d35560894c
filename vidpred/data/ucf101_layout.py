"""UCF101 on disk: its two layouts, finding the clips of the selected classes, the split, and downloading it.

Two layouts are understood:

* the original archive: ``UCF-101/<Class>/v_<Class>_gXX_cYY.avi`` with, when present,
  ``ucfTrainTestlist/{classInd,trainlist0N,testlist0N}.txt``;
* the Kaggle copy (``matthewjansen/ucf101-action-recognition``): ``train|val|test/<Class>/`` with
  ``train.csv``/``val.csv``/``test.csv`` whose ``clip_path`` starts with ``/`` (relative to the root).

:func:`scan_clips` finds the videos and says what it left out and why; :func:`assign_splits` splits
them by group (the actor) so no actor is in two splits; :func:`download_kaggle` fetches the Kaggle
copy. Decoding them into the cache is :func:`vidpred.data.ucf101.prepare`.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .videos import VIDEO_SUFFIXES, VideoError

KAGGLE_DATASET = "matthewjansen/ucf101-action-recognition"
CLIP_NAME = re.compile(r"v_(?P<label>[A-Za-z]+)_g(?P<group>\d+)_c(?P<clip>\d+)", re.IGNORECASE)
OFFICIAL_TEST_GROUPS = range(1, 8)  # split 1 of the official lists
VAL_GROUPS = range(8, 11)  # taken out of the training groups
KAGGLE_COLUMNS = ("clip_path", "label")
BAD_NAME = "not named v_<Class>_gXX_cYY"
LEAVES_ROOT = "listed in a Kaggle CSV with a clip_path that leaves the data folder (not read)"
NO_PATH_OR_LABEL = "listed in a Kaggle CSV row without a clip_path or a label"


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
