"""``vidpred bench models``: per model its size, FLOPs and inference speed, and its training step as ``fit`` runs
it beside the step-by-step reference and beside the same model without the analogue's help; the recurrent
models also in a larger configuration (:data:`LARGER`)."""

from __future__ import annotations

import torch

from ..config import get_profile
from .breakdown import matmul_gflops, step_breakdown, step_flops_of
from .steps import after_schedule, compare_steps, in_schedule, schedule_of, speedups
from .timing import machine

# Each learned model without the method of analogues' help (see vidpred.models.baselines.Analogue).
WITHOUT_ANALOGUE = {"convlstm": {"analogue_window": 0}, "predrnn": {"analogue_window": 0},
                    "predrnn_v2": {"analogue_window": 0}, "transformer": {"analogue": False}}

# The recurrent models in a larger configuration (wider cells, finer patches, 5×5 kernels, as the reference
# implementations run them), timed beside the book's: the lean step should pay there too.
LARGER = {"batch": 4, "models": {name: dict(hidden=(64, 64), patch_size=4, kernel_size=5)
                                 for name in ("convlstm", "predrnn")}}


def fast_vs_reference(model, dtype: torch.dtype | None, context: torch.Tensor, future: torch.Tensor, iters: int,
                      rounds: int, peak_gflops: float, extra: dict | None = None) -> tuple[dict, dict]:
    """``model``'s step as ``fit`` runs it (the lean step under ``dtype``) beside the reference (step by step,
    float32), timed after its sampling schedule (:func:`compare_steps`, with ``extra`` variants taking turns
    with them): the fields of a benchmark row (ms per step of both, the speed-ups, the step's FLOPs, the
    fractions of the matmul rate ``peak_gflops``, :func:`step_breakdown` and, where the model has a
    schedule, :func:`in_schedule`), and every variant's median seconds per step."""
    flops, steps, progress = step_flops_of(model, context, future), {}, after_schedule(model)
    medians = compare_steps({"fast": (model, dtype, True), "reference": (model, None, False), **(extra or {})},
                            context, future, iters, rounds, steps, progress=progress)
    fast, reference = medians["fast"], medians["reference"]
    fields = {"train_ms_per_step": fast * 1000, "train_ms_per_step_reference": reference * 1000,
              **speedups(steps, iters), "train_flops_per_iter": flops,
              "fraction_of_matmul": flops / fast / 1e9 / peak_gflops,
              "reference_fraction_of_matmul": flops / reference / 1e9 / peak_gflops,
              "breakdown": step_breakdown(model, context, future, dtype, flops, peak_gflops, progress=progress)}
    if schedule_of(model) > 0:
        fields["in_schedule"] = in_schedule(model, dtype, context, future, iters, rounds, medians)
    return fields, medians


def bench_models(profile: str | None = None, batch: int = 8, iters: int = 5, larger: dict | None = LARGER,
                 rounds: int = 5, models=None) -> dict:
    """Per model: parameters, FLOPs, inference latency and throughput, and the training step as training
    runs it (the lean step, mixed precision where :func:`vidpred.train.amp_dtype` picks it) beside the
    reference step (step by step, float32: the step before the speed-up) and beside the same model without
    the analogue's help, each the median of ``rounds`` interleaved rounds of ``iters`` steps; the speed-up is
    the median ratio of steps taken side by side (``speedup_by_step``; each round's ratio in
    ``speedup_by_round``), and where the fast step's time goes (:func:`step_breakdown`: why it is below the
    matmul rate). Steps are timed after the model's sampling schedule; a model with one (PredRNN-V2 in the
    book) is timed inside it too, with the speed-up over a whole run (``in_schedule``, :func:`in_schedule`).
    ``larger``: the same comparison for the recurrent models in a larger configuration (:data:`LARGER`;
    None: skip it).
    ``models``: only these learned models (and the larger configurations of those), the baselines always."""
    from ..models import BASELINES, LEARNED, build, count_flops, count_parameters, latency_ms, placeholder_config
    from ..train import amp_dtype, precision_name
    from ..utils import keep_freed_memory

    prof = get_profile(profile)
    keep_freed_memory()  # as fit does
    peak = matmul_gflops()
    dtype = amp_dtype(torch.device("cpu"), True)
    rows = []
    for name in (*BASELINES, *(models or LEARNED)):
        torch.manual_seed(0)
        model = build(name, **placeholder_config(name, prof.model_config(name)))
        row = {"model": name, "params": count_parameters(model), "flops_per_clip": count_flops(model),
               "inference_ms_per_clip": latency_ms(model, repeats=iters),
               "inference_clips_per_s_batch8": batch / latency_ms(model, repeats=iters, batch=batch) * 1000}
        if model.trainable:
            context, future = torch.rand(batch, 30, 1, 64, 64), torch.rand(batch, 15, 1, 64, 64)
            extra = {}
            if name in WITHOUT_ANALOGUE:  # what the method of analogues' help costs, at the fast step
                torch.manual_seed(0)
                without = build(name, **{**prof.model_config(name), **WITHOUT_ANALOGUE[name]})
                extra["without_analogue"] = (without, dtype, True)
            fields, medians = fast_vs_reference(model, dtype, context, future, iters, rounds, peak, extra)
            seconds = medians["fast"]
            row.update(train_iter_per_s=1 / seconds, train_clips_per_s=batch / seconds,
                       train_precision=precision_name(dtype),
                       achieved_gflops=fields["train_flops_per_iter"] / seconds / 1e9, **fields)
            if "without_analogue" in medians:
                without = medians["without_analogue"]
                row.update(train_ms_per_step_without_analogue=without * 1000, analogue_step_cost=seconds / without)
        rows.append(row)
    larger_rows = []
    for name, overrides in (larger or {"models": {}})["models"].items():
        if models and name not in models:
            continue
        torch.manual_seed(0)
        config = {**prof.model_config(name), **overrides}
        model = build(name, **config)
        context, future = torch.rand(larger["batch"], 30, 1, 64, 64), torch.rand(larger["batch"], 15, 1, 64, 64)
        fields, _ = fast_vs_reference(model, dtype, context, future, iters, rounds, peak)
        larger_rows.append({"model": name, "config": overrides, "batch": larger["batch"], **fields})
    return {"machine": machine(), "profile": prof.name, "batch": batch, "threads": torch.get_num_threads(),
            "rounds": rounds, "matmul_2048_gflops": peak,
            "matmul_2048_gflops_bf16": matmul_gflops(dtype=torch.bfloat16) if dtype else None,
            "train_precision": precision_name(dtype), "models": rows,
            "larger": larger_rows}
