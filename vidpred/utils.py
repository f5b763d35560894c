"""Small helpers shared across the package."""

from __future__ import annotations

import os
import platform
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


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
    the 0o600 of ``mkstemp``, so a cache or a run folder can be shared like any other file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
