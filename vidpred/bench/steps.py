"""One training step, timed: the step as the benchmarks run it, the fast step (as ``fit`` runs it) and the
step-by-step reference taking turns (:func:`compare_steps`), the speed-up of one over the other
(:func:`speedups`), and where in a run a step is timed (:func:`schedule_of`, :func:`after_schedule`,
:func:`in_schedule`)."""

from __future__ import annotations

import numpy as np
import torch

from .timing import stopwatch


def train_step(model, optimizer, context: torch.Tensor, future: torch.Tensor, dtype: torch.dtype | None,
               progress: float = 0.5) -> None:
    """One training step as the benchmarks time it, at ``progress`` (the fraction of the run done, which
    sets the sampling schedule's masks): forward under autocast (``dtype``; None: float32), backward, AdamW."""
    with torch.autocast(context.device.type, dtype=dtype, enabled=dtype is not None):
        loss, _ = model.training_loss(context, future, progress)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def prepare_step(model, lean: bool) -> None:
    """Train mode, and the lean step (``lean``) or the step-by-step reference where the model has both."""
    model.train()
    if hasattr(model, "lean_step"):
        model.lean_step = lean


def ready_optimizer(model, lean: bool, context: torch.Tensor, future: torch.Tensor, dtype: torch.dtype | None,
                    progress: float = 0.5):
    """The AdamW a timed step uses (fused for the fast step, as ``fit``; step by step for the reference),
    after one untimed step (at ``progress``), so that its state exists before anything is timed."""
    from ..train import make_optimizer

    prepare_step(model, lean)
    optimizer = make_optimizer(model, fused=lean)
    train_step(model, optimizer, context, future, dtype, progress)
    return optimizer


def compare_steps(variants: dict, context: torch.Tensor, future: torch.Tensor, iters: int, rounds: int = 5,
                  steps: dict | None = None, progress: float = 0.5) -> dict:
    """Median seconds per training step of each variant ``name -> (model, autocast dtype, lean)``: after
    one untimed step each, ``rounds`` rounds of ``iters`` steps, the variants taking turns step by step
    (one step of each, then the next), so a slow spell of the machine falls on every variant alike; a
    shared VM's speed drifts by tens of percent within seconds, and timing one variant's steps as a
    block, then the other's, turned that drift into ratios from 1.34x to 1.79x for one model in one run.
    ``steps``, when given, receives each variant's seconds per step in the order taken, so that step i
    of every variant ran side by side (:func:`speedups`). Every step runs at ``progress`` of a run
    (:func:`train_step`; :func:`schedule_of` says where a model's step changes with it)."""
    times: dict = {key: [] for key in variants}
    try:
        optimizers = {key: ready_optimizer(model, lean, context, future, dtype, progress)
                      for key, (model, dtype, lean) in variants.items()}
        for _ in range(rounds * iters):
            for key, (model, dtype, lean) in variants.items():
                prepare_step(model, lean)
                with stopwatch(sync=context.is_cuda) as watch:
                    train_step(model, optimizers[key], context, future, dtype, progress)
                times[key].append(watch.seconds)
    finally:
        for model, _, _ in variants.values():
            prepare_step(model, True)
    if steps is not None:
        steps.update(times)
    return {key: float(np.median(seconds)) for key, seconds in times.items()}


def schedule_of(model) -> float:
    """The fraction of a training run that ``model`` spends inside its sampling schedule (its
    ``sampling_stop``, at most 1; 0 without one). Inside it the rollout feeds some of its own predictions
    back in place of ground truth, and PredRNN-V2's reverse schedule does so inside the context too, where
    the lean step then cannot batch the context steps (:meth:`vidpred.models.base.RecurrentPredictor.rollout`):
    a step there costs more, and gains less, than after the schedule. The benchmarks time a model's step
    after it (:func:`after_schedule`) and, where it has a schedule, also at its middle (:func:`in_schedule`)."""
    return min(max(float(getattr(model.config, "sampling_stop", 0.0)), 0.0), 1.0)


def after_schedule(model) -> float:
    """The progress of a run at which the benchmarks time ``model``'s step: the middle of the part of the run
    after its sampling schedule (0.5 without one)."""
    return (1 + schedule_of(model)) / 2


def in_schedule(model, dtype: torch.dtype | None, context: torch.Tensor, future: torch.Tensor, iters: int,
                rounds: int, after: dict) -> dict:
    """The fast and the reference step of ``model`` inside its sampling schedule (at its middle), timed as
    :func:`compare_steps` times them, and the speed-up over a whole run (``speedup_over_run``): the run's
    seconds of the reference over the fast step's, each the median step of a regime (``after``: the medians
    after the schedule) weighted by that regime's share of the run's steps."""
    stop, steps = schedule_of(model), {}
    medians = compare_steps({"fast": (model, dtype, True), "reference": (model, None, False)}, context, future,
                            iters, rounds, steps, progress=stop / 2)
    run = {kind: stop * medians[kind] + (1 - stop) * after[kind] for kind in ("fast", "reference")}
    return {"progress": stop / 2, "fraction_of_run": stop, "train_ms_per_step": medians["fast"] * 1000,
            "train_ms_per_step_reference": medians["reference"] * 1000, **speedups(steps, iters),
            "speedup_over_run": run["reference"] / run["fast"]}


def speedups(steps: dict, iters: int) -> dict:
    """The reference's time over the fast step's, from :func:`compare_steps`'s ``steps``: for each pair of
    steps taken one after the other (``speedup_by_step``), their median (``speedup``), and per round of
    ``iters`` steps the ratio of its medians (``speedup_by_round``: how much a ratio still moves from round
    to round is the noise a comparison carries). The median of pairs, not the median of all reference
    steps over that of all fast steps: that lets a drift of the machine between rounds in (one run gave
    1.46x that way while every one of its five rounds was between 1.53x and 1.61x)."""
    reference, fast = steps["reference"], steps["fast"]
    by_step = [r / f for r, f in zip(reference, fast)]
    by_round = [float(np.median(reference[i : i + iters]) / np.median(fast[i : i + iters]))
                for i in range(0, len(fast), iters)]
    return {"speedup": float(np.median(by_step)), "speedup_by_step": by_step, "speedup_by_round": by_round}
