"""The real exercise set: 301 videos of real people exercising, from two public repositories at pinned commits.

``exercise_sources.tsv`` (beside this file) names every video: repository, commit, path, sha256,
bytes, exercise (push-ups, pull-ups, squats, dips) and, for the pushfit files, the form label. The
package holds that list and never the footage: :func:`locate` finds the files in a local mirror
(``--data-dir``, or ``$VIDPRED_EXERCISE_DIR``; laid out as ``<owner>+<name>/<path>``, as
``../shared/exercise`` is) or downloads them from their public URLs at the pinned commits (or from
``$VIDPRED_EXERCISE_URL``, a mirror served over HTTP) into the cache, resuming partial downloads and
checking each sha256 (:mod:`vidpred.data.exercise_sources` holds that list and the files; its names are
importable from here too).

:func:`prepare` decodes every video with :func:`vidpred.data.footage.decode_footage` (one frame
rate, bars cropped, cuts split, frozen frames dropped) into a cache that an interrupted run resumes,
then splits by **scene**: clips whose frames look alike (16×16 thumbnails correlated above
:data:`SAME_SCENE`: the same person, room and camera, or the same footage re-encoded) form one
group, and a group lies in one split only. Groups go to train, validation and test in a fixed
order (by the sha256 of their files), each to the split furthest below its share of that class's
frames, so the split is the same on every machine.

Terms: neither repository has a licence file, and the footage comes from third parties. The
project uses it to train and evaluate, and keeps the weights it trains; it never copies the videos
or frames derived from them into the repository.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..config import CLASSES, EXERCISE_CLASSES, DataConfig, config_hash
from ..utils import atomic_write, json_text, remove_stale_temp_files
from . import footage
from .exercise_sources import (
    CHUNK,
    EXERCISES,
    LABELS,
    MIRROR_DIR_ENV,
    MIRROR_URL_ENV,
    RAW_URL,
    SOURCES_FILE,
    Source,
    SourceError,
    download,
    find_mirror,
    load_sources,
    locate,
)
from .videos import CROPS, VideoError, load_cached, not_cached_line
from .windows import Clip

__all__ = ["CHUNK", "EXERCISES", "EXERCISE_CLASSES", "LABELS", "MIRROR_DIR_ENV", "MIRROR_URL_ENV", "PARALLEL_FROM",
           "RAW_URL", "SAME_SCENE", "SOURCES_FILE", "SPLIT_SHARES", "Clip", "ExerciseReport", "Source", "SourceError",
           "assign_groups", "download", "find_mirror", "load_sources", "locate", "log", "prepare",
           "prepare_and_describe", "scene_groups", "selected_classes", "signature"]

SAME_SCENE = 0.90  # two clips are one scene when some 16×16 thumbnails of theirs correlate above this
SPLIT_SHARES = {"train": 0.70, "val": 0.15, "test": 0.15}
PARALLEL_FROM = 16  # decode in two processes from this many videos on

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------- decode
def _decode(args: tuple[str, int, str, int]) -> footage.Footage | str:
    path, size, crop, min_frames = args
    cv2.setNumThreads(1)
    try:
        return footage.decode_footage(path, size, crop, min_frames)
    except VideoError as err:
        return str(err)


def signature(frames: np.ndarray, every: int = 10) -> np.ndarray:
    """Unit-norm, zero-mean 16×16 thumbnails of every ``every``-th frame: (N, 256) float32."""
    thumbs = np.stack([cv2.resize(f, (16, 16), interpolation=cv2.INTER_AREA) for f in frames[::every]]).astype(np.float32)
    thumbs = thumbs.reshape(len(thumbs), -1)
    thumbs -= thumbs.mean(1, keepdims=True)
    norms = np.linalg.norm(thumbs, axis=1, keepdims=True)
    return thumbs[norms[:, 0] > 1e-3] / norms[norms[:, 0] > 1e-3]


def scene_groups(signatures: list[np.ndarray], threshold: float = SAME_SCENE) -> list[int]:
    """A group number per clip: clips linked by a thumbnail correlation above ``threshold`` share one."""
    n = len(signatures)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner = np.concatenate([np.full(len(s), i) for i, s in enumerate(signatures)])
    stacked = np.concatenate(signatures)
    similar = stacked @ stacked.T > threshold  # (N, N) thumbnail pairs
    for a, b in zip(*np.nonzero(similar)):
        ra, rb = root(owner[a]), root(owner[b])
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = [root(i) for i in range(n)]
    numbers = {r: k + 1 for k, r in enumerate(dict.fromkeys(roots))}
    return [numbers[r] for r in roots]


def assign_groups(groups: list[int], labels: list[str], frames: list[int], keys: list[str],
                  shares: dict[str, float] = SPLIT_SHARES) -> dict[int, str]:
    """group -> split: groups in the order of their smallest key, each to the split furthest below its share
    of the group's main class (by frames)."""
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    order = sorted(members, key=lambda g: min(keys[i] for i in members[g]))
    filled: dict[str, dict[str, float]] = {}
    split_of = {}
    for g in order:
        by_class: dict[str, int] = {}
        for i in members[g]:
            by_class[labels[i]] = by_class.get(labels[i], 0) + frames[i]
        main = max(sorted(by_class), key=by_class.get)
        done = filled.setdefault(main, dict.fromkeys(shares, 0.0))
        total = sum(done.values()) + sum(by_class.values())
        split = max(shares, key=lambda s: shares[s] * total - done[s])
        split_of[g] = split
        done[split] += sum(by_class.values())
    return split_of


@dataclass
class ExerciseReport:
    """What :func:`prepare` did (the same fields `vidpred prepare` prints for UCF101, and the real set's own)."""

    cache_dir: Path
    clips: dict[str, list[Clip]] = field(default_factory=dict)
    decoded: int = 0
    reused: int = 0
    downloaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # source -> reason (unreadable, too short)
    rebuilt: dict[str, str] = field(default_factory=dict)
    cleaned: list[str] = field(default_factory=list)
    not_cached: str | None = None
    groups: int = 0
    cuts: int = 0
    cropped: int = 0  # videos whose bars were cropped
    dropped: dict[str, int] = field(default_factory=dict)  # why -> source frames
    short_segments: int = 0
    seconds: float = 0.0
    other_classes: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, list[str]] = field(default_factory=dict)
    missing_classes: list[str] = field(default_factory=list)


def selected_classes(cfg: DataConfig) -> tuple[str, ...]:
    """The exercises asked for: ``cfg.classes`` where they name the set's classes, else all of them
    (the UCF101 default of five classes means 'the default' here too)."""
    if tuple(cfg.classes) == CLASSES:
        return EXERCISE_CLASSES
    unknown = [c for c in cfg.classes if c not in EXERCISE_CLASSES]
    if unknown:
        raise ValueError(f"the real exercise set has no class {', '.join(unknown)}; its classes are "
                         f"{', '.join(EXERCISE_CLASSES)} (--classes takes any of them)")
    return tuple(cfg.classes)


def prepare(cfg: DataConfig, progress: bool = False, sources: list[Source] | None = None) -> ExerciseReport:
    """Find or download the videos, decode them into the cache (resumable), and split them by scene."""
    tic = time.perf_counter()
    if cfg.crop not in CROPS:
        raise ValueError(f"unknown crop {cfg.crop!r}; choose {' or '.join(CROPS)}")
    classes = selected_classes(cfg)
    sources = [s for s in (sources if sources is not None else load_sources())]
    files, fetched = locate(cfg, sources, progress)
    key = config_hash({"size": cfg.image_size, "crop": cfg.crop, "fps": footage.TARGET_FPS,
                       "decoder": footage.DECODER_VERSION})
    cache = Path(cfg.cache_dir) / f"exercise-{key}"
    report = ExerciseReport(cache, {"train": [], "val": [], "test": []}, downloaded=fetched)
    frames_dir = cache / "frames"
    try:
        frames_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        report.not_cached = f"{cache}: {err.strerror or err}"
    manifest_path = cache / "manifest.json"
    stored: dict = {}
    if manifest_path.exists():
        try:
            stored = json.loads(manifest_path.read_text())
        except ValueError as err:
            report.rebuilt[str(manifest_path)] = f"not valid JSON ({err}); every clip is checked again"
    manifest = json.loads(json_text(stored))
    manifest.update(config_hash=key, image_size=cfg.image_size, crop=cfg.crop, fps=footage.TARGET_FPS)
    entries: dict = manifest.setdefault("clips", {})
    if frames_dir.is_dir():
        report.cleaned += [str(p) for p in remove_stale_temp_files(frames_dir) + remove_stale_temp_files(cache)]

    def save_manifest() -> None:
        nonlocal stored
        if manifest == stored or report.not_cached:
            return
        try:
            atomic_write(manifest_path, lambda h: h.write(json_text(manifest, indent=1).encode()))
            stored = json.loads(json_text(manifest))
        except OSError as err:
            report.not_cached = f"{cache}: {err.strerror or err}"

    min_frames = (cfg.window_length - 1) * cfg.frame_step + 1
    segments: dict[Source, list[np.ndarray]] = {}
    todo = []
    for source in sources:
        entry = entries.get(source.name)
        if entry and entry.get("sha256") == source.sha256 and not entry.get("segments"):
            report.skipped[source.mirror_path] = entry.get("why", "no usable segment")
            continue
        if entry and entry.get("sha256") == source.sha256:
            frames, why = load_cached(frames_dir / f"{source.name}.npy", sum(entry["segments"]), cfg.image_size)
            if frames is not None:
                segments[source] = np.split(frames, np.cumsum(entry["segments"])[:-1])
                report.reused += 1
                continue
            report.rebuilt[str(frames_dir / f"{source.name}.npy")] = why
        todo.append(source)
    jobs = [(str(files[s]), cfg.image_size, cfg.crop, min_frames) for s in todo]
    # two processes pay for their start-up only on many videos (the whole set: 81 s instead of about 140 s)
    workers = min(2, os.cpu_count() or 1) if len(jobs) >= PARALLEL_FROM else 1
    bar = None
    if progress and jobs:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(jobs), desc="decode", unit="video")
    with ProcessPoolExecutor(workers) if workers > 1 else _Serial() as pool:
        for source, result in zip(todo, pool.map(_decode, jobs)):
            if bar is not None:
                bar.update(1)
            if isinstance(result, str):
                report.skipped[source.mirror_path] = result.split(": ", 1)[-1]
                entries[source.name] = {"sha256": source.sha256, "segments": [], "why": report.skipped[source.mirror_path]}
                save_manifest()
                continue
            report.decoded += 1
            info = result.summary()
            if not result.segments:
                why = (f"no piece as long as one window ({min_frames} frames at {footage.TARGET_FPS:g} fps) "
                       f"after dropping {result.dropped or 'nothing'} and {result.cuts} cut(s)")
                report.skipped[source.mirror_path] = why
                entries[source.name] = {"sha256": source.sha256, "segments": [], "why": why, **info}
                save_manifest()
                continue
            segments[source] = result.segments
            if not report.not_cached:
                joined = np.concatenate(result.segments)
                try:
                    atomic_write(frames_dir / f"{source.name}.npy", lambda h, joined=joined: np.save(h, joined))
                except OSError as err:
                    report.not_cached = f"{cache}: {err.strerror or err}"
            entries[source.name] = {"sha256": source.sha256, **info}
            save_manifest()
    if bar is not None:
        bar.close()
    for source in sources:  # the decode facts of every video, reused or not
        entry = entries.get(source.name, {})
        report.cuts += entry.get("cuts", 0)
        report.short_segments += entry.get("short_segments", 0)
        report.cropped += bool(entry.get("cropped"))
        for why, n in entry.get("dropped", {}).items():
            report.dropped[why] = report.dropped.get(why, 0) + n

    used = [s for s in sources if s in segments]
    groups = scene_groups([signature(np.concatenate(segments[s])) for s in used])
    report.groups = len(set(groups))
    split_of = assign_groups(groups, [s.label for s in used], [sum(map(len, segments[s])) for s in used],
                             [s.sha256 for s in used])
    manifest["split"] = {s.name: [g, split_of[g]] for s, g in zip(used, groups)}
    save_manifest()
    counts: dict[str, int] = {}
    for source, group in zip(used, groups):
        if source.label not in classes:
            counts[source.label] = counts.get(source.label, 0) + 1
            continue
        pieces = segments[source]
        for k, frames in enumerate(pieces):
            name = source.name if len(pieces) == 1 else f"{source.name}.{k + 1}"
            report.clips[split_of[group]].append(Clip(name, source.label, group, frames))
    report.other_classes = counts
    report.seconds = time.perf_counter() - tic
    for split, clips in report.clips.items():
        if not clips:
            raise ValueError(f"the {split} split of the real exercise set is empty for the classes "
                             f"{', '.join(classes)}; add classes with --classes")
    return report


class _Serial:
    """A stand-in for a process pool on one core."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def map(function, items):
        return map(function, items)


def prepare_and_describe(cfg: DataConfig, progress: bool = False) -> tuple[ExerciseReport, list[str]]:
    """:func:`prepare`, and the lines `vidpred prepare` prints about it (the split table follows them)."""
    report = prepare(cfg, progress)
    lines = [f"cache: {report.cache_dir}  (decoded {report.decoded}, reused {report.reused}, "
             f"{report.seconds:.0f} s{f'; downloaded {len(report.downloaded)}' if report.downloaded else ''})"]
    lines += [f"rebuilt {path}: {why}" for path, why in report.rebuilt.items()]
    if report.cleaned:
        lines.append(f"cleaned {len(report.cleaned)} leftover(s)")
    if report.not_cached:
        lines.append(not_cached_line(report.not_cached, cfg.cache_dir))
    dropped = ", ".join(f"{n} {why}" for why, n in sorted(report.dropped.items())) or "none"
    lines.append(f"decoding: every video at {footage.TARGET_FPS:g} fps; bars cropped in {report.cropped}; "
                 f"{report.cuts} shot cut(s) split; frames dropped: {dropped}; "
                 f"{report.short_segments} piece(s) shorter than a window left out")
    lines.append(f"split by scene: {report.groups} groups of look-alike clips (same person, room and camera), "
                 "each in one split")
    if report.other_classes:
        lines.append("not selected: " + ", ".join(f"{c} {n}" for c, n in sorted(report.other_classes.items())))
    return report, lines
