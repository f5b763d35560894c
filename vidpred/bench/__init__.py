"""Benchmarks behind ``vidpred bench data|models|train|quality|analogue|curves|compile|stillness|app``; each returns a
JSON-able dict (:func:`run` picks one by name). One module per kind of measurement:

- :mod:`.timing`: what every benchmark shares (the machine, a stopwatch, the median of repeats);
- :mod:`.data`: decoding, synthetic clips and the batches of a training step (``data``);
- :mod:`.steps`: one training step timed, the fast step beside the reference, and where in a run;
- :mod:`.breakdown`: where a step's time goes against the machine's matmul rate;
- :mod:`.models`: size, FLOPs, inference and training speed per model (``models``);
- :mod:`.train`: whole training runs timed, and the fast step's learning curves beside the reference's
  (``train``, ``curves``);
- :mod:`.quality`: test error against training time, and the analogue baseline's settings (``quality``,
  ``analogue``);
- :mod:`.compile`: whether ``torch.compile`` pays back within a run (``compile``);
- :mod:`.stillness`: the hold-still read-out's threshold, chosen on validation (``stillness``);
- :mod:`.app`: the app under load (``app``).
"""

from __future__ import annotations

from .app import HEAVY_UPLOAD, bench_app, beside_heavy, free_port, write_heavy_upload
from .breakdown import PRODUCT_OPS, matmul_gflops, step_breakdown, step_flops_of
from .compile import ModuleStep, bench_compile, compile_cache, compiled_step
from .data import batch_times, bench_data, write_test_avi
from .models import LARGER, WITHOUT_ANALOGUE, bench_models, fast_vs_reference
from .quality import bench_analogue, bench_quality, test_probe
from .steps import after_schedule, compare_steps, in_schedule, prepare_step, ready_optimizer, schedule_of, speedups, train_step
from .stillness import bench_stillness, held_mse
from .timing import Stopwatch, machine, median_seconds, repeat_seconds, stopwatch
from .train import bench_curves, bench_train

__all__ = ["HEAVY_UPLOAD", "LARGER", "PRODUCT_OPS", "WITHOUT_ANALOGUE", "ModuleStep", "Stopwatch", "after_schedule",
           "batch_times", "bench_analogue", "bench_app", "bench_compile", "bench_curves", "bench_data",
           "bench_models", "bench_quality", "bench_stillness", "bench_train", "beside_heavy", "compare_steps",
           "compile_cache", "compiled_step", "fast_vs_reference", "free_port", "held_mse", "in_schedule", "machine",
           "matmul_gflops", "median_seconds", "prepare_step", "ready_optimizer", "repeat_seconds", "run",
           "schedule_of", "speedups", "step_breakdown", "step_flops_of", "stopwatch", "test_probe", "train_step",
           "write_heavy_upload", "write_test_avi"]


def run(what: str, profile: str | None = None, **options) -> dict:
    """``options`` go to the benchmark: the app's clients, requests and checkpoints; ``models`` (learned
    models by name) to models, curves, quality and compile."""
    # The names are looked up here at each call, so that a benchmark replaced on this package is the one run.
    return {"data": bench_data, "models": bench_models, "train": bench_train, "quality": bench_quality,
            "analogue": bench_analogue, "curves": bench_curves, "compile": bench_compile, "stillness": bench_stillness,
            "app": bench_app}[what](
        profile, **options)
