"""``vidpred bench quality`` and ``vidpred bench analogue``: prediction error, not speed. Each model's test error
against its training seconds (from scratch, beside the baselines' lines to beat), and the analogue baseline's
settings on the validation split."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import torch

from ..config import get_profile
from .timing import machine


def test_probe(test, batch_size: int = 32):
    """A probe for :func:`vidpred.train.fit`: whole-frame and moving-pixel MSE on ``test``."""
    from ..evaluate import evaluate_model

    def probe(model) -> dict:
        was_training = model.training
        result = evaluate_model(model, test, batch_size, next(model.parameters()).device)
        model.train(was_training)
        return {"test_mse": result["mse"], "test_moving_mse": result["moving_mse"]}

    return probe


def bench_quality(profile: str | None = None, models=None, steps: int | None = None) -> dict:
    """Test MSE (whole and moving pixels) against training seconds for each model, from scratch.

    Each model trains with the profile's config (``steps`` overrides its length) and is evaluated
    on the test split at every validation; the baselines' values are the lines to beat.
    """
    from ..data import windows
    from ..evaluate import baseline_models, evaluate_model
    from ..models import LEARNED, REFERENCE_BASELINES, build
    from ..train import fit

    prof = get_profile(profile)
    datasets = windows(prof.data)
    baselines = {}
    for name, model in baseline_models(datasets["train"], REFERENCE_BASELINES).items():
        result = evaluate_model(model, datasets["test"])
        baselines[name] = {"test_mse": result["mse"], "test_moving_mse": result["moving_mse"]}
    curves = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in models or LEARNED:
            cfg = prof.train_config(name)
            if steps:
                cfg = dataclasses.replace(cfg, steps=steps, eval_every=max(1, min(cfg.eval_every, steps // 4)))
            torch.manual_seed(cfg.seed)
            model = build(name, **prof.model_config(name))
            result = fit(model, datasets["train"], datasets["val"], cfg, Path(tmp) / name, prof.data,
                         progress=False, probe=test_probe(datasets["test"]))
            curves[name] = [{k: r[k] for k in ("step", "seconds", "test_mse", "test_moving_mse")}
                            for r in result.history if r["kind"] == "probe"]
    return {"machine": machine(), "profile": prof.name, "test_windows": len(datasets["test"]),
            "baselines": baselines, "curves": curves}


def bench_analogue(profile: str | None = None, windows_=(4, 6, 8, 10, 12), temperatures=(1e-5, 3e-5, 1e-4)) -> dict:
    """The analogue baseline's settings on the validation split: MSE, moving-pixel MSE and SSIM for each
    window and temperature, with and without the mirror candidates; ``chosen`` is the lowest validation MSE
    (the defaults of :class:`vidpred.models.baselines.AnalogueConfig` were chosen so)."""
    from ..data import windows
    from ..evaluate import evaluate_model
    from ..models import build

    prof = get_profile(profile)
    val = windows(prof.data)["val"]
    rows = []
    for mirror in (True, False):
        for window in windows_:
            for temperature in temperatures:
                result = evaluate_model(build("analogue", window=window, temperature=temperature, mirror=mirror), val)
                rows.append({"window": window, "temperature": temperature, "mirror": mirror,
                             **{k: result[k] for k in ("mse", "moving_mse", "ssim", "mse_per_horizon")}})
    chosen = min(rows, key=lambda r: r["mse"])
    return {"machine": machine(), "profile": prof.name, "val_windows": len(val), "grid": rows,
            "chosen": {k: chosen[k] for k in ("window", "temperature", "mirror", "mse")}}
