"""One process per run folder, and stopping it cleanly: the folder must be writable (:func:`writable_run_folder`),
one training holds its lock (:func:`run_lock`), and SIGINT/SIGTERM end training after a saved step
(:func:`stop_on_signals`)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import tempfile
import threading
from contextvars import ContextVar
from pathlib import Path

LOCK_NAME = ".lock"  # <run>/.lock: held (flock) by the one process training there; holds its pid


class RunInUse(RuntimeError):
    """Another process is training in this run folder."""


class RunFolderNotWritable(OSError, ValueError):
    """The run folder cannot be created or written (a read-only ``--runs``); nothing was left in it."""


class TrainingStopped(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training after a finished step; ``last.pt`` holds it. Resume with the same call."""

    def __init__(self, message: str, step: int, signum: int):
        super().__init__(message)
        self.step, self.signum = step, signum



def dist_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


@contextlib.contextmanager
def run_lock(out_dir: str | Path):
    """Hold ``out_dir/.lock`` (an exclusive, non-blocking ``flock``) or raise :class:`RunInUse`.

    The file holds the holder's pid and is removed on release (while still locked, and a taker
    checks it locked the file that is still there, so a lock is never held twice).
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): no lock
        yield
        return
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                yield  # a file system without flock: train unlocked
                return
            raise RunInUse(f"{out_dir} is in use by another training (pid {holder}); wait for it to end or "
                           "stop it, or train into another --runs folder") from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed the file after we opened it: take the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


class _StopRequest:
    signum: int | None = None


_stop_request: ContextVar[_StopRequest | None] = ContextVar("stop_request", default=None)


def _stop_requested() -> bool:
    request = _stop_request.get()
    return request is not None and request.signum is not None


@contextlib.contextmanager
def stop_on_signals():
    """SIGINT and SIGTERM set a flag that the training loop reads after each step; a second Ctrl+C raises at once.

    Only in the main thread (elsewhere signals cannot be caught) and not under DDP, where the
    ranks would stop at different steps.
    """
    request = _StopRequest()
    token = _stop_request.set(request)
    previous = {}

    def handler(signum, frame):
        if request.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        request.signum = signum

    try:
        if threading.current_thread() is threading.main_thread() and dist_info()[2] == 1:
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) is not signal.SIG_IGN:  # ignored (nohup, `&`) stays ignored
                    previous[signum] = signal.signal(signum, handler)
        yield request
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)
        _stop_request.reset(token)


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the main process, which stops them after its step."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def writable_run_folder(out_dir: str | Path) -> Path:
    """``out_dir``, created with its missing parents, once a file could be written in it.

    Otherwise :class:`RunFolderNotWritable` in one line that names the folder that refused and what to
    pass instead, and the folders this call created are removed again (nothing half-made is left).
    """
    out_dir = Path(out_dir)
    missing: list[Path] = []
    created: list[Path] = []
    try:
        missing = [folder for folder in (out_dir, *out_dir.parents) if not folder.exists()][::-1]  # outermost first
        for folder in missing:
            folder.mkdir()
            created.append(folder)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        refused = missing[len(created)].parent if len(created) < len(missing) else out_dir
        why = err.strerror or type(err).__name__
        raise RunFolderNotWritable(f"cannot train into {out_dir}: {refused} is not writable ({why}); pass "
                                   "--runs <a writable folder> (in Python: another out_dir)") from None
    return out_dir
