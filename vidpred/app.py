"""The Gradio app: upload or pick a clip, run every model, compare frames, metrics and runtimes.

``vidpred app`` serves it on 127.0.0.1 with analytics off; ``share`` must be asked for. Uploads are
only decoded with OpenCV (never executed), and Gradio's copies are deleted after an hour.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .config import get_profile
from .metrics import frame_metrics
from .models import BASELINES, Predictor
from .video import comparison_grid, error_map, to_uint8, write_video

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_DURATION_S = 600.0
MAX_SIDE = 4096
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".gif")


class AppError(ValueError):
    """A problem to show the user as a message (never a stack trace)."""


@dataclass
class Prediction:
    context: np.ndarray  # (n_context, 64, 64) uint8
    truth: np.ndarray | None  # (n_future, 64, 64) uint8, when the clip is long enough
    predictions: dict[str, np.ndarray]  # name -> (n_future, 64, 64) uint8
    rows: list[dict]  # per model: ms, and MSE / PSNR / SSIM when there is ground truth


def read_clip(path: str | Path, start: int = 0, frame_step: int = 1, size: int = 64, n_context: int = 30,
              n_future: int = 15) -> tuple[np.ndarray, bool]:
    """Preprocess an uploaded video as in training: frames (T, size, size) uint8 and whether the
    ground truth of the future is there (T = n_context + n_future) or not (T = n_context)."""
    path = Path(path)
    if not path.exists():
        raise AppError(f"{path.name}: the file is gone; upload it again")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise AppError(f"{path.name}: not a video file (expected one of {', '.join(VIDEO_SUFFIXES)})")
    if path.stat().st_size > MAX_UPLOAD_BYTES:
        raise AppError(f"{path.name}: {path.stat().st_size / 2**20:.0f} MB is too large "
                       f"(limit {MAX_UPLOAD_BYTES // 2**20} MB)")
    if start < 0 or frame_step < 1:
        raise AppError("the start frame must be ≥ 0 and the frame step ≥ 1")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise AppError(f"{path.name}: cannot be read as a video (corrupt, or a codec OpenCV lacks)")
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        width, height = capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
        if count > 0 and count / fps > MAX_DURATION_S:
            raise AppError(f"{path.name}: {count / fps:.0f} s is too long (limit {MAX_DURATION_S:.0f} s)")
        if max(width, height) > MAX_SIDE:
            raise AppError(f"{path.name}: {width:.0f}×{height:.0f} is too large (limit {MAX_SIDE} px a side)")
        wanted = start + (n_context + n_future - 1) * frame_step + 1
        frames, index = [], 0
        while index < wanted:
            ok, frame = capture.read()
            if not ok:
                break
            if index >= start and (index - start) % frame_step == 0:
                gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
                frames.append(cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA))
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise AppError(f"{path.name}: no frame could be decoded (corrupt or not a video)")
    if len(frames) < n_context:
        raise AppError(f"{path.name}: too short: {len(frames)} frames from frame {start} with step {frame_step}; "
                       f"the models need {n_context} context frames (try a smaller start or step)")
    has_truth = len(frames) >= n_context + n_future
    return np.stack(frames[: n_context + n_future] if has_truth else frames[:n_context]), has_truth


def load_models(checkpoints: str | Path | None, profile: str | None = None,
                train=None) -> tuple[dict[str, Predictor], str]:
    """The baselines plus every trained model (from ``checkpoints``, else the package's shipped ones)
    and a note that says which checkpoints were loaded and what each was trained on.

    ``train`` (training windows) fits the blend baseline; without it the blend is left out.
    """
    from .evaluate import baseline_models
    from .runs import runs_for

    prof = get_profile(profile)
    found = runs_for(checkpoints, prof.name, allow_mixed=True)
    models: dict[str, Predictor] = baseline_models(train)
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


@torch.no_grad()
def predict_all(frames: np.ndarray, models: dict[str, Predictor], n_context: int = 30) -> Prediction:
    """Run every model on the context of ``frames``; metrics against the rest when it is there."""
    context_u8 = frames[:n_context]
    truth_u8 = frames[n_context:] if len(frames) > n_context else None
    n_future = len(truth_u8) if truth_u8 is not None else 15
    context = torch.from_numpy(context_u8).float().div(255)[None, :, None]  # (1, 30, 1, H, W)
    predictions, rows = {}, []
    for name, model in models.items():
        model(context, n_future)  # warm-up, so the time below is the steady-state time
        tic = time.perf_counter()
        prediction = model(context, n_future).clamp(0, 1)
        ms = (time.perf_counter() - tic) * 1000
        predictions[name] = to_uint8(prediction[0])
        row = {"model": name, "ms": round(ms, 2)}
        if truth_u8 is not None:
            truth = torch.from_numpy(truth_u8).float().div(255)[None, :, None]
            values = frame_metrics(prediction, truth)
            row.update({k: float(values[k].mean()) for k in ("mse", "psnr", "ssim")})
        rows.append(row)
    return Prediction(context_u8, truth_u8, predictions, rows)


def sample_clips(profile: str | None = None, limit: int = 12, splits=None) -> dict[str, np.ndarray]:
    """Sample clips by name, spread over every class: synthetic test clips always, UCF101 test clips
    when a cache holds them. ``splits`` (from :func:`vidpred.data.load_splits`) saves generating twice."""
    from .data import load_splits

    cfg = get_profile(profile).data
    synthetic = cfg if cfg.source == "synthetic" else get_profile("smoke").data
    tests = (splits or load_splits(synthetic))["test"]
    by_class: dict[str, list] = {}
    for clip in tests:
        by_class.setdefault(clip.label, []).append(clip)
    spread = [c for group in zip(*by_class.values()) for c in group] if by_class else []
    clips = {f"synthetic: {c.name}": c.frames for c in spread[:limit]}
    for manifest in sorted(Path(cfg.cache_dir).glob("ucf101-*/manifest.json")):
        entries = json.loads(manifest.read_text()).get("clips", {})
        names = [n for n, e in entries.items() if e.get("split") == "test"][:limit]
        for name in names:
            path = manifest.parent / "frames" / f"{name}.npy"
            if path.exists():
                clips[f"UCF101: {name}"] = np.load(path)
    return clips


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


def build_app(checkpoints: str | Path | None = None, profile: str | None = None):
    import gradio as gr
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .data import WindowDataset, load_splits

    data_cfg = get_profile(profile).data
    splits = load_splits(data_cfg if data_cfg.source == "synthetic" else get_profile("smoke").data)
    models, note = load_models(checkpoints, profile, WindowDataset.from_config(splits["train"], data_cfg, "train"))
    samples = sample_clips(profile, splits=splits)
    workdir = Path(tempfile.mkdtemp(prefix="vidpred-app-"))

    def run(upload, sample, start, step):
        try:
            start, step = int(start or 0), int(step or 1)
            if upload:
                frames, _ = read_clip(upload, start, step)
                source = Path(upload).name
            elif sample:
                if sample not in samples:
                    raise AppError(f"unknown sample {sample!r}")
                clip = samples[sample][start::step]
                if len(clip) < 30:
                    raise AppError(f"{sample}: too short from frame {start} with step {step}: {len(clip)} frames, "
                                   "the models need 30")
                frames, source = clip[:45], sample
            else:
                raise AppError("upload a video or pick a sample clip first")
            result = predict_all(frames, models)
        except AppError as err:
            return (f"**Cannot use this clip.** {err}", None, None, None, None, None)
        context_image = _strip(result.context[::3])
        sheet = prediction_sheet(result.predictions, result.truth)
        truth = result.truth if result.truth is not None else np.zeros_like(next(iter(result.predictions.values())))
        grid = comparison_grid(truth, result.predictions, context=result.context[-5:], scale=3,
                               with_error=result.truth is not None)
        video = write_video(workdir / f"compare-{time.time_ns()}.mp4", grid, fps=6)
        headers = ["model", "ms", "mse", "psnr", "ssim"] if result.truth is not None else ["model", "ms"]
        import pandas as pd

        table = pd.DataFrame([[r.get(h) for h in headers] for r in result.rows], columns=headers).round(4)
        fig, ax = plt.subplots(figsize=(5, 2.6))
        ax.barh([r["model"] for r in result.rows], [r["ms"] for r in result.rows], color="C0")
        ax.set_xlabel("inference ms for this clip (CPU)" if not torch.cuda.is_available() else "inference ms")
        fig.tight_layout()
        status = f"**{source}**: 30 context frames from frame {start}, step {step}. " + (
            "Metrics are against the next 15 real frames." if result.truth is not None
            else "The clip ends before 15 more frames, so there is no ground truth and no metrics.")
        if note:
            status += "\n\n" + note
        return status, context_image, sheet, str(video), table, fig

    with gr.Blocks(title="vidpred: compare video predictors", delete_cache=(600, 3600)) as demo:
        gr.Markdown("# vidpred — 30 frames in, 15 frames out\nUpload a video or pick a sample; every model "
                    "and baseline predicts the next 15 frames (64×64 grayscale, as in training).")
        with gr.Row():
            upload = gr.File(label="upload a video", file_types=list(VIDEO_SUFFIXES), type="filepath")
            with gr.Column():
                sample = gr.Dropdown(choices=list(samples), value=None, label="or pick a sample clip")
                start = gr.Number(value=0, precision=0, minimum=0, label="start frame")
                step = gr.Number(value=1, precision=0, minimum=1, label="frame step")
                button = gr.Button("Run all models", variant="primary")
        status = gr.Markdown(note or "Ready.", elem_id="status")
        context_image = gr.Image(label="context (every 3rd of the 30 frames)", type="numpy")
        sheet = gr.Image(label="the 15 predicted frames: one row per model, errors below (bright = wrong)",
                         type="numpy", elem_id="sheet")
        video = gr.Video(label="side by side", format="mp4")
        table = gr.Dataframe(label="metrics and inference time", elem_id="metrics")
        plot = gr.Plot(label="inference time")
        button.click(run, [upload, sample, start, step], [status, context_image, sheet, video, table, plot],
                     api_name="predict")
    return demo


def launch(checkpoints: str | Path | None = None, port: int = 7860, share: bool = False,
           profile: str | None = None) -> None:
    demo = build_app(checkpoints, profile)
    demo.launch(server_name="127.0.0.1", server_port=port, share=share)
