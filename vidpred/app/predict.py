"""The app's models and their predictions: loading the baselines and the trained checkpoints, what those were trained
on (and so how uploads are read and what the user is warned of), timing each model, and predicting with them all."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import DEFAULT_PROFILE, get_profile
from ..metrics import frame_metrics, moving_mse
from ..models import BASELINES, Predictor, build
from ..runs import REAL_SOURCES
from ..video import to_uint8
from .settings import TIMING_REPEATS


@dataclass
class Prediction:
    context: np.ndarray  # (n_context, 64, 64) uint8
    truth: np.ndarray | None  # (n_future, 64, 64) uint8, when the clip is long enough
    predictions: dict[str, np.ndarray]  # name -> (n_future, 64, 64) uint8
    rows: list[dict]  # per model: ms, and MSE / moving-pixel MSE / PSNR / SSIM when there is ground truth


def default_profile() -> str:
    """The app's profile: ``$VIDPRED_PROFILE`` when set, else ``real`` where the package ships checkpoints trained on
    the real exercise set, else the default (the synthetic ``book``)."""
    from ..runs import shipped_runs

    if os.environ.get("VIDPRED_PROFILE"):
        return os.environ["VIDPRED_PROFILE"]
    return "real" if shipped_runs("real").runs else DEFAULT_PROFILE


def load_models(checkpoints: str | Path | None, profile: str | None = None,
                train=None, found=None, blend: Predictor | None = None) -> tuple[dict[str, Predictor], str]:
    """The baselines plus every trained model (from ``checkpoints``, else the package's shipped ones)
    and a note that says which checkpoints were loaded and what each was trained on.

    ``train`` (training windows) fits the blend baseline, else ``blend`` is it (one already fitted); without
    either the blend is left out.
    """
    from ..evaluate import baseline_models
    from ..runs import runs_for

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


def shipped_blend(profile: str) -> Predictor | None:
    """The blend baseline fitted when the profile's checkpoints were shipped (its α_t are in the manifest), for when
    the training split is not on this machine; None without one."""
    from ..runs import shipped_manifest

    config = ((shipped_manifest(profile) or {}).get("baselines") or {}).get("blend", {}).get("config")
    return build("blend", **config) if config else None


def upload_crop(found, default: str | None = "center") -> str | None:
    """How the app crops uploads: as the loaded models' real training videos were (when those agree),
    else ``default`` (the data config's; the synthetic videos are square, so for models trained on
    them the centred square of an upload is the undistorted match)."""
    crops = {(run.data or {}).get("crop") for run in found.runs.values() if (run.data or {}).get("source") in REAL_SOURCES}
    crops.discard(None)
    return crops.pop() if len(crops) == 1 else default


def trained_on_footage(found) -> bool:
    """Whether the loaded models (``found``, a RunSet) learned from the real exercise footage: then uploads are read
    as that footage was (25 fps, bars cropped; :func:`~vidpred.app.uploads.read_clip` ``footage``)."""
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
