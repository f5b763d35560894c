"""Small helpers shared across the package."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import platform
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def shared_folder(name: str, marker: str, start: str | os.PathLike | None = None) -> Path | None:
    """``shared/<name>`` beside the project (or beside any folder above ``start``, the working folder by default)
    where it holds the file ``marker``: where a team keeps data next to its checkouts; else None."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder.parent / "shared" / name
        if (candidate / marker).is_file():
            return candidate
    return None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to serve blocks up to 32 MB from its heap and to keep what is freed (up to 1 GB)
    instead of returning it to the system; True if it could (Linux with glibc).

    A training step on a CPU allocates and frees the same multi-megabyte tensors at every recurrent step.
    By default glibc maps each one afresh and unmaps it when freed, so every step pays page faults on
    memory it just gave back (about a tenth of ConvLSTM's book-profile step on a 2-core CPU). The cost is
    a process that keeps its peak heap instead of shrinking after a run. It is the
    same as starting Python with ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824``.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3  # from malloc.h
        return bool(libc.mallopt(m_mmap_threshold, 32 * 2**20)) and bool(libc.mallopt(m_trim_threshold, 2**30))
    except (OSError, AttributeError):
        return False


TEMP_SUFFIX = ".tmp"  # atomic_write's temporary files: ".<name>.<random>.tmp" beside the target


def current_umask() -> int:
    """The process umask: from /proc where there is one, else by setting it and restoring it at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through a temporary file in the same folder, then rename: never a half-written file.

    The file gets the mode an ordinary ``open(path, "w")`` would give (0o666 less the umask), not
    the 0o600 of ``mkstemp``, so a cache or a run folder can be shared like any other file. When writing fails
    (a full disk, a kill), the temporary file is removed and ``path`` is as it was.
    """
    atomic_write_all({Path(path): write})


def atomic_write_all(writes: dict[Path, Callable[[BinaryIO], object]]) -> None:
    """Several files, each through :func:`atomic_write`'s temporary file, renamed only once every one was written:
    a failure (a full disk) leaves each target as it was and no temporary file behind."""
    done: list[tuple[str, Path]] = []
    try:
        for path, write in writes.items():
            path = Path(path)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
            done.append((tmp, path))
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o666 & ~current_umask())
                write(handle)
        for tmp, path in done:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in done:
            Path(tmp).unlink(missing_ok=True)
        raise


def _make_folders(folder: Path, created: list[Path]) -> None:
    """Make ``folder`` and its missing parents, outermost first, appending each one made to ``created``."""
    for missing in [f for f in (folder, *folder.parents) if not f.exists()][::-1]:
        missing.mkdir()
        created.append(missing)


def _remove_folders(created: list[Path]) -> None:
    """Remove again the (still empty) folders :func:`_make_folders` made, innermost first."""
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()


def make_writable_folder(folder: str | Path) -> Path:
    """``folder``, made with its missing parents, once a file could be written in it; else the OSError, and the
    folders this call made are removed again."""
    folder = Path(folder)
    created: list[Path] = []
    try:
        _make_folders(folder, created)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-", suffix=TEMP_SUFFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError:
        _remove_folders(created)
        raise
    return folder


class NotWritten(OSError, ValueError):
    """Output files that could not be written (a full disk, a read-only folder); every target is as it was.

    A ValueError as well, so the command line prints its one line (``vidpred <command>: …``) with no traceback.
    """


def write_files(writes: dict[Path, Callable[[BinaryIO], object]], flag: str = "--out",
                instead: str = "a folder", python: str | None = "another out_dir") -> None:
    """:func:`atomic_write_all` into folders created as needed; on failure :class:`NotWritten` in one line that
    names the files, the folder, why (``No space left on device``) and what to pass instead (``flag``), and the
    folders this call created are removed again."""
    paths = [Path(p) for p in writes]
    created: list[Path] = []
    try:
        for folder in dict.fromkeys(p.parent for p in paths):
            _make_folders(folder, created)
        atomic_write_all(dict(zip(paths, writes.values())))
    except OSError as err:
        _remove_folders(created)
        why = err.strerror or str(err) or type(err).__name__
        full = err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
        fix = (f"free some space there, or pass {flag} <{instead} on a disk with space>" if full
               else f"pass {flag} <{instead} you can write to>")
        names = " and ".join(p.name for p in paths)
        folders = ", ".join(str(f) for f in dict.fromkeys(p.parent for p in paths))
        raise NotWritten(f"cannot write {names} in {folders} ({why}); nothing was written there: {fix}"
                         + (f" (in Python: {python})" if python else "")) from None


def json_safe(value):
    """``value`` with every NaN or infinite float (numpy's too) as None, so it is standard JSON (``null``)."""
    if isinstance(value, float):  # numpy.float64 included
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:  # numpy.float32, numpy.int64
        return json_safe(value.item())
    return value


def json_text(value, indent: int | None = None) -> str:
    """``value`` as standard JSON: non-finite floats become ``null``, never the bare ``NaN``/``Infinity`` that
    strict parsers (browsers, jq, other languages) refuse. results.json, clips.json, bench JSON and the data
    caches' manifests are written with it."""
    return json.dumps(json_safe(value), indent=indent, allow_nan=False)


def remove_stale_temp_files(folder: str | Path, older_than_s: float = 600.0) -> list[Path]:
    """Delete the temporary files a killed :func:`atomic_write` left in ``folder``; return them.

    Only files untouched for ``older_than_s`` seconds go, so a write in progress elsewhere survives.
    """
    removed = []
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        try:
            if tmp.is_file() and time.time() - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()
                removed.append(tmp)
        except OSError:  # gone already, or a read-only folder: leave it
            continue
    return removed


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def display_path(path: str | Path, cwd: str | Path | None = None) -> str:
    """``path`` as a reader can use it, never an absolute path of the machine that ran the code when
    avoidable: inside the installed package as ``vidpred/…``, else relative to the working folder
    (``runs/book``, or ``../runs/book`` when a chapter runs in ``book/``), else as given."""
    path = Path(path).absolute()
    package = Path(__file__).resolve().parent
    try:
        return str(Path(package.name) / path.resolve().relative_to(package))
    except ValueError:
        pass
    cwd = Path(cwd or Path.cwd()).absolute()
    for up, folder in enumerate((cwd, *cwd.parents)):
        if up > 1 or folder == Path(folder.anchor):
            break
        if path.is_relative_to(folder):
            return str(Path(*[".."] * up, path.relative_to(folder))) if path != cwd else "."
    return str(path)
