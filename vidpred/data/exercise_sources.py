"""The real exercise set's files: the pinned list of its videos, finding a mirror, downloading and checking each one.

``exercise_sources.tsv`` (beside this file) names every video: repository, commit, path, sha256,
bytes, exercise and, for the pushfit files, the form label; :func:`load_sources` reads it.
:func:`locate` finds the files in a local mirror (``--data-dir``, or ``$VIDPRED_EXERCISE_DIR``; laid
out as ``<owner>+<name>/<path>``) or downloads them with :func:`download` from their public URLs at
the pinned commits (or from ``$VIDPRED_EXERCISE_URL``) into the cache, resuming partial downloads
and checking each sha256. Decoding and splitting them is :mod:`vidpred.data.exercise`.
"""

from __future__ import annotations

import csv
import errno
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..config import EXERCISE_CLASSES, DataConfig
from ..utils import make_writable_folder, shared_folder
from .videos import VideoError, sha256_file

SOURCES_FILE = Path(__file__).with_name("exercise_sources.tsv")
EXERCISES = ("push-ups", "pull-ups", "squats", "dips")  # the sources list's names of EXERCISE_CLASSES, in order
LABELS = dict(zip(EXERCISES, EXERCISE_CLASSES, strict=True))  # exercise -> class label
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
MIRROR_DIR_ENV = "VIDPRED_EXERCISE_DIR"  # a local folder laid out as <owner>+<name>/<path>
MIRROR_URL_ENV = "VIDPRED_EXERCISE_URL"  # a base URL laid out the same way
CHUNK = 1 << 16


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
    return shared_folder("exercise", "SOURCES.tsv", start)


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
