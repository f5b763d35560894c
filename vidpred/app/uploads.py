"""Reading an upload: only files uploaded to the app (:func:`checked_upload`), decoded with OpenCV and preprocessed
as the models' training data was (:func:`read_clip`), with the decoding one request may cause bounded, and large
uploads decoded one at a time beside the other requests (:class:`DecodePool`)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ..data.footage import FPS_RANGE, TARGET_FPS, WORK_SIDE, content_box, to_square
from ..data.ucf101 import CROPS, square_crop
from .settings import (
    HEAVY_DECODE_PIXELS,
    HEAVY_DECODES,
    HEAVY_WAITING,
    MAX_DECODE_PIXELS,
    MAX_DECODE_S,
    MAX_DURATION_S,
    MAX_SIDE,
    MAX_UPLOAD_BYTES,
    VIDEO_SUFFIXES,
    WORKDIR_PREFIX,
)


class AppError(ValueError):
    """A problem to show the user as a message (never a stack trace)."""


class DecodePool:
    """Decodes large uploads ``decoding`` at a time, with up to ``waiting`` more queued for their turn.

    A large upload waits for its turn here without using the CPU; beyond ``decoding + waiting`` it is refused
    at once (an AppError), so large uploads hold at most that many of the app's ``SERVING_SLOTS``.
    """

    def __init__(self, decoding: int = HEAVY_DECODES, waiting: int = HEAVY_WAITING):
        self.decoding, self.waiting = decoding, waiting
        self._turns = threading.Semaphore(decoding)
        self._lock = threading.Lock()
        self.admitted = 0  # decoding or waiting now
        self.served = 0  # large uploads decoded (or stopped) so far

    @contextlib.contextmanager
    def turn(self, name: str):
        with self._lock:
            if self.admitted >= self.decoding + self.waiting:
                raise AppError(f"{name}: {self.admitted} large videos are already being decoded or waiting for their "
                               "turn; try again in a minute, or upload a shorter or smaller video")
            self.admitted += 1
        try:
            with self._turns:
                yield
        finally:
            with self._lock:
                self.admitted -= 1
                self.served += 1


def upload_folder() -> Path:
    """Where Gradio keeps uploads (``$GRADIO_TEMP_DIR``, else ``<tmp>/gradio``), symlinks resolved."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def not_uploaded(sent) -> str:
    """The refusal of a path that was not uploaded: the path as the client sent it (one line, 200 characters at
    most), never one the server made of it (``file://x`` resolves under the server's working folder)."""
    shown = " ".join(str(sent).split())[:200]
    return (f"{shown}: refused, it was not uploaded to this app (the app only reads its own uploads); "
            "upload the video instead")


def checked_upload(path: str | Path, uploaded=None) -> Path:
    """``path`` with symlinks resolved, when it is a file uploaded to the app; otherwise an AppError.

    ``uploaded`` is Gradio's record of the files its upload endpoint received (``Blocks.upload_file_set``):
    only those are read, so a file that is inside Gradio's upload folder for another reason (another
    user's output of this app, named by its path) is refused as well. Without the record: any file inside
    the upload folder but outside the app's output folders. Gradio's own checks are not the only line:
    whatever reaches the app, it never opens another file on the server.
    """
    sent = path
    path = Path(path)
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise AppError(f"{path.name}: the file is gone; upload it again") from None
    folder = upload_folder()
    if not resolved.is_file() or not resolved.is_relative_to(folder):
        raise AppError(not_uploaded(sent))
    if uploaded is not None:
        if str(sent) not in uploaded and str(path) not in uploaded and str(resolved) not in uploaded:
            raise AppError(not_uploaded(sent))
    elif resolved.relative_to(folder).parts[0].startswith(WORKDIR_PREFIX):
        raise AppError(not_uploaded(sent))
    return resolved


def too_short(name: str, total: int, start: int, frame_step: int, n_context: int = 30) -> str:
    """What is wrong when a clip of ``total`` frames has fewer than ``n_context`` frames from ``start`` with
    ``frame_step``, and the fix that works (a message that never suggests a change that cannot help)."""
    span = (n_context - 1) * frame_step + 1  # frames the context covers
    if total < n_context:
        return (f"{name}: the clip is too short: {total} frames, and the models need {n_context} context frames; "
                "use a longer clip")
    if total < span:
        return (f"{name}: with frame step {frame_step} the context covers {span} frames but the clip has {total}; "
                f"use a frame step of at most {(total - 1) // (n_context - 1)}")
    if start >= total:
        return f"{name}: start frame {start} is past the end of the clip ({total} frames); use a start of at most {total - span}"
    left = (total - 1 - start) // frame_step + 1
    return (f"{name}: from frame {start} with step {frame_step} only {left} of the {n_context} context frames are "
            f"in the clip ({total} frames); use a start of at most {total - span}")


def _open(path: Path) -> cv2.VideoCapture:
    # One decoding thread: a request's decoding takes one core, as its prediction does (serving_threads).
    return cv2.VideoCapture(str(path), cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, 1])


def read_clip(path: str | Path, start: int = 0, frame_step: int = 1, size: int = 64, n_context: int = 30,
              n_future: int = 15, max_seconds: float | None = None, crop: str = "center",
              pool: DecodePool | None = None, footage: bool = False) -> tuple[np.ndarray, bool]:
    """Preprocess an uploaded video as in training: frames (T, size, size) uint8 and whether the
    ground truth of the future is there (T = n_context + n_future) or not (T = n_context).

    Each frame is made grey, cropped as the models' training data was (``crop``: ``"center"`` keeps the
    centred square, ``"none"`` squashes the whole frame; :func:`vidpred.data.ucf101.square_crop`) and
    resized with INTER_AREA, exactly as ``vidpred prepare`` does. With ``footage`` (models trained on the real
    exercise set) the upload is read as that footage was (:mod:`vidpred.data.footage`): brought to 25 fps (``start``
    and ``frame_step`` count frames at 25 fps), with black or blurred bars cropped away before the square crop.
    Frozen frames and shot cuts are not removed here: the 45 frames asked for are the 45 frames shown.

    The work is bounded: a start past the clip's frame count, and a span of frames that holds more than
    ``MAX_DECODE_PIXELS`` pixels, are refused before decoding; the reader seeks to the start where the
    container allows it (else skips frames without converting them), and decoding stops with an AppError
    after ``max_seconds`` (default ``MAX_DECODE_S``). With a ``pool``, an upload whose decoding may cover
    more than ``HEAVY_DECODE_PIXELS`` (start and span, in case the seek decodes its way) waits for its
    turn there, and its ``max_seconds`` run from then.
    """
    path = Path(path)
    max_seconds = MAX_DECODE_S if max_seconds is None else max_seconds
    _check_request(path, start, frame_step, crop)
    capture = _open(path)
    try:
        picks, rate, pixels = _plan(capture, path, start, frame_step, n_context, n_future, footage)
        large = pool is not None and pixels > HEAVY_DECODE_PIXELS
        with pool.turn(path.name) if large else contextlib.nullcontext():
            deadline = time.monotonic() + max_seconds
            capture, index = _seek(capture, path, picks[0])
            frames, decoded, index = _decode(capture, path, picks, index, deadline, max_seconds,
                                             lambda frame: _grey(frame, size, crop, footage))
    finally:
        capture.release()
    if footage and frames:
        work = np.stack(frames)
        frames = list(to_square(work, content_box(work), size, crop))
    if decoded == 0 and index == 0:
        raise AppError(f"{path.name}: no frame could be decoded (corrupt or not a video)")
    if len(frames) < n_context:
        raise AppError(too_short(path.name, int(index / rate), start, frame_step, n_context))
    has_truth = len(frames) >= n_context + n_future
    return np.stack(frames[: n_context + n_future] if has_truth else frames[:n_context]), has_truth


def _check_request(path: Path, start: int, frame_step: int, crop: str) -> None:
    """An AppError for an upload that is gone, not a video by its name or too large, or a start or step that
    cannot be (checked before opening the file)."""
    if not path.exists():
        raise AppError(f"{path.name}: the file is gone; upload it again")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise AppError(f"{path.name}: not a video file (expected one of {', '.join(VIDEO_SUFFIXES)})")
    if path.stat().st_size > MAX_UPLOAD_BYTES:
        raise AppError(f"{path.name}: {path.stat().st_size / 2**20:.0f} MB is too large "
                       f"(limit {MAX_UPLOAD_BYTES // 2**20} MB)")
    if start < 0 or frame_step < 1:
        raise AppError(f"{path.name}: start frame {start} and frame step {frame_step}: the start must be ≥ 0 "
                       "and the step ≥ 1")
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; choose {' or '.join(CROPS)}")


def _plan(capture: cv2.VideoCapture, path: Path, start: int, frame_step: int, n_context: int, n_future: int,
          footage: bool) -> tuple[list[int], float, float]:
    """The source frames to keep, the ratio of the source's frame rate to the one ``start`` and ``frame_step``
    count in, and the pixels decoding them may cover (start and span); an AppError, before decoding, for a
    video that cannot be read or is too long, too large or too costly to decode."""
    if not capture.isOpened():
        raise AppError(f"{path.name}: cannot be read as a video (corrupt, or a codec OpenCV lacks)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)  # 0 when the container does not say
    width, height = capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
    if count > 0 and count / fps > MAX_DURATION_S:
        raise AppError(f"{path.name}: {count / fps:.0f} s is too long (limit {MAX_DURATION_S:.0f} s)")
    if max(width, height) > MAX_SIDE:
        raise AppError(f"{path.name}: {width:.0f}×{height:.0f} is too large (limit {MAX_SIDE} px a side)")
    # The source frames to keep: the 45 frames from ``start``, ``frame_step`` apart (at 25 fps with ``footage``)
    rate = (fps if FPS_RANGE[0] <= fps <= FPS_RANGE[1] else TARGET_FPS) / TARGET_FPS if footage else 1.0
    picks = [int(round((start + i * frame_step) * rate)) for i in range(n_context + n_future)]
    if count > 0 and picks[0] >= count:
        raise AppError(too_short(path.name, int(count / rate), start, frame_step, n_context))
    span = picks[-1] - picks[0] + 1  # frames from the start to the last one kept
    pixels = width * height if width > 0 and height > 0 else MAX_SIDE * MAX_SIDE  # unknown: the worst
    if span * pixels > MAX_DECODE_PIXELS:
        raise AppError(f"{path.name}: with frame step {frame_step} the {n_context + n_future} frames span {span} "
                       f"frames of {width:.0f}×{height:.0f}, {span * pixels / 1e9:.0f} gigapixels to decode (limit "
                       f"{MAX_DECODE_PIXELS / 1e9:.0f}); use a smaller frame step or a smaller video")
    return picks, rate, (start + span) * pixels


def _seek(capture: cv2.VideoCapture, path: Path, first: int) -> tuple[cv2.VideoCapture, int]:
    """The capture at source frame ``first`` where the container can seek there, else a new one at frame 0; and
    the index of the frame it decodes next."""
    if first > 0:
        if capture.set(cv2.CAP_PROP_POS_FRAMES, first) and int(capture.get(cv2.CAP_PROP_POS_FRAMES)) == first:
            return capture, first
        # the container cannot seek: start again and skip to the start frame
        capture.release()
        capture = _open(path)
    return capture, 0


def _decode(capture: cv2.VideoCapture, path: Path, picks: list[int], index: int, deadline: float,
            max_seconds: float, convert: Callable[[np.ndarray], np.ndarray]) -> tuple[list[np.ndarray], int, int]:
    """The frames ``picks`` (``convert``-ed) decoded from source frame ``index`` on, the number of frames decoded
    and the index reached; an AppError once the ``deadline`` has passed."""
    wanted, keep = picks[-1] + 1, {}
    for k in picks:  # below 25 fps a source frame may be shown twice
        keep[k] = keep.get(k, 0) + 1
    frames, decoded = [], 0
    while index < wanted:
        if time.monotonic() > deadline:
            raise AppError(f"{path.name}: decoding stopped after {max_seconds:g} s at frame {index} (the "
                           "limit per request); use a shorter or smaller video, or a smaller start or frame step")
        if not capture.grab():  # grab decodes; retrieve below converts only the frames kept
            break
        decoded += 1
        if index in keep:
            ok, frame = capture.retrieve()
            if not ok:
                break
            frames.extend([convert(frame)] * keep[index])
        index += 1
    return frames, decoded, index


def _grey(frame: np.ndarray, size: int, crop: str, footage: bool) -> np.ndarray:
    """A decoded frame made grey and cropped and resized as training did; with ``footage``, kept at the decoder's
    working size (bars are found over all the frames, by :func:`read_clip`)."""
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    if footage:
        scale = min(1.0, WORK_SIDE / min(gray.shape))
        work = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
        return cv2.resize(gray, work, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    return cv2.resize(square_crop(gray, crop), (size, size), interpolation=cv2.INTER_AREA)
