"""The Gradio app: upload or pick a clip, run every model, compare frames, metrics and runtimes.

``vidpred app`` serves it on 127.0.0.1 with analytics off; ``share`` must be asked for. The app only
opens files uploaded to it through Gradio's upload endpoint and decodes them with OpenCV (never executes
them), with a bounded amount of decoding per request: an upload that would take too much decoding is
refused before decoding, and large ones are decoded one at a time beside the other requests
(:class:`DecodePool`), so they cannot hold the slots that normal requests are served in. Each session keeps
only its latest outputs and the app at most ``MAX_KEPT_OUTPUTS``; the app's folder is removed when it closes
or exits, the folders of apps that were killed are removed when the next one starts, and Gradio deletes
uploads after an hour.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import shutil
import statistics
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .config import DEFAULT_PROFILE, DataConfig, get_profile
from .data.footage import FPS_RANGE, TARGET_FPS, WORK_SIDE, content_box, to_square
from .data.ucf101 import CROPS, square_crop
from .metrics import frame_metrics, moving_mse
from .models import BASELINES, Predictor, build, model_device
from .runs import REAL_SOURCES
from .video import comparison_grid, error_map, to_uint8, write_video

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_DURATION_S = 600.0
MAX_SIDE = 4096
MAX_DECODE_S = 10.0  # decoding time allowed per request; a long or huge upload is stopped, not waited for
MAX_DECODE_PIXELS = 5e10  # pixels the 45 frames' span may hold: more cannot decode within MAX_DECODE_S (refused)
HEAVY_DECODE_PIXELS = 5e8  # pixels to decode above which an upload is large (about 0.3 s of decoding here)
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".gif")
CONCURRENCY = 2  # predictions at once (one per core here); the others wait
HEAVY_DECODES = 1  # large uploads decoded at once, beside the predictions
HEAVY_WAITING = 2  # large uploads that may wait for their turn; more are refused at once
SERVING_SLOTS = CONCURRENCY + HEAVY_DECODES + HEAVY_WAITING  # requests in the app at once: large uploads never
#   take more than HEAVY_DECODES + HEAVY_WAITING of them, so CONCURRENCY are always left for normal requests
QUEUE_SIZE = 100  # waiting requests beyond this are refused at once instead of waiting minutes
MAX_KEPT_OUTPUTS = 64  # output folders kept (3 files, ~0.4 MB each): the oldest go first
WORKDIR_PREFIX, MARKER = "vidpred-app-", ".vidpred-app.json"  # the app's folder in Gradio's, and what marks it
VIDEO_MODELS = 4  # models shown beside the ground truth in the side-by-side video (5 panels ≈ 970 px wide)
TIMING_REPEATS = 3


class AppError(ValueError):
    """A problem to show the user as a message (never a stack trace)."""


@dataclass
class Prediction:
    context: np.ndarray  # (n_context, 64, 64) uint8
    truth: np.ndarray | None  # (n_future, 64, 64) uint8, when the clip is long enough
    predictions: dict[str, np.ndarray]  # name -> (n_future, 64, 64) uint8
    rows: list[dict]  # per model: ms, and MSE / moving-pixel MSE / PSNR / SSIM when there is ground truth


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
    capture = _open(path)
    try:
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
        large = pool is not None and (start + span) * pixels > HEAVY_DECODE_PIXELS
        with pool.turn(path.name) if large else contextlib.nullcontext():
            deadline = time.monotonic() + max_seconds
            index, first = 0, picks[0]
            if first > 0:
                if capture.set(cv2.CAP_PROP_POS_FRAMES, first) and int(capture.get(cv2.CAP_PROP_POS_FRAMES)) == first:
                    index = first
                else:  # the container cannot seek: start again and skip to the start frame
                    capture.release()
                    capture = _open(path)
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
                    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
                    if footage:  # kept at the decoder's working size; bars are found over all of them below
                        scale = min(1.0, WORK_SIDE / min(gray.shape))
                        work = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
                        gray = cv2.resize(gray, work, interpolation=cv2.INTER_AREA) if scale < 1 else gray
                    else:
                        gray = cv2.resize(square_crop(gray, crop), (size, size), interpolation=cv2.INTER_AREA)
                    frames.extend([gray] * keep[index])
                index += 1
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


def load_models(checkpoints: str | Path | None, profile: str | None = None,
                train=None, found=None, blend: Predictor | None = None) -> tuple[dict[str, Predictor], str]:
    """The baselines plus every trained model (from ``checkpoints``, else the package's shipped ones)
    and a note that says which checkpoints were loaded and what each was trained on.

    ``train`` (training windows) fits the blend baseline, else ``blend`` is it (one already fitted); without
    either the blend is left out.
    """
    from .evaluate import baseline_models
    from .runs import runs_for

    prof = get_profile(profile)
    found = found if found is not None else runs_for(checkpoints, prof.name, allow_mixed=True)
    models: dict[str, Predictor] = baseline_models(train)
    if "blend" not in models and blend is not None:
        models = {name: models.get(name, blend) for name in BASELINES if name in models or name == "blend"}
    lines = [f"- {run.describe()}" for run in found.runs.values()]
    lines += [f"- {message}" for message in found.skipped]
    if not found.runs:
        lines.insert(0, f"No trained models in `{checkpoints}` and none shipped for the `{prof.name}` profile, so only "
                        "the baselines run. Train them with `vidpred train --model all` (then restart the app).")
    else:
        lines.insert(0, "**Loaded checkpoints** (the data each model was trained on):")
    for name, run in found.runs.items():
        models[name] = run.model()
    return models, "\n".join(lines)


def upload_crop(found, default: str | None = "center") -> str | None:
    """How the app crops uploads: as the loaded models' real training videos were (when those agree),
    else ``default`` (the data config's; the synthetic videos are square, so for models trained on
    them the centred square of an upload is the undistorted match)."""
    crops = {(run.data or {}).get("crop") for run in found.runs.values() if (run.data or {}).get("source") in REAL_SOURCES}
    crops.discard(None)
    return crops.pop() if len(crops) == 1 else default


def trained_on_footage(found) -> bool:
    """Whether the loaded models (``found``, a RunSet) learned from the real exercise footage: then uploads are read
    as that footage was (25 fps, bars cropped; :func:`read_clip` ``footage``)."""
    return any((run.data or {}).get("source") == "exercise" for run in found.runs.values())


def real_warning(found) -> str:
    """What models trained on the real exercise set can and cannot be expected to do on an upload."""
    data = [run.data for run in found.runs.values() if (run.data or {}).get("source") == "exercise"]
    if not data:
        return ""
    classes = ", ".join(sorted({c for d in data for c in d.get("classes", ())}))
    clips = max(d.get("train_clips", 0) for d in data)
    return (f"These models learned from {clips} real exercise clips ({classes}; mostly push-ups, filmed by phones "
            "and webcams). On other movements, people, rooms and cameras they may do no better than the baselines: "
            "the metrics table says, clip by clip.")


def synthetic_warning(found) -> str:
    """A plain warning for real uploads when every loaded model (``found``, a RunSet) was trained on the
    synthetic videos."""
    sources = {(run.data or {}).get("source") for run in found.runs.values()}
    if not found.runs or sources != {"synthetic"}:
        return ""
    return ("**Warning: these models were trained on synthetic stick-figure videos, not on real video.** On a real "
            "clip expect them to do no better than the baselines (copy-last, context mean, blend, analogue). To "
            "train on UCF101: `vidpred prepare --data-dir /path/to/UCF101`, then `vidpred train --model all "
            "--data-dir /path/to/UCF101`, then `vidpred app --checkpoints runs/<profile>`.")


def timed_forward(model: Predictor, context: torch.Tensor, n_future: int, repeats: int) -> tuple[torch.Tensor, float]:
    """The prediction and its time in ms: one run (repeats=1), else the median of ``repeats`` after a warm-up."""
    if repeats > 1:
        model(context, n_future)
    times = []
    for _ in range(max(1, repeats)):
        tic = time.perf_counter()
        prediction = model(context, n_future)
        times.append((time.perf_counter() - tic) * 1000)
    return prediction, statistics.median(times)


@torch.inference_mode()
def predict_all(frames: np.ndarray, models: dict[str, Predictor], n_context: int = 30,
                repeats: int = TIMING_REPEATS, runtimes: dict[str, float] | None = None) -> Prediction:
    """Run every model on the context of ``frames``; metrics against the rest when it is there.

    ``ms`` is the median of ``repeats`` runs after a warm-up, or ``runtimes[name]`` when given (the app
    times each model once at startup, since the time depends on the clip's shape only, and then runs
    each model once per request).
    """
    context_u8 = frames[:n_context]
    truth_u8 = frames[n_context:] if len(frames) > n_context else None
    n_future = len(truth_u8) if truth_u8 is not None else 15
    context = torch.from_numpy(context_u8).float().div(255)[None, :, None]  # (1, 30, 1, H, W)
    truth = None if truth_u8 is None else torch.from_numpy(truth_u8).float().div(255)[None, :, None]
    predictions, rows = {}, []
    for name, model in models.items():
        prediction, ms = timed_forward(model, context, n_future, 1 if runtimes else repeats)
        prediction = prediction.clamp(0, 1)
        predictions[name] = to_uint8(prediction[0])
        row = {"model": name, "ms": runtimes[name] if runtimes else ms}
        if truth is not None:
            values = frame_metrics(prediction, truth)
            row.update({k: float(values[k].mean()) for k in ("mse", "psnr", "ssim")})
            row["moving_mse"] = moving_mse(prediction, truth, context[:, -1:])
        rows.append(row)
    return Prediction(context_u8, truth_u8, predictions, rows)


def default_profile() -> str:
    """The app's profile: ``$VIDPRED_PROFILE`` when set, else ``real`` where the package ships checkpoints trained on
    the real exercise set, else the default (the synthetic ``book``)."""
    from .runs import shipped_runs

    if os.environ.get("VIDPRED_PROFILE"):
        return os.environ["VIDPRED_PROFILE"]
    return "real" if shipped_runs("real").runs else DEFAULT_PROFILE


def real_splits(cfg: DataConfig) -> dict | None:
    """The real exercise set's clips by split where its videos are on this machine (``cfg.data_dir``, else a mirror:
    ``$VIDPRED_EXERCISE_DIR`` or ``shared/exercise`` beside the project), else None: the app never starts a download."""
    import dataclasses

    from .data import load_splits
    from .data.exercise import find_mirror

    mirror = cfg.data_dir or find_mirror()
    if mirror is None:
        return None
    try:
        return load_splits(dataclasses.replace(cfg, data_dir=str(mirror)))
    except (OSError, ValueError, RuntimeError) as err:
        log.warning("the real exercise set in %s cannot be used (%s); the samples are synthetic clips", mirror, err)
        return None


def shipped_blend(profile: str) -> Predictor | None:
    """The blend baseline fitted when the profile's checkpoints were shipped (its α_t are in the manifest), for when
    the training split is not on this machine; None without one."""
    from .runs import shipped_manifest

    config = ((shipped_manifest(profile) or {}).get("baselines") or {}).get("blend", {}).get("config")
    return build("blend", **config) if config else None


def spread_over_classes(clips: list, limit: int) -> list:
    """Up to ``limit`` clips taking one of each class in turn, so that every class is represented."""
    by_class: dict[str, list] = {}
    for clip in clips:
        by_class.setdefault(clip.label, []).append(clip)
    queues, spread = list(by_class.values()), []
    while len(spread) < limit and any(queues):
        for queue in queues:
            if queue and len(spread) < limit:
                spread.append(queue.pop(0))
    return spread


def sample_clips(profile: str | None = None, limit: int = 12, splits=None, data: DataConfig | None = None,
                 ) -> dict[str, np.ndarray]:
    """Sample clips by name, spread over every class.

    Without ``data``: synthetic test clips always, and UCF101 test clips when a cache holds them.
    With ``data`` (the data the app was asked for, e.g. ``vidpred app --data-dir … --classes …``): the
    test clips of that data only. ``splits`` (from :func:`vidpred.data.load_splits`) saves loading twice.
    """
    from .data import load_splits

    if data is not None:
        source = {"ucf101": "UCF101", "exercise": "real"}.get(data.source, "synthetic")
        tests = (splits or load_splits(data))["test"]
        return {f"{source}: {c.name}": c.frames for c in spread_over_classes(tests, limit)}
    cfg = get_profile(profile).data
    synthetic = cfg if cfg.source == "synthetic" else get_profile("smoke").data
    tests = (splits or load_splits(synthetic))["test"]
    clips = {f"synthetic: {c.name}": c.frames for c in spread_over_classes(tests, limit)}
    for manifest in sorted(Path(cfg.cache_dir).glob("ucf101-*/manifest.json")):
        entries = json.loads(manifest.read_text()).get("clips", {})
        names = [n for n, e in entries.items() if e.get("split") == "test"][:limit]
        for name in names:
            path = manifest.parent / "frames" / f"{name}.npy"
            if path.exists():
                clips[f"UCF101: {name}"] = np.load(path)
    return clips


def _clip_ended(shape: tuple[int, ...]) -> np.ndarray:
    """Dark frames that say so, for the ground-truth panel of a clip that ends with its context."""
    frames = np.full(shape, 24, np.uint8)
    for frame in frames:
        for line, text in enumerate(("the clip", "has ended")):
            cv2.putText(frame, text, (4, 28 + 14 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.3, 200, 1, cv2.LINE_AA)
    return frames


def _strip(frames: np.ndarray, scale: int = 2) -> np.ndarray:
    row = np.concatenate([np.pad(f, ((0, 0), (0, 1)), constant_values=255) for f in frames], axis=1)
    return cv2.resize(row, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def prediction_sheet(predictions: dict[str, np.ndarray], truth: np.ndarray | None, label_width: int = 120) -> np.ndarray:
    """One labelled row of 15 frames per model (RGB uint8), under the ground truth and over the error maps."""
    rows: list[tuple[str, np.ndarray]] = []
    if truth is not None:
        rows.append(("ground truth", np.repeat(truth[..., None], 3, -1)))
    rows += [(name, np.repeat(p[..., None], 3, -1)) for name, p in predictions.items()]
    if truth is not None:
        rows += [(f"{name} error", error_map(p, truth)) for name, p in predictions.items() if name not in BASELINES]
    lines = []
    for label, frames in rows:
        strip = np.concatenate([np.pad(f, ((1, 1), (1, 1), (0, 0)), constant_values=255) for f in frames], axis=1)
        margin = np.full((strip.shape[0], label_width, 3), 255, np.uint8)
        cv2.putText(margin, label[:18], (4, strip.shape[0] // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
        lines.append(np.concatenate([margin, strip], axis=1))
    return np.concatenate(lines, axis=0)


METRIC_COLUMNS = (  # (row key, table header, best is the lowest)
    ("mse", "MSE (per pixel, lower is better)", True),
    ("moving_mse", "moving-pixel MSE (lower is better)", True),
    ("psnr", "PSNR dB ↑", False),
    ("ssim", "SSIM ↑", False),
)


def metrics_table(rows: list[dict], threads: int, with_metrics: bool) -> tuple[list[str], list[list[str]]]:
    """Headers with units and direction, and values to 5 significant digits with ★ on the best of each column."""
    columns = [c for c in METRIC_COLUMNS if with_metrics]
    columns.append(("ms", f"ms per clip ↓ ({threads} thread{'s' if threads > 1 else ''}, median of {TIMING_REPEATS})", True))
    best = {key: (min if lowest else max)(r[key] for r in rows) for key, _, lowest in columns}
    table = [[r["model"]] + [f"{r[key]:.5g}" + (" ★" if r[key] == best[key] else "") for key, _, _ in columns]
             for r in rows]
    return ["model"] + [header for _, header, _ in columns], table


def video_models(rows: list[dict], limit: int = VIDEO_MODELS) -> list[str]:
    """The models for the side-by-side video: the learned ones (best MSE first when there is ground truth),
    then the baselines, best first; the best baseline always has a panel, as the bar to compare with."""
    def by_mse(chosen):
        return sorted(chosen, key=lambda r: r.get("mse", 0.0))

    learned = [r["model"] for r in by_mse(r for r in rows if r["model"] not in BASELINES)]
    baselines = [r["model"] for r in by_mse(r for r in rows if r["model"] in BASELINES)]
    return learned[: limit - 1] + baselines[: max(1, limit - len(learned))] if baselines else learned[:limit]


def runnable(models: dict[str, Predictor], repeats: int = TIMING_REPEATS) -> tuple[dict[str, float], list[str]]:
    """Each model's time in ms for one 30 → 15 clip (median of ``repeats`` after a warm-up), and a note for each
    model that cannot predict (it is left out rather than failing every request)."""
    context = torch.rand(1, 30, 1, 64, 64)
    runtimes, notes = {}, []
    with torch.inference_mode():
        for name, model in list(models.items()):
            try:
                runtimes[name] = timed_forward(model, context, 15, repeats)[1]
            except (ValueError, RuntimeError) as err:
                notes.append(f"{name} is left out: {err}")
                del models[name]
    return runtimes, notes


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


def build_app(checkpoints: str | Path | None = None, profile: str | None = None, data: DataConfig | None = None,
              allow_mixed: bool = True, crop: str | None = None):
    """The Gradio Blocks of the app.

    Without ``data`` every checkpoint under ``checkpoints`` (else the shipped ones) is loaded and shown
    with the data it was trained on. With ``data`` (``vidpred app --data-dir … --classes …``) only the
    checkpoints trained on that data are loaded (others are refused unless ``allow_mixed``), the blend
    is fitted on its training split and the samples are its test clips. Uploads are cropped with
    ``crop``, by default as the loaded models' training videos were (:func:`upload_crop`).
    """
    import gradio as gr
    import pandas as pd
    from matplotlib.figure import Figure

    from .data import WindowDataset, load_splits
    from .runs import data_identity, runs_for

    prof = get_profile(profile or default_profile())
    if data is None:
        data_cfg = prof.data
        # the real exercise set where it is on this machine: its training split fits the blend, its test clips are
        # the samples; else (and for UCF101 profiles) the synthetic clips, and the blend the profile shipped
        real_data = real_splits(data_cfg) if data_cfg.source == "exercise" else None
        splits = real_data or load_splits(data_cfg if data_cfg.source == "synthetic" else get_profile("smoke").data)
        fit_blend = real_data is not None or data_cfg.source == "synthetic" or shipped_blend(prof.name) is None
        found = runs_for(checkpoints, prof.name, allow_mixed=True)  # read once: models and warning
    else:
        data_cfg, real_data, fit_blend = data, None, True
        splits = load_splits(data)
        identity = data_identity(data, splits["train"])
        found = runs_for(checkpoints, prof.name, identity, allow_mixed=allow_mixed)
    train = WindowDataset.from_config(splits["train"], data_cfg, "train") if fit_blend else None
    models, note = load_models(checkpoints, prof.name, train, found, blend=None if fit_blend else shipped_blend(prof.name))
    samples = sample_clips(prof.name, splits=splits, data=data or (data_cfg if real_data else None))
    real_video_warning = synthetic_warning(found) or real_warning(found)
    footage = trained_on_footage(found)  # uploads read as the training footage was: 25 fps, bars cropped
    trained_crop = upload_crop(found, None)  # None: no agreed crop of real training videos
    real = any((r.data or {}).get("source") in REAL_SOURCES for r in found.runs.values())
    why = ("as chosen with --crop" if crop else "as the models' training videos were" if trained_crop
           else "the default, since the loaded models' real training videos were cropped differently" if real
           else "so that bodies keep their shape, as in the square frames the models were trained on")
    crop = crop or trained_crop or data_cfg.crop
    crop_note = ("Uploads are cropped to their centred square before resizing to 64×64" if crop == "center"
                 else "Uploads are squashed to 64×64 whole (no crop)") + f", {why}."
    if footage:
        crop_note += (" As the models' training footage was, uploads are first brought to 25 fps (start frame and "
                      "frame step count frames at 25 fps) and black or blurred bars are cropped away.")
    runtimes, left_out = runnable(models)
    note = "\n\n".join([note, *left_out]).strip()
    threads = torch.get_num_threads()
    # Outputs go inside Gradio's upload folder, so Gradio serves them without copying them into its cache.
    leftovers = clean_leftovers(upload_folder())
    workdir = make_workdir(upload_folder())
    atexit.register(_remove, workdir)
    outputs_kept = OutputFolders(workdir, MAX_KEPT_OUTPUTS)
    pool = DecodePool()
    computing = threading.BoundedSemaphore(CONCURRENCY)  # predictions and their outputs, beside large decodes
    runtime_plot = workdir / "runtimes.png"  # the times depend on the clip's shape only: drawn once
    fig = Figure(figsize=(6.5, 0.8 + 0.3 * len(runtimes)))
    ax = fig.subplots()
    ax.barh(list(runtimes), list(runtimes.values()), color="C0")
    ax.invert_yaxis()
    ax.set_xlabel(f"ms per clip (median of {TIMING_REPEATS} after a warm-up, {threads} thread"
                  f"{'s' if threads > 1 else ''}, {' and '.join(sorted({model_device(m).type for m in models.values()}))})")
    fig.tight_layout()
    fig.savefig(runtime_plot, dpi=100)

    def clip_frames(upload, sample, start, step):
        start, step = int(start or 0), int(step or 1)
        if upload:
            path = checked_upload(upload, getattr(demo, "upload_file_set", None))
            frames, _ = read_clip(path, start, step, size=data_cfg.image_size, crop=crop, pool=pool, footage=footage)
            source = path.name
        elif sample:
            if sample not in samples:
                raise AppError(f"unknown sample {sample!r}; pick one from the list")
            if start < 0 or step < 1:
                raise AppError(f"{sample}: start frame {start} and frame step {step}: the start must be ≥ 0 and the step ≥ 1")
            clip = samples[sample][start::step]
            if len(clip) < 30:
                raise AppError(too_short(sample, len(samples[sample]), start, step))
            frames, source = clip[:45], sample
        else:
            raise AppError("upload a video or pick a sample clip first")
        return frames, source, start, step

    def run(upload, sample, start, step, previous):
        try:
            frames, source, start, step = clip_frames(upload, sample, start, step)  # large uploads: in the pool
            with computing:
                return respond(predict_all(frames, models, runtimes=runtimes), source, start, step, upload, previous)
        except AppError as err:
            return (f"**Cannot use this clip.** {err}", None, None, None, None, None, previous)
        except Exception as err:  # a bug: one line for the user, the traceback for the log
            log.exception("prediction failed")
            return (f"**The app failed on this clip** ({type(err).__name__}: {err}); the server log has the details.",
                    None, None, None, None, None, previous)

    def respond(result, source, start, step, upload, previous):
        folder = outputs_kept.new()  # this request's outputs; the session's previous ones go below
        context_path = folder / "context.png"
        cv2.imwrite(str(context_path), _strip(result.context[::3]))
        sheet_path = folder / "sheet.jpg"  # a JPEG of 0.4 MB encodes 4× faster than a PNG of 1.5 MB, and loads faster
        cv2.imwrite(str(sheet_path), cv2.cvtColor(prediction_sheet(result.predictions, result.truth), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
        shown = video_models(result.rows)
        truth = result.truth if result.truth is not None else _clip_ended(result.predictions[shown[0]].shape)
        grid = comparison_grid(truth, {name: result.predictions[name] for name in shown}, context=result.context[-5:],
                               scale=3, with_error=False)
        video = write_video(folder / "compare.mp4", grid, fps=6, preset="veryfast")  # per request: encode fast
        headers, values = metrics_table(result.rows, threads, result.truth is not None)
        table = pd.DataFrame(values, columns=headers)
        status = f"**{source}**: 30 context frames from frame {start}, step {step}. " + (
            "Metrics are against the next 15 real frames; ★ marks the best of each column."
            if result.truth is not None
            else "The clip ends before 15 more frames, so there is no ground truth and no metrics.")
        status += f" The video shows {', '.join(shown)}" + (" beside the ground truth." if result.truth is not None
                                                            else " (no ground truth).")
        if upload:
            status += " " + crop_note
        if upload and real_video_warning:
            status += "\n\n" + real_video_warning
        if note:
            status += "\n\n" + note
        outputs_kept.remove(previous)  # keep only the latest outputs of each session
        return status, str(context_path), str(sheet_path), str(video), table, str(runtime_plot), str(folder)

    with gr.Blocks(title="vidpred: compare video predictors", delete_cache=(600, 3600)) as demo:
        gr.Markdown("# vidpred — 30 frames in, 15 frames out\nUpload a video or pick a sample; every model "
                    "and baseline predicts the next 15 frames (64×64 grayscale, as in training).")
        outputs = gr.State(None, time_to_live=3600, delete_callback=outputs_kept.remove)  # the session's latest
        with gr.Row():
            upload = gr.File(label="upload a video", file_types=list(VIDEO_SUFFIXES), type="filepath")
            with gr.Column():
                sample = gr.Dropdown(choices=list(samples), value=None, label="or pick a sample clip")
                start = gr.Number(value=0, precision=0, minimum=0, label="start frame")
                step = gr.Number(value=data_cfg.frame_step, precision=0, minimum=1, label="frame step")
                button = gr.Button("Run all models", variant="primary")
        status = gr.Markdown(note or "Ready.", elem_id="status")
        context_image = gr.Image(label="context (every 3rd of the 30 frames)", type="filepath")
        sheet = gr.Image(label="the 15 predicted frames: one row per model, errors below (bright = wrong)",
                         type="filepath", elem_id="sheet")
        video = gr.Video(label=f"side by side: ground truth and up to {VIDEO_MODELS} models", format="mp4")
        table = gr.Dataframe(label="metrics (↓ lower is better, ↑ higher is better, ★ best) and inference time",
                             elem_id="metrics", wrap=True)
        plot = gr.Image(label="inference time of each model (measured when the app started)", type="filepath")
        button.click(run, [upload, sample, start, step, outputs],
                     [status, context_image, sheet, video, table, plot, outputs],
                     api_name="predict", concurrency_limit=SERVING_SLOTS)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=SERVING_SLOTS)
    preprocess = demo.preprocess_data

    async def refuse_in_a_line(block_fn, inputs, *args, **kwargs):
        """Gradio's refusal of a path that was not uploaded names the server's working folder (``file://x`` is
        resolved under it): the client gets the app's line instead, with the path as it was sent."""
        from gradio.exceptions import InvalidPathError

        try:
            return await preprocess(block_fn, inputs, *args, **kwargs)
        except InvalidPathError:
            sent = next((v["path"] for v in inputs or () if isinstance(v, dict) and "path" in v), "the file")
            raise gr.Error(not_uploaded(sent), print_exception=False) from None

    demo.preprocess_data = refuse_in_a_line
    demo.vidpred_workdir = workdir
    demo.vidpred_outputs = outputs_kept
    demo.vidpred_pool = pool
    demo.vidpred_leftovers = leftovers
    demo.vidpred_models = list(models)
    demo.vidpred_samples = list(samples)
    demo.vidpred_crop = crop
    close = demo.close

    def close_and_clean(*args, **kwargs):
        try:
            return close(*args, **kwargs)
        finally:
            _remove(workdir)

    demo.close = close_and_clean
    return demo


def serving_threads(concurrency: int = CONCURRENCY) -> int:
    """torch threads per request so that ``concurrency`` requests at once use the cores without oversubscribing."""
    return max(1, (os.cpu_count() or 1) // concurrency)


def _exit(signum, frame) -> None:
    raise KeyboardInterrupt  # Gradio then closes the server as after Ctrl-C, and the atexit clean-up runs


def launch(checkpoints: str | Path | None = None, port: int = 7860, share: bool = False,
           profile: str | None = None, block: bool = True, threads: int | None = None,
           data: DataConfig | None = None, allow_mixed: bool = True, crop: str | None = None):
    """Serve the app on 127.0.0.1:``port`` (``block=False`` returns the running app, for tests and benchmarks).

    ``threads`` sets torch's thread count for the process (default: the cores shared by the requests
    served at once); errors are shown to the client (Gradio's refusals included) as one-line messages.
    ``data``, ``allow_mixed`` and ``crop`` are :func:`build_app`'s. A blocking server stopped with SIGTERM
    (``kill``, a service manager) exits normally, so its output folder is removed as after Ctrl-C.
    """
    import signal
    import threading

    torch.set_num_threads(threads or serving_threads())
    demo = build_app(checkpoints, profile, data=data, allow_mixed=allow_mixed, crop=crop)
    if block and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit)
    print(f"vidpred app: {len(demo.vidpred_models)} models ({', '.join(demo.vidpred_models)}), "
          f"{torch.get_num_threads()} torch thread(s) per request, {CONCURRENCY} requests at once and "
          f"{HEAVY_DECODES} large upload decoding beside them ({HEAVY_WAITING} more may wait), queue of {QUEUE_SIZE}; "
          f"outputs in {demo.vidpred_workdir} (the latest {MAX_KEPT_OUTPUTS})"
          + (f"; removed {len(demo.vidpred_leftovers)} folder(s) left by apps that were killed"
             if demo.vidpred_leftovers else ""), flush=True)
    demo.launch(server_name="127.0.0.1", server_port=port, share=share, show_error=True,
                prevent_thread_lock=not block, quiet=not block)
    return demo
