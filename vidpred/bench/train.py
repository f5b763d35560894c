"""``vidpred bench train`` and ``vidpred bench curves``: whole training runs. The profile's models trained from
scratch and timed as the book trains them, and the fast step's validation curve beside the reference step's
from one seed (does the fast step learn what the reference learns?)."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import torch

from ..config import get_profile
from .timing import machine, stopwatch


def bench_train(profile: str | None = None) -> dict:
    """Train every learned model of the profile from scratch, as the book does, and time it."""
    from ..data import windows
    from ..models import LEARNED, build
    from ..train import fit, validation_mse

    prof = get_profile(profile)
    with stopwatch() as data:
        datasets = windows(prof.data)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in LEARNED:
            cfg = prof.train_config(name)
            torch.manual_seed(cfg.seed)
            model = build(name, **prof.model_config(name))
            with stopwatch() as run:
                result = fit(model, datasets["train"], datasets["val"], cfg, Path(tmp) / name, prof.data,
                             progress=False)
            rows.append({"model": name, "steps": result.steps, "batch_size": cfg.batch_size, "wall_s": run.seconds,
                         "steps_per_s": result.steps / result.train_seconds, "best_val_mse": result.best_val_mse,
                         "test_mse": validation_mse(model, datasets["test"], 16, 10**9, torch.device("cpu"))})
    return {"machine": machine(), "profile": prof.name, "data_seconds": data.seconds, "models": rows,
            "total_wall_s": data.seconds + sum(r["wall_s"] for r in rows), "goal_total_wall_s": 600,
            "train_configs": {n: dataclasses.asdict(prof.train_config(n)) for n in LEARNED}}


def bench_curves(profile: str | None = None, models=None, fraction: float = 1 / 3) -> dict:
    """Does the fast step learn what the reference step learns? Per model, two runs from the same seed, on
    the same batches, for ``fraction`` of the profile's steps: the step as ``fit`` runs it (the lean step,
    mixed precision where the CPU has it) and the reference (step by step, float32). Returns both
    validation curves, their largest relative gap, the test MSE and the training seconds of each."""
    from ..data import windows
    from ..models import LEARNED, build
    from ..train import amp_dtype, fit, precision_name, validation_mse

    prof = get_profile(profile)
    datasets = windows(prof.data)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models or LEARNED:
            base = prof.train_config(name)
            steps = max(2, int(base.steps * fraction))
            every = max(1, steps // 6)
            runs = {}
            for kind in ("reference", "fast"):
                cfg = dataclasses.replace(base, steps=steps, eval_every=every, checkpoint_every=steps,
                                          amp=kind == "fast")
                torch.manual_seed(cfg.seed)
                model = build(name, **prof.model_config(name))
                if hasattr(model, "lean_step"):
                    model.lean_step = kind == "fast"
                result = fit(model, datasets["train"], datasets["val"], cfg, Path(tmp) / name / kind, prof.data,
                             progress=False)
                runs[kind] = {"val_mse": [[r["step"] + 1, r["val_mse"]] for r in result.history if r["kind"] == "val"],
                              "train_seconds": result.train_seconds,
                              "test_mse": validation_mse(model, datasets["test"], 16, 10**9, torch.device("cpu"))}
            pairs = zip(runs["reference"]["val_mse"], runs["fast"]["val_mse"])
            gap = max(abs(fast - ref) / ref for (_, ref), (_, fast) in pairs)
            rows.append({"model": name, "steps": steps, **runs, "largest_relative_gap": gap,
                         "speedup": runs["reference"]["train_seconds"] / runs["fast"]["train_seconds"]})
    precision = amp_dtype(torch.device("cpu"), True)
    return {"machine": machine(), "profile": prof.name, "threads": torch.get_num_threads(),
            "fast_precision": precision_name(precision), "models": rows}
