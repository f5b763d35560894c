"""What the app shows of a prediction: the context strip, the sheet of predicted frames and their errors, the
side-by-side video (and which models it shows), the metrics table, and the plot of each model's runtime."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..models import BASELINES, Predictor, model_device
from ..video import comparison_grid, error_map, write_video
from .predict import Prediction
from .settings import TIMING_REPEATS, VIDEO_MODELS

METRIC_COLUMNS = (  # (row key, table header, best is the lowest)
    ("mse", "MSE (per pixel, lower is better)", True),
    ("moving_mse", "moving-pixel MSE (lower is better)", True),
    ("psnr", "PSNR dB ↑", False),
    ("ssim", "SSIM ↑", False),
)


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


def write_outputs(folder: Path, result: Prediction) -> tuple[Path, Path, Path, list[str]]:
    """The context strip, the prediction sheet and the side-by-side video of ``result``, written to ``folder``, and
    the models the video shows."""
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
    return context_path, sheet_path, video, shown


def runtime_plot(path: Path, runtimes: dict[str, float], threads: int, models: dict[str, Predictor]) -> Path:
    """A bar per model of its time per clip (``runtimes``, measured with ``threads`` torch threads), saved to
    ``path``: drawn once, since the times depend on the clip's shape only."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 0.8 + 0.3 * len(runtimes)))
    ax = fig.subplots()
    ax.barh(list(runtimes), list(runtimes.values()), color="C0")
    ax.invert_yaxis()
    ax.set_xlabel(f"ms per clip (median of {TIMING_REPEATS} after a warm-up, {threads} thread"
                  f"{'s' if threads > 1 else ''}, {' and '.join(sorted({model_device(m).type for m in models.values()}))})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
