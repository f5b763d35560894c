"""Where a training step's time goes: the machine's matmul rate (the ceiling a step is measured against), the
FLOPs of a step, and a profile of one step (:func:`step_breakdown`: the share and rate of its convolutions and
matrix products, and the costliest of the rest)."""

from __future__ import annotations

import os

import torch

from . import steps  # steps.train_step looked up at each call: one place that a stand-in replaces for every step
from .timing import repeat_seconds

# The operators that do a step's convolutions and matrix products (forward and backward) on a CPU.
PRODUCT_OPS = frozenset({"aten::mkldnn_convolution", "aten::convolution_backward", "aten::mkldnn_convolution_backward",
                         "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_mkldnn_linear",
                         "aten::mkldnn_linear_backward", "aten::linear_backward"})


def matmul_gflops(n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    seconds = repeat_seconds(lambda: a @ b, repeats, warmup=1)
    return 2 * n**3 * repeats / sum(seconds) / 1e9


def step_flops_of(model, context: torch.Tensor, future: torch.Tensor) -> int:
    """FLOPs of one training step (forward and backward), counted on the reference step: the paper's
    arithmetic, not the zero blocks of the lean step's merged convolutions."""
    from torch.utils.flop_counter import FlopCounterMode

    steps.prepare_step(model, False)
    try:
        with FlopCounterMode(display=False) as counter:
            loss, _ = model.training_loss(context, future, 0.5)
            loss.backward()
    finally:
        steps.prepare_step(model, True)
    model.zero_grad()
    return counter.get_total_flops()


def step_breakdown(model, context: torch.Tensor, future: torch.Tensor, dtype: torch.dtype | None,
                   flops: float, peak_gflops: float, lean: bool = True, progress: float = 0.5) -> dict:
    """Where one training step's time goes (``torch.profiler``: one step at ``progress`` of a run, after an
    untimed one): the share of the operators' own time spent in convolutions and matrix products, the rate
    those reach on the step's ``flops`` against ``peak_gflops`` (the 2048² matmul), how many operators the
    step runs, and the five costliest of the rest. The step's fraction of the matmul rate is about the
    product of the share and that rate: which of the two keeps it below 1 is the measured reason. The
    profiler's own cost per operator inflates the rest a little, so the share is a lower bound."""
    from torch.profiler import ProfilerActivity, profile

    # Kineto prints a "USDT: ... profiler_start/stop" line to stderr around every profile, which lands in
    # the book's output; level 6 is above all its messages. A level the user set is kept.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    try:
        optimizer = steps.ready_optimizer(model, lean, context, future, dtype, progress)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            steps.train_step(model, optimizer, context, future, dtype, progress)
    finally:
        steps.prepare_step(model, True)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    products = sum(e.self_cpu_time_total for e in events if e.key in PRODUCT_OPS)
    rest = sorted((e for e in events if e.key not in PRODUCT_OPS), key=lambda e: -e.self_cpu_time_total)
    product_gflops = flops / (products * 1e-6) / 1e9
    return {"products_share": products / total, "products_gflops": product_gflops,
            "products_fraction_of_matmul": product_gflops / peak_gflops,
            "operators_per_step": sum(e.count for e in events if e.key.startswith("aten::")),
            "costliest_rest": [{"op": e.key, "calls": e.count, "share": e.self_cpu_time_total / total}
                               for e in rest[:5]]}
