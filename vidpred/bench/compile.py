"""``vidpred bench compile``: does ``torch.compile`` pay back within a training run? The compile time of a first
run (an empty compile cache) and of a later one (the cache on disk), the compiled step beside the plain one, and
the steps each compile time takes to earn back."""

from __future__ import annotations

import contextlib
import os
import tempfile

import torch

from ..config import get_profile
from .steps import compare_steps, ready_optimizer, speedups, train_step
from .timing import machine, stopwatch


class ModuleStep:
    """``model``'s training step through ``module`` (a :class:`vidpred.train.LossModule` of it, or
    ``torch.compile`` of one, as ``fit`` runs it with ``compile=True``), for :func:`compare_steps`."""

    def __init__(self, model, module):
        self.model, self.module = model, module

    def train(self) -> None:
        self.model.train()

    def parameters(self):
        return self.model.parameters()

    def training_loss(self, context: torch.Tensor, future: torch.Tensor, progress: float):
        return self.module(context, future, progress)


@contextlib.contextmanager
def compile_cache(folder: str):
    """``torch.compile`` with its on-disk cache in ``folder`` and nothing compiled in memory: what a first run on a
    fresh machine pays (an empty ``folder``), or a later run that finds the cache (the same ``folder`` again)."""
    before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")  # read first: importing torch._dynamo sets it
    import torch._dynamo

    def forget() -> None:
        torch._dynamo.reset()
        try:
            from torch._inductor.utils import clear_caches
        except ImportError:  # an older torch: the on-disk cache still moves with the variable
            return
        clear_caches()

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    forget()
    try:
        yield
    finally:
        forget()
        if before is None:
            del os.environ["TORCHINDUCTOR_CACHE_DIR"]
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = before


def compiled_step(model, optimizer, context: torch.Tensor, future: torch.Tensor, dtype: torch.dtype | None):
    """``model``'s training step compiled as ``fit`` compiles it (:class:`vidpred.train.LossModule`), and the
    seconds its first call took: compiling, then one step."""
    from ..train import LossModule

    step = ModuleStep(model, torch.compile(LossModule(model)))
    with stopwatch() as first:
        train_step(step, optimizer, context, future, dtype)
    return step, first.seconds


def bench_compile(profile: str | None = None, models=None, batch: int = 8, iters: int = 5, rounds: int = 3) -> dict:
    """Does ``torch.compile`` pay back within a training run? Per model, as ``fit`` runs it with ``compile=True``
    (the lean step, mixed precision where the CPU has it, fused AdamW): the compile time of a first run, with an
    empty compile cache (``compile_seconds``: the first compiled step less a compiled step), and of a later run
    that finds the cache on disk (``compile_seconds_cached``: a resumed run, or the next model trained with the
    same shapes); the compiled and the plain step timed side by side (:func:`compare_steps`; the speed-up is the
    median of pair ratios); and, for each compile time, the steps it takes to earn it back (``break_even_steps``;
    None when compiling does not make the step faster) and the seconds the profile's run (``run_steps``) would
    save net of compiling (negative: it costs)."""
    from ..models import LEARNED, build
    from ..train import LossModule, amp_dtype, precision_name
    from ..utils import keep_freed_memory

    prof = get_profile(profile)
    keep_freed_memory()
    dtype = amp_dtype(torch.device("cpu"), True)
    rows = []
    for name in models or LEARNED:
        torch.manual_seed(0)
        model = build(name, **prof.model_config(name))
        context, future = torch.rand(batch, 30, 1, 64, 64), torch.rand(batch, 15, 1, 64, 64)
        plain = ModuleStep(model, LossModule(model))
        optimizer = ready_optimizer(plain, True, context, future, dtype)
        step_inputs = (optimizer, context, future, dtype)
        first, steps = {}, {}
        with tempfile.TemporaryDirectory() as folder:
            with compile_cache(folder):  # a first run: nothing compiled before
                _, first["empty"] = compiled_step(model, *step_inputs)
            with compile_cache(folder):  # a later run: the same step compiled before, its cache on disk
                compiled, first["cached"] = compiled_step(model, *step_inputs)
                medians = compare_steps({"fast": (compiled, dtype, True), "reference": (plain, dtype, True)},
                                        context, future, iters, rounds, steps)
        compiled_s, plain_s = medians["fast"], medians["reference"]
        saving, run_steps = plain_s - compiled_s, prof.train_config(name).steps
        row = {"model": name, "train_ms_per_step": plain_s * 1000, "train_ms_per_step_compiled": compiled_s * 1000,
               **speedups(steps, iters), "run_steps": run_steps}
        for suffix, kind in (("", "empty"), ("_cached", "cached")):
            seconds = max(0.0, first[kind] - compiled_s)
            break_even = seconds / saving if saving > 0 else None
            row.update({f"compile_seconds{suffix}": seconds, f"break_even_steps{suffix}": break_even,
                        f"pays_back{suffix}": break_even is not None and break_even < run_steps,
                        f"run_seconds_saved{suffix}": run_steps * saving - seconds})
        rows.append(row)
    return {"machine": machine(), "profile": prof.name, "batch": batch, "threads": torch.get_num_threads(),
            "rounds": rounds, "train_precision": precision_name(dtype), "models": rows}
