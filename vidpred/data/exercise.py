"""The real exercise set: 301 videos of real people exercising, from two public repositories at pinned commits.

``exercise_sources.tsv`` (beside this file) names every video: repository, commit, path, sha256,
bytes, exercise (push-ups, pull-ups, squats, dips) and, for the pushfit files, the form label. The
package holds that list and never the footage: :func:`locate` finds the files in a local mirror
(``--data-dir``, or ``$VIDPRED_EXERCISE_DIR``; laid out as ``<owner>+<name>/<path>``, as
``../shared/exercise`` is) or downloads them from their public URLs at the pinned commits (or from
``$VIDPRED_EXERCISE_URL``, a mirror served over HTTP) into the cache, resuming partial downloads and
checking each sha256.

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

import csv
import errno
import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..config import DataConfig, config_hash
from ..utils import atomic_write, json_text, make_writable_folder, remove_stale_temp_files
from . import footage
from .ucf101 import CROPS, VideoError, load_cached, not_cached_line, sha256_file
from .windows import Clip

SOURCES_FILE = Path(__file__).with_name("exercise_sources.tsv")
LABELS = {"push-ups": "PushUps", "pull-ups": "PullUps", "squats": "Squats", "dips": "Dips"}
EXERCISE_CLASSES: tuple[str, ...] = tuple(LABELS.values())
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
MIRROR_DIR_ENV = "VIDPRED_EXERCISE_DIR"  # a local folder laid out as <owner>+<name>/<path>
MIRROR_URL_ENV = "VIDPRED_EXERCISE_URL"  # a base URL laid out the same way
SAME_SCENE = 0.90  # two clips are one scene when some 16×16 thumbnails of theirs correlate above this
SPLIT_SHARES = {"train": 0.70, "val": 0.15, "test": 0.15}
CHUNK = 1 << 16
PARALLEL_FROM = 16  # decode in two processes from this many videos on

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """One video of the set: where it is published and what it must hash to."""

    repo: str
    commit: str
    path: str
    sha256: str
    bytes: int
    exercise: str
    form: str = ""
    also: tuple[str, ...] = ()  # other repo:path places holding the same bytes

    @property
    def label(self) -> str:
        return LABELS[self.exercise]

    @property
    def mirror_path(self) -> str:
        """The file's place in a mirror: ``<owner>+<name>/<path>``."""
        return f"{self.repo.replace('/', '+')}/{self.path}"

    @property
    def name(self) -> str:
        """A short unique name: ``WorkoutTracker.push-ups.push-up_1``, ``cs231n-pushfit.correct.correct23``."""
        return f"{self.repo.split('/')[1]}.{Path(self.path).parent.name}.{Path(self.path).stem}"

    def urls(self, base: str | None = None) -> list[str]:
        if base:
            return [f"{base.rstrip('/')}/{urllib.request.quote(self.mirror_path)}"]
        found = [RAW_URL.format(repo=self.repo, commit=self.commit, path=self.path)]
        for place in self.also:  # the same bytes elsewhere: tried when the first place has moved
            repo, path = place.split(":", 1)
            found.append(RAW_URL.format(repo=repo, commit=self.commit if repo == self.repo else "HEAD", path=path))
        return found


def load_sources(path: Path = SOURCES_FILE) -> list[Source]:
    """Every video of the set, in the file's order."""
    with open(path, newline="") as handle:
        rows = csv.DictReader((line for line in handle if not line.startswith("#")), delimiter="\t")
        return [Source(r["repo"], r["commit"], r["path"], r["sha256"], int(r["bytes"]), r["exercise"], r["form"],
                       tuple(p for p in r["also"].split(",") if p)) for r in rows]


def find_mirror(start: str | os.PathLike | None = None) -> Path | None:
    """A local mirror of the set: ``$VIDPRED_EXERCISE_DIR``, else ``shared/exercise`` beside the project (or
    beside any folder above ``start``, the working folder by default) where it has the sources list; else None."""
    if os.environ.get(MIRROR_DIR_ENV):
        return Path(os.environ[MIRROR_DIR_ENV])
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder.parent / "shared" / "exercise"
        if (candidate / "SOURCES.tsv").is_file():
            return candidate
    return None


# ---------------------------------------------------------------------------------------------- files
class SourceError(RuntimeError):
    """A video of the set is missing, changed or cannot be downloaded; the message says which and what to do."""


def _check_file(path: Path, source: Source) -> str:
    """'' when ``path`` holds the source's bytes, else why not."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != source.bytes:
        return f"{size} bytes where the source has {source.bytes}"
    try:
        digest = sha256_file(path)
    except VideoError as err:
        return str(err)
    return "" if digest == source.sha256 else f"sha256 {digest[:12]}… where the source has {source.sha256[:12]}…"


def download(source: Source, target: Path, base_url: str | None = None, bar=None, timeout: float = 30.0) -> Path:
    """Fetch ``source`` to ``target``, resuming ``target.part``; checked against its size and sha256.

    A file that does not match is deleted (never kept as the source) and :class:`SourceError` says
    which file, from which URL, and what to do.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    errors = []
    for url in source.urls(base_url):
        have = part.stat().st_size if part.exists() else 0
        if have > source.bytes:
            part.unlink()
            have = 0
        request = urllib.request.Request(url, headers={"User-Agent": "vidpred", **({"Range": f"bytes={have}-"} if have else {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if have and response.status != 206:  # the server ignored the range: start again
                    have = 0
                with open(part, "ab" if have else "wb") as out:
                    if bar is not None and have:
                        bar.update(have)
                    while block := response.read(CHUNK):
                        out.write(block)
                        if bar is not None:
                            bar.update(len(block))
        except urllib.error.HTTPError as err:
            if err.code == 416 and part.exists() and part.stat().st_size == source.bytes:
                pass  # already complete
            else:
                errors.append(f"{url}: HTTP {err.code} {err.reason}")
                continue
        except (OSError, http.client.HTTPException) as err:  # URLError is an OSError; a cut link, IncompleteRead
            if getattr(err, "errno", None) == errno.ENOSPC:
                raise SourceError(f"{part}: the disk is full while downloading {url}; free space there and run "
                                  "the same command again (the download resumes)") from None
            got = part.stat().st_size if part.exists() else 0
            reason = getattr(err, "reason", None) or type(err).__name__
            errors.append(f"{url}: the transfer stopped at {got} of {source.bytes} bytes ({reason})" if got
                          else f"{url}: {reason}")
            continue  # what arrived is kept in the .part file: the next run resumes from there
        why = _check_file(part, source)
        if why.startswith(f"{part.stat().st_size} bytes") and part.stat().st_size < source.bytes:
            errors.append(f"{url}: the transfer stopped at {part.stat().st_size} of {source.bytes} bytes")
            continue  # kept: the next run resumes from there
        if why:
            part.unlink(missing_ok=True)
            raise SourceError(f"{source.mirror_path}: the file at {url} is not the pinned one ({why}); the source has "
                              "changed: pass --data-dir to a mirror holding the pinned file (see exercise_sources.tsv)")
        os.replace(part, target)
        return target
    moved = any("HTTP 404" in e or "HTTP 410" in e for e in errors)
    what = "has moved or is gone" if moved else "could not be downloaded"
    raise SourceError(f"{source.mirror_path} {what} ({errors[-1]}); run the same command again to resume, or get "
                      f"the file from {source.repo} at commit {source.commit[:10]} into a mirror folder and pass "
                      "--data-dir <mirror> (or set VIDPRED_EXERCISE_URL to a mirror's address)")


def locate(cfg: DataConfig, sources: list[Source], progress: bool = False) -> tuple[dict[Source, Path], list[str]]:
    """The local file of every source, and what was downloaded.

    From ``cfg.data_dir`` (or ``$VIDPRED_EXERCISE_DIR``) when set: every file must be there with its
    pinned sha256. Otherwise from ``cfg.cache_dir``/exercise-videos, downloading what is missing.
    """
    mirror = cfg.data_dir or os.environ.get(MIRROR_DIR_ENV)
    if mirror:
        root = Path(mirror)
        if not root.is_dir():
            raise FileNotFoundError(f"the exercise mirror {root} does not exist; pass --data-dir <folder laid out as "
                                    "<owner>+<name>/<path>>, or leave it out to download the videos")
        files, bad = {}, []
        for source in sources:
            path = root / source.mirror_path
            why = _check_file(path, source)
            if why:
                bad.append(f"{path}: {why}")
            files[source] = path
        if bad:
            raise SourceError(f"{bad[0]}{f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''}; the mirror must hold "
                              "the pinned files (exercise_sources.tsv has their sha256): copy them again, or leave out "
                              "--data-dir to download them")
        return files, []
    folder = Path(cfg.cache_dir) / "exercise-videos"
    base = os.environ.get(MIRROR_URL_ENV)
    files, fetched = {}, []
    todo = []
    for source in sources:
        path = folder / source.mirror_path
        files[source] = path
        if not (path.is_file() and path.stat().st_size == source.bytes):
            todo.append(source)
    if todo:
        try:
            make_writable_folder(folder)
        except OSError as err:  # a read-only data/: one line before the first download, not a traceback
            raise SourceError(f"cannot download {len(todo)} video(s) of the real exercise set into {folder} "
                              f"({err.strerror or err}); pass --data-dir <a mirror of the set> (or set "
                              f"{MIRROR_DIR_ENV}), or run vidpred from a folder where {cfg.cache_dir} can be "
                              "written") from None
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm
        bar = tqdm(total=sum(s.bytes for s in todo), unit="B", unit_scale=True, desc=f"download {len(todo)} videos")
    try:
        for source in todo:
            download(source, files[source], base, bar)
            fetched.append(source.mirror_path)
    finally:
        if bar is not None:
            bar.close()
    return files, fetched


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
    from ..config import CLASSES

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
