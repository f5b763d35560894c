"""Real footage to clean 64×64 clips: one frame rate, the picture without its bars, no cuts, no frozen frames.

Real videos are not UCF101's tidy 320×240 at 25 fps. What this module handles, found from the
pixels (never from a list of file names):

* **frame rates** from about 20 to 60 fps: every video is brought to :data:`TARGET_FPS` (25, the rate
  of UCF101) by taking, for each output instant, the nearest source frame (frames are dropped above
  25 fps, and a few repeated below it);
* **bars**: black letterbox or pillarbox bars on any side (columns and rows that stay black in every
  sampled frame), and the blurred side bars of a portrait video shown in a landscape frame (both
  sides at least a tenth of the width, about as wide as each other, with far less detail than the
  middle): the frame is cut to the picture inside them before the square crop;
* **shot cuts**: a jump between consecutive frames far above the clip's usual change splits the
  video into segments, so no window spans two shots;
* **title cards, freeze frames and blank frames**: runs of frames that do not change at all
  (:data:`FROZEN_RUN` or more in a row) and frames with no picture (uniform) are dropped, splitting
  the video there;
* **short pieces**: a segment shorter than one window is dropped and counted.

:func:`decode_footage` does all of it; the real exercise set (:mod:`vidpred.data.exercise`) and
``vidpred evaluate --clips`` (any folder of videos) both use it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from .videos import VideoError, open_regular, square_crop

TARGET_FPS = 25.0  # every real video is resampled to this rate (UCF101's)
WORK_SIDE = 128  # frames are kept at this short side between decoding and the final resize
FPS_RANGE = (5.0, 240.0)  # a container's frame rate outside this is not believed: TARGET_FPS is assumed
BLACK_MAX = 20  # a bar column/row: no sampled pixel brighter than this ...
BLACK_MEAN = 6  # ... and this dark on average
BLUR_SIDE = 0.10  # blurred side bars: each at least this share of the width ...
BLUR_DETAIL = 0.3  # ... with less than this share of the middle's detail
CUT_JUMP = 20.0  # a cut: a mean change (grey levels, 32×32) above this and ...
CUT_RATIO = 6.0  # ... this many times the clip's median change
FROZEN_MAX = 4  # frozen: no pixel of the 64×64 frame changes by more than this, ...
FROZEN_MEAN = 0.1  # ... the mean change is below this (codec noise; a camera's own noise is higher) ...
FROZEN_RUN = 8  # ... for at least this many consecutive frames
BLANK_STD = 4.0  # a frame whose pixels vary less than this has no picture
DECODER_VERSION = 2  # bump when anything above changes what decode_footage returns


@dataclass
class Footage:
    """What :func:`decode_footage` made of one video."""

    segments: list[np.ndarray]  # uint8 (T, size, size) each, at TARGET_FPS, long enough for a window
    source_fps: float
    source_frames: int
    source_size: tuple[int, int]  # (height, width)
    box: tuple[int, int, int, int]  # the picture inside the bars: (top, bottom, left, right) in source pixels
    cuts: int = 0  # shot cuts found
    dropped: dict[str, int] = field(default_factory=dict)  # why -> source frames dropped
    short_segments: int = 0  # pieces shorter than one window, dropped

    @property
    def frames(self) -> int:
        return sum(len(s) for s in self.segments)

    @property
    def cropped(self) -> bool:
        """Whether bars were found and cut away."""
        return self.box != (0, self.source_size[0], 0, self.source_size[1])

    def summary(self) -> dict:
        return {"source_fps": self.source_fps, "source_frames": self.source_frames,
                "source_size": list(self.source_size), "box": list(self.box), "cropped": self.cropped, "cuts": self.cuts,
                "dropped": self.dropped, "short_segments": self.short_segments,
                "segments": [len(s) for s in self.segments]}


def read_frames(path: str | os.PathLike) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Every frame, grey, with its short side scaled to :data:`WORK_SIDE`; the container's fps; the source size."""
    os.close(open_regular(path))  # refuse FIFOs and devices before OpenCV blocks on them
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoError(f"{path}: OpenCV cannot open it (not a video, or an unknown codec)")
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames, size = [], None
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if frame.ndim == 3:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            if size is None:
                size = frame.shape[:2]
                scale = min(1.0, WORK_SIDE / min(size))
                work = (max(1, round(size[1] * scale)), max(1, round(size[0] * scale)))
            if frame.shape[:2] != size:
                raise VideoError(f"{path}: the frame size changes from {size[1]}x{size[0]} to "
                                 f"{frame.shape[1]}x{frame.shape[0]} mid-video; re-encode it at one size")
            frames.append(cv2.resize(frame, work, interpolation=cv2.INTER_AREA) if work != size[::-1] else frame)
    finally:
        capture.release()
    if not frames:
        raise VideoError(f"{path}: no frame could be decoded (corrupt or empty file)")
    if not (math.isfinite(fps) and FPS_RANGE[0] <= fps <= FPS_RANGE[1]):
        fps = TARGET_FPS
    return np.stack(frames), float(fps), size


def _edge_run(flags: np.ndarray) -> int:
    """How many leading entries of ``flags`` are true."""
    return int(np.argmin(flags)) if not flags.all() else len(flags)


def content_box(frames: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the picture inside black bars or blurred side bars, in ``frames``' pixels."""
    picks = np.linspace(0, len(frames) - 1, min(32, len(frames))).round().astype(int)
    sample = frames[picks].astype(np.float32)  # (S, H, W)
    height, width = sample.shape[1:]
    brightest, mean = sample.max(0), sample.mean(0)  # (H, W)
    black_cols = (brightest.max(0) <= BLACK_MAX) & (mean.mean(0) <= BLACK_MEAN)
    black_rows = (brightest.max(1) <= BLACK_MAX) & (mean.mean(1) <= BLACK_MEAN)
    top, bottom = _edge_run(black_rows), height - _edge_run(black_rows[::-1])
    left, right = _edge_run(black_cols), width - _edge_run(black_cols[::-1])
    if bottom - top < height // 8 or right - left < width // 8:  # (nearly) all black: no bars to speak of
        return 0, height, 0, width
    # Blurred side bars (a portrait video in a landscape frame): little vertical detail on both sides.
    detail = np.abs(np.diff(sample[:, top:bottom, left:right], axis=1)).mean((0, 1))  # (W',) per column
    inner = len(detail)
    middle = np.median(detail[inner // 3 : 2 * inner // 3]) if inner >= 3 else 0.0
    if middle > 0:
        low = detail < BLUR_DETAIL * middle
        bar_left, bar_right = _edge_run(low), _edge_run(low[::-1])
        if min(bar_left, bar_right) >= BLUR_SIDE * inner and abs(bar_left - bar_right) <= 0.25 * max(bar_left, bar_right) + 2:
            left, right = left + bar_left, right - bar_right
    return top, bottom, left, right


def to_square(frames: np.ndarray, box: tuple[int, int, int, int], size: int, crop: str) -> np.ndarray:
    """The picture in ``box``, made square (``crop``: centre square, or squashed) and resized: (T, size, size)."""
    top, bottom, left, right = box
    out = np.empty((len(frames), size, size), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = cv2.resize(square_crop(frame[top:bottom, left:right], crop), (size, size), interpolation=cv2.INTER_AREA)
    return out


def keep_mask(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(keep (T,) bool, cut_before (T,) bool, dropped counts) for (T, size, size) uint8 frames."""
    n = len(frames)
    keep = np.ones(n, bool)
    small = np.stack([cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA) for f in frames]).astype(np.float32)
    change = np.abs(np.diff(small, axis=0)).mean((1, 2))  # (T-1,) mean change between neighbours
    cut_before = np.zeros(n, bool)
    if len(change):
        cut_before[1:] = change > max(CUT_JUMP, CUT_RATIO * float(np.median(change)))
    blank = small.std((1, 2)) < BLANK_STD
    still = np.zeros(n, bool)  # frame i repeats frame i-1
    if n > 1:
        step = np.abs(np.diff(frames.astype(np.int16), axis=0))  # (T-1, size, size)
        still[1:] = (step.max((1, 2)) <= FROZEN_MAX) & (step.mean((1, 2)) < FROZEN_MEAN)
    frozen = np.zeros(n, bool)
    start = None
    for i in range(n + 1):  # runs of repeats: a held image (title card, freeze frame), dropped whole
        if i < n and still[i]:
            start = i - 1 if start is None else start
        elif start is not None:
            if i - start >= FROZEN_RUN:
                frozen[start:i] = True
            start = None
    keep &= ~blank & ~frozen
    dropped = {"blank": int(blank.sum()), "frozen": int((frozen & ~blank).sum())}
    return keep, cut_before, {k: v for k, v in dropped.items() if v}


def segments_of(keep: np.ndarray, cut_before: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) runs of kept frames, split at cuts."""
    runs, start = [], None
    for i, kept in enumerate(keep):
        if not kept:
            if start is not None:
                runs.append((start, i))
            start = None
        elif start is None:
            start = i
        elif cut_before[i]:
            runs.append((start, i))
            start = i
    if start is not None:
        runs.append((start, len(keep)))
    return runs


def resample(start: int, stop: int, source_fps: float, fps: float = TARGET_FPS) -> np.ndarray:
    """Source frame indices in [start, stop) nearest to each instant 1/fps apart."""
    n_out = int(math.floor((stop - start - 1) * fps / source_fps + 1e-9)) + 1
    picks = start + np.round(np.arange(n_out) * source_fps / fps).astype(int)
    return picks[picks < stop]


def decode_footage(path: str | os.PathLike, size: int = 64, crop: str = "center", min_frames: int = 45,
                   fps: float = TARGET_FPS) -> Footage:
    """The usable segments of one real video, each (T, size, size) uint8 at ``fps``; see the module's text."""
    work, source_fps, source_size = read_frames(path)
    box = content_box(work)
    scale = source_size[0] / work.shape[1]
    frames = to_square(work, box, size, crop)
    keep, cut_before, dropped = keep_mask(frames)
    limits = (source_size[0], source_size[0], source_size[1], source_size[1])
    footage = Footage([], source_fps, len(work), source_size, tuple(min(int(round(b * scale)), n) for b, n in zip(box, limits)),
                      cuts=int(cut_before.sum()), dropped=dropped)
    for start, stop in segments_of(keep, cut_before):
        picks = resample(start, stop, source_fps, fps)
        if len(picks) < min_frames:
            footage.short_segments += 1
            continue
        footage.segments.append(np.ascontiguousarray(frames[picks]))
    return footage
