"""The app's output folders: one folder per app inside Gradio's upload folder, marked with its process
(:func:`make_workdir`), a bounded number of request folders inside it (:class:`OutputFolders`), and the removal of
the folders of apps that were killed (:func:`clean_leftovers`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import threading
import uuid
from collections import deque
from pathlib import Path

from .settings import MARKER, MAX_KEPT_OUTPUTS, WORKDIR_PREFIX


def _remove(folder) -> None:
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


class OutputFolders:
    """The folders of the requests' outputs under ``root``, oldest first: beyond ``keep`` the oldest are removed
    (a session's previous outputs go sooner, when its next request is done)."""

    def __init__(self, root: Path, keep: int = MAX_KEPT_OUTPUTS):
        self.root, self.keep = root, keep
        self._folders: deque[Path] = deque()
        self._lock = threading.Lock()

    def new(self) -> Path:
        folder = self.root / uuid.uuid4().hex
        folder.mkdir(parents=True)
        with self._lock:
            self._folders.append(folder)
            old = [self._folders.popleft() for _ in range(len(self._folders) - self.keep)]
        for stale in old:
            _remove(stale)
        return folder

    def remove(self, folder) -> None:
        if not folder:
            return
        with self._lock, contextlib.suppress(ValueError):
            self._folders.remove(Path(folder))
        _remove(folder)

    def __len__(self) -> int:
        return len(self._folders)


def _process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), to tell a reused pid; None where unknown."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int, started: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    now = _process_start(pid)
    return started is None or now is None or now == started  # another start time: the pid was reused


def make_workdir(root: Path) -> Path:
    """A new output folder of this app under ``root`` (Gradio's upload folder), marked with this process's pid
    and start time so that a later app can tell it was left behind (:func:`clean_leftovers`)."""
    workdir = root / f"{WORKDIR_PREFIX}{uuid.uuid4().hex[:12]}"
    workdir.mkdir(parents=True)
    (workdir / MARKER).write_text(json.dumps({"pid": os.getpid(), "started": _process_start(os.getpid())}))
    return workdir


def clean_leftovers(root: Path) -> list[Path]:
    """Remove the output folders that apps which ended without cleaning (``kill -9``, a crash) left in ``root``.

    Only folders that are surely an app's and surely abandoned: named ``vidpred-app-<12 hex>``, a real folder
    owned by this user, holding the marker :func:`make_workdir` writes, whose process is no longer running
    (or whose pid now belongs to a process started at another time). Anything else is left alone.
    """
    removed = []
    pattern = re.compile(rf"{re.escape(WORKDIR_PREFIX)}[0-9a-f]{{12}}")
    with contextlib.suppress(OSError):
        candidates = list(root.iterdir())
    for folder in candidates if root.is_dir() else []:
        try:
            if not pattern.fullmatch(folder.name) or folder.is_symlink() or not folder.is_dir() \
                    or folder.stat().st_uid != os.getuid():
                continue
            marker = folder / MARKER
            if marker.is_symlink():
                continue
            owner = json.loads(marker.read_text())
            pid, started = int(owner["pid"]), owner.get("started")
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no readable marker: not surely an app's folder
        if pid != os.getpid() and not _alive(pid, started):
            _remove(folder)
            removed.append(folder)
    return removed
