"""Figures for the book: frame strips, learning and horizon curves, bar charts, animations, and
``compare``: an ipywidgets viewer for JupyterLab and Colab (the static book shows its animation)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .models import BASELINES
from .video import comparison_grid, error_map, to_uint8


def show_frames(rows: dict[str, torch.Tensor | np.ndarray], every: int = 1, title: str | None = None,
                first_index: int = 1, size: float = 0.9):
    """A grid of frames: one row per named video ((T, 1, H, W) or (T, H, W)), every ``every``-th frame."""
    videos = {name: to_uint8(v)[::every] for name, v in rows.items()}
    n_cols = max(len(v) for v in videos.values())
    fig, axes = plt.subplots(len(videos), n_cols, figsize=(size * n_cols, size * len(videos) + 0.3), squeeze=False)
    for r, (name, video) in enumerate(videos.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(video):
                ax.imshow(video[c], cmap="gray", vmin=0, vmax=255)
                if r == 0:
                    ax.set_title(str(first_index + c * every), fontsize=7)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.2)
    return fig


def plot_learning_curves(histories: dict[str, list[dict]], baselines: dict[str, float] | None = None):
    """Training loss (smoothed) and validation MSE against step, one colour per model."""
    fig, (ax_train, ax_val) = plt.subplots(1, 2, figsize=(10, 3.4))
    for i, (name, history) in enumerate(histories.items()):
        colour = f"C{i}"
        train = [(r["step"], r.get("future_mse", r["loss"])) for r in history if r["kind"] == "train"]
        if train:
            steps, losses = map(np.asarray, zip(*train))
            window = max(1, len(losses) // 30)
            smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
            ax_train.plot(steps[window - 1 :], smooth, color=colour, label=name)
        val = [(r["step"], r["val_mse"]) for r in history if r["kind"] == "val"]
        if val:
            ax_val.plot(*zip(*val), "o-", color=colour, label=name)
    for j, (name, value) in enumerate((baselines or {}).items()):
        ax_val.axhline(value, ls="--", color=f"C{len(histories) + j}", label=name)
    ax_train.set(title="training: MSE of the future frames", xlabel="step", yscale="log")
    ax_val.set(title="validation MSE (future frames, per pixel)", xlabel="step", yscale="log")
    for ax in (ax_train, ax_val):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def figure_height(frames: np.ndarray | torch.Tensor, level: float = 0.7) -> np.ndarray:
    """Height of the figure in each frame: the centre of mass of what is brighter than ``level``.

    In the synthetic videos the body is the brightest thing in the frame (grey 0.8–1, props ≤ 0.7,
    backgrounds darker), so the brightness above ``level`` weighs the body and nothing else, and a
    blurred prediction still counts in proportion to its brightness. Returned in pixels from the
    bottom of the frame, one value per frame; a prediction that freezes gives a flat line.
    """
    frames = to_uint8(frames).astype(np.float32) / 255  # (T, H, W)
    weights = np.clip(frames - level, 0, None)
    rows = np.arange(frames.shape[1], dtype=np.float32)[None, :, None]
    mass = weights.sum(axis=(1, 2))
    centre = (weights * rows).sum(axis=(1, 2)) / np.maximum(mass, 1e-6)
    return np.where(mass > 0, frames.shape[1] - centre, np.nan)


def plot_trajectory(context, future, predictions: dict, title: str | None = None, ax=None):
    """The figure's height (centre of mass of what moves) per frame: context, truth and every prediction."""
    context, future = to_uint8(context), to_uint8(future)
    n_context = len(context)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    ax.plot(range(1, n_context + 1), figure_height(context), color="0.4", label="context")
    horizon = range(n_context + 1, n_context + len(future) + 1)
    ax.plot(horizon, figure_height(future), "k-", lw=2.5, label="truth")
    for i, (name, prediction) in enumerate(predictions.items()):
        baseline = name in BASELINES
        ax.plot(horizon, figure_height(prediction), "--" if baseline else "-", color=f"C{i}", label=name)
    ax.axvline(n_context + 0.5, color="0.7", lw=1)
    ax.set(xlabel="frame", ylabel="height of the body (px)", title=title or "")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return ax.figure


def plot_runs(name: str, full: list[dict], live: list[dict], baselines: dict[str, float]):
    """Validation MSE against training minutes: the profile's full run, this build's short live run, and
    the baselines as horizontal lines (the same validation windows for all)."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for history, label, style in ((full, f"{name}: the profile's run", "o-"), (live, f"{name}: live run in this build", "s-")):
        val = [(r["seconds"] / 60, r["val_mse"]) for r in history if r["kind"] == "val"]
        if val:
            ax.plot(*zip(*val), style, ms=3, label=label)
    styles = {"copy_last": ":", "context_mean": "-.", "blend": "--", "analogue": (0, (5, 1, 1, 1))}
    for baseline, value in baselines.items():
        ax.axhline(value, ls=styles.get(baseline, "--"), color="0.35", lw=1)
        ax.annotate(baseline, (1.0, value), xycoords=("axes fraction", "data"), fontsize=7, ha="right", va="bottom")
    ax.set(xlabel="training minutes", ylabel="validation MSE per pixel", yscale="log",
           title="lower is better; dashed lines: baselines")
    ax.legend(fontsize=8, loc="upper right", bbox_to_anchor=(1, 0.9))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_retrieval(weights, title: str = "", recurrent: bool = True, ax=None, named: Sequence[str] = ("new",)):
    """Where a "retrieve" read-out points: a heat map of the (n_future, K + len(named)) weights of one
    window (see :func:`vidpred.models.retrieval.retrieval_weights`), predicted frame down, remembered frame
    across; the last columns are the named candidates (the new frame; for the transformer with
    ``analogue``, ``("analogue", "new")``)."""
    weights = np.asarray(weights)
    n_future, slots = weights.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 2.9))
    image = ax.imshow(weights, aspect="auto", cmap="magma", vmin=0)
    remembered = slots - len(named)
    ticks = list(range(0, remembered, 5)) + list(range(remembered, slots))
    ax.set_xticks(ticks, [str(t) for t in range(0, remembered, 5)] + list(named))
    if len(named) > 1:  # side by side, the names would run into each other
        for label in ax.get_xticklabels()[-len(named):]:
            label.set(rotation=90, fontsize=7)
    ax.set_yticks(range(0, n_future, 2), [str(k + 1) for k in range(0, n_future, 2)])
    ax.set(xlabel="input frame, steps back from the current input" if recurrent else "context frame, steps back from the last",
           ylabel="predicted frame", title=title)
    ax.figure.colorbar(image, ax=ax, label="weight", fraction=0.04)
    ax.figure.tight_layout()
    return ax.figure


def plot_horizon(rows: Sequence[dict], metrics: Sequence[str] = ("mse", "psnr", "ssim")):
    """Each metric against the predicted frame index, one line per model."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
    labels = {"mse": "MSE per pixel (lower is better)", "psnr": "PSNR dB (higher is better)",
              "ssim": "SSIM (higher is better)", "mae": "MAE per pixel", "moving_mse": "moving-pixel MSE (lower is better)"}
    for ax, metric in zip(axes[0], metrics):
        for i, row in enumerate(rows):
            values = row[f"{metric}_per_horizon"]
            style = "--" if row.get("kind") == "baseline" else "-"
            ax.plot(range(1, len(values) + 1), values, style, color=f"C{i}", label=row["model"])
        ax.set(xlabel="predicted frame", title=labels.get(metric, metric))
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_bars(rows: Sequence[dict], metrics: Sequence[str] = ("mse", "ssim", "inference_ms_per_clip")):
    """A bar chart per metric across models (baselines hatched)."""
    labels = {"mse": "MSE per pixel (lower is better)", "ssim": "SSIM (higher is better)",
              "psnr": "PSNR dB (higher is better)", "inference_ms_per_clip": "ms per clip, CPU (lower is better)",
              "train_seconds": "training seconds", "params": "parameters"}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        names = [r["model"] for r in rows]
        values = [r.get(metric) or 0 for r in rows]
        bars = ax.bar(names, values, color=[f"C{i}" for i in range(len(rows))])
        for bar, row in zip(bars, rows):
            if row.get("kind") == "baseline":
                bar.set_hatch("//")
        ax.set_title(labels.get(metric, metric), fontsize=9)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
    fig.tight_layout()
    return fig


TABLE_STYLES = [  # inline, so a table looks the same on the page, in JupyterLab and in Colab
    {"selector": "", "props": "border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.92em"},
    {"selector": "caption", "props": "caption-side: top; text-align: left; padding: 0 0 0.5em; color: #555"},
    {"selector": "th, td", "props": "padding: 0.3em 0.6em; border-bottom: 1px solid #ddd"},
    {"selector": "thead th", "props": "border-bottom: 2px solid #999; vertical-align: bottom"},
    {"selector": "td, th", "props": "text-align: left"},
]
COMPACT_STYLES = [
    {"selector": "", "props": "font-size: 0.85em"},
    {"selector": "th, td", "props": "padding: 0.3em 0.45em"},
]


def table(frame, formats=None, caption: str | None = None, na_rep: str = "–", compact: bool = False):
    """A DataFrame as the book shows a table: padded cells, numbers right-aligned, ``formats`` (a format
    string, or a dict column -> format string or function) and a ``caption`` that states units and scales.
    Booleans show as ✓ and ✗; column headers may wrap after an underscore. ``compact``: a smaller font and
    less padding, for a table of many columns that must fit the text column."""
    import pandas as pd

    bools = [c for c in frame.columns if frame[c].dtype == bool]
    numbers = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and c not in bools]
    styler = frame.style.format(formats, na_rep=na_rep) if formats is not None else frame.style
    if bools:
        styler = styler.format(lambda v: "✓" if v else "✗", subset=bools)
    # a header may break after an underscore ("predrnn_" / "v2"), so a wide table can wrap to the text column
    styler = styler.format_index(lambda v: v.replace("_", "_<wbr>") if isinstance(v, str) else v, axis=1)
    # per-column rules (#T th.colN, #T td.colN) outrank the table's "td, th: left", which set_properties would not
    right = [{"selector": "th", "props": "text-align: right"}, {"selector": "td", "props": "text-align: right"}]
    styler = styler.set_table_styles(TABLE_STYLES + (COMPACT_STYLES if compact else []))
    styler = styler.set_table_styles({c: right for c in numbers}, overwrite=False)
    if numbers:  # numbers right-aligned in figures of equal width, so their magnitudes line up
        styler = styler.set_properties(subset=numbers, **{"font-variant-numeric": "tabular-nums"})
    return styler.set_caption(caption) if caption else styler


PAGE_WIDTH_PX = 620  # the text column of the book's pages in a 1200-px window (688 px in a 1280-px one)


def animation_html(frames: np.ndarray, fps: float = 6.0, width: float | None = None) -> str:
    """An HTML/JS animation of (T, H, W[, 3]) uint8 frames that plays in a static page (to_jshtml).

    ``width`` is in inches at 100 dpi; by default the frames' own width in pixels (one image pixel per
    screen pixel, so labels stay sharp), shrunk to the page's text column if wider.
    """
    from matplotlib import animation

    frames = np.asarray(frames)
    width = width or min(frames.shape[2], PAGE_WIDTH_PX) / 100
    height = width * frames.shape[1] / frames.shape[2]
    fig = plt.figure(figsize=(width, height), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    image = ax.imshow(frames[0], cmap="gray" if frames.ndim == 3 else None, vmin=0, vmax=255,
                      interpolation="nearest")
    anim = animation.FuncAnimation(fig, lambda t: [image.set_data(frames[t])], frames=len(frames),
                                   interval=1000 / fps)
    html = anim.to_jshtml(default_mode="loop")
    plt.close(fig)
    return html


class ComparisonViewer:
    """An ipywidgets viewer: clip picker, model picker, frame slider with play, error-map toggle.

    ``context`` and ``future`` are (N, T, 1, H, W); ``predictions`` maps a model name to its
    (N, n_future, 1, H, W) predictions of the same clips. The widget needs a kernel to update; in a
    static page show :meth:`animation` of the same clip beside it.
    """

    def __init__(self, context, future, predictions: dict, clip_names: Sequence[str] | None = None, scale: int = 3):
        import ipywidgets as widgets

        self.context, self.future = to_uint8_batch(context), to_uint8_batch(future)
        self.predictions = {name: to_uint8_batch(p) for name, p in predictions.items()}
        self.scale = scale
        n_clips, n_context, n_future = len(self.future), self.context.shape[1], self.future.shape[1]
        names = list(clip_names or [f"clip {i}" for i in range(n_clips)])
        self.clip = widgets.Dropdown(options=[(n, i) for i, n in enumerate(names)], value=0, description="clip")
        self.model = widgets.Dropdown(options=list(self.predictions), description="model")
        self.frame = widgets.IntSlider(value=n_context, min=1, max=n_context + n_future, description="frame")
        self.play = widgets.Play(value=n_context, min=1, max=n_context + n_future, interval=200, description="play")
        widgets.jslink((self.play, "value"), (self.frame, "value"))
        self.show_error = widgets.Checkbox(value=True, description="error map")
        self.image = widgets.Image(format="png")
        self.caption = widgets.HTML()
        for control in (self.clip, self.model, self.frame, self.show_error):
            control.observe(lambda _change: self.update(), names="value")
        self.widget = widgets.VBox([widgets.HBox([self.clip, self.model]),
                                    widgets.HBox([self.play, self.frame, self.show_error]), self.image, self.caption])
        self.update()

    def current_panels(self) -> list[np.ndarray]:
        """The (H, W[, 3]) uint8 images shown now: truth, prediction, and the error map if on."""
        clip, t = self.clip.value, self.frame.value - 1
        n_context = self.context.shape[1]
        if t < n_context:
            frame = self.context[clip, t]
            return [frame, frame] + ([np.zeros((*frame.shape, 3), np.uint8)] if self.show_error.value else [])
        truth = self.future[clip, t - n_context]
        prediction = self.predictions[self.model.value][clip, t - n_context]
        panels = [truth, prediction]
        if self.show_error.value:
            panels.append(error_map(prediction[None], truth[None])[0])
        return panels

    def update(self) -> None:
        import cv2

        panels = [p if p.ndim == 3 else np.repeat(p[..., None], 3, -1) for p in self.current_panels()]
        row = np.concatenate([np.pad(p, ((0, 0), (0, 2), (0, 0))) for p in panels], axis=1)
        row = cv2.resize(row, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_NEAREST)
        ok, png = cv2.imencode(".png", cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
        self.image.value = png.tobytes()
        n_context = self.context.shape[1]
        t = self.frame.value
        where = f"context frame {t}" if t <= n_context else f"predicted frame {t - n_context} of {self.future.shape[1]}"
        self.caption.value = f"<b>{where}</b> — ground truth | {self.model.value}" + (" | error" if self.show_error.value else "")

    def animation(self, clip: int | None = None, fps: float = 6.0, columns: int = 3) -> str:
        """The static stand-in: every model and its error on one clip as an HTML animation, in rows of
        ``columns`` panels that fit the page's text column at three times the frames' size."""
        clip = self.clip.value if clip is None else clip
        grid = comparison_grid(self.future[clip], {n: p[clip] for n, p in self.predictions.items()},
                               context=self.context[clip][-5:], scale=3, columns=columns)
        return animation_html(grid, fps=fps)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def to_uint8_batch(videos) -> np.ndarray:
    """(N, T, 1, H, W) floats -> (N, T, H, W) uint8."""
    return np.stack([to_uint8(v) for v in videos])


def compare(context, future, predictions: dict, clip_names: Sequence[str] | None = None) -> ComparisonViewer:
    """Build the comparison viewer (display it as the last expression of a cell)."""
    return ComparisonViewer(context, future, predictions, clip_names)
