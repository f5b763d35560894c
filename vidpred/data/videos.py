"""Reading video files: refusing what is not a regular file, hashing, decoding to grey squares, and the frame cache.

Every dataset of the package reads its videos through here: :func:`open_regular` refuses FIFOs,
devices, folders and oversized files before OpenCV could block on them, :func:`sha256_file` and
:func:`decode_video` read through it, and :func:`load_cached` reads back the uint8 frames a
``prepare`` wrote. UCF101 (:mod:`vidpred.data.ucf101`), real footage (:mod:`vidpred.data.footage`)
and the real exercise set (:mod:`vidpred.data.exercise`) all use it; it imports nothing else of the package.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import cv2
import numpy as np

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm")
CROPS = ("center", "none")  # centre square crop before resizing, or squash the whole frame
MAX_VIDEO_BYTES = 2 << 30  # a UCF101 clip is < 30 MB; anything over 2 GiB is not one of them


class VideoError(ValueError):
    """A video that cannot be used; the message names the file and the reason."""


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
