"""Clips of other scenes: real video none of the models trained on (sport, dance, a baby crawling, a person
drinking), for the "no harm on unseen video" check. ``vidpred evaluate --clips DIR`` measures any folder; this
module finds the project's folder of such clips and measures the real-trained models on it for the book.

The clips are other people's footage: they are read where they are (``$VIDPRED_REALCLIPS_DIR``, else
``shared/realclips`` beside the project), never copied into the project.
"""

from __future__ import annotations

import os
from pathlib import Path

from .utils import shared_folder

CLIPS_DIR_ENV = "VIDPRED_REALCLIPS_DIR"
NO_HARM = 1.05  # a model does no harm on a clip when its MSE there is at most this multiple of copy-last's


def find_clips(start: str | os.PathLike | None = None) -> Path | None:
    """The folder of unseen clips: ``$VIDPRED_REALCLIPS_DIR``, else ``shared/realclips`` beside the project (or
    beside any folder above ``start``, the working folder by default) where it holds a README; else None."""
    if os.environ.get(CLIPS_DIR_ENV):
        folder = Path(os.environ[CLIPS_DIR_ENV])
        return folder if folder.is_dir() else None
    return shared_folder("realclips", "README.md", start)


def no_harm(runs, folder: Path, out_dir: Path, data_cfg, baselines: dict | None = None,
            first_windows: int | None = None) -> dict:
    """``runs`` (a RunSet: the real-trained models, or {name: predictor}), copy-last and ``baselines`` ({name:
    predictor}, e.g. the blend fitted on the real train split) on every clip of ``folder``, decoded as the real
    training footage was: the payload of :func:`vidpred.evaluate.evaluate_clips` (per clip, each model's
    ``mse_vs_copy_last``), written to ``out_dir``. ``first_windows``: only each clip's first windows, at most that
    many (the book's smoke profile, for the tests: the same table over fewer windows)."""
    from .data.windows import Clip
    from .evaluate import baseline_models, evaluate_clips, read_clips_folder

    clips, skipped = read_clips_folder(folder, data_cfg)
    if first_windows:
        span = (data_cfg.window_length - 1) * data_cfg.frame_step + 1 + (first_windows - 1) * data_cfg.window_stride
        clips = {name: [Clip(c.name, c.label, c.group, c.frames[:span]) for c in pieces[:1]]
                 for name, pieces in clips.items()}
    learned = runs if isinstance(runs, dict) else runs.models()
    models = {**baseline_models(None, ("copy_last",)), **(baselines or {}), **learned}
    return evaluate_clips(models, clips, out_dir, data_cfg, device="cpu", skipped=skipped)


def harmed(payload: dict, limit: float = NO_HARM, models=None) -> dict[str, dict[str, float]]:
    """{model: {clip: MSE ÷ copy-last}} for every clip where a model's MSE is above ``limit`` × copy-last's; only
    the ``models`` named, when given (else every one but copy-last)."""
    found: dict[str, dict[str, float]] = {}
    for clip, entry in payload["clips"].items():
        for model, row in entry["results"].items():
            wanted = model != "copy_last" if models is None else model in models
            if wanted and row["mse_vs_copy_last"] > limit:
                found.setdefault(model, {})[clip] = row["mse_vs_copy_last"]
    return found


def labels(clips, width: int = 16) -> dict[str, str]:
    """A short label per clip file for a table that fits the page: the name without its suffix, cut in the middle
    to ``width`` characters where longer (its start and end kept), and numbered where two would read the same."""
    found: dict[str, str] = {}
    for clip in clips:
        stem = Path(clip).stem
        label = stem if len(stem) <= width else f"{stem[: width - 4]}…{stem[-3:]}"
        if label in found.values():
            label = f"{label}#{sum(v.startswith(label) for v in found.values()) + 1}"
        found[clip] = label
    return found
