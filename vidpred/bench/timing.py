"""The timing every benchmark shares: the machine a result was measured on, a stopwatch for one block of work,
and the seconds of a call repeated (a median of repeats, which a shared machine's slow spells move least)."""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch


def machine() -> dict:
    """The machine a benchmark ran on: Python, torch, its thread count, the CPU, and the GPU where there is one."""
    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


class Stopwatch:
    """What a ``with stopwatch() as watch:`` block took: ``watch.seconds``, once the block has ended."""

    seconds: float = float("nan")


@contextlib.contextmanager
def stopwatch(sync: bool = False) -> Iterator[Stopwatch]:
    """Time the block (``time.perf_counter``); ``sync``: wait for the GPU's queued work before reading the clock,
    so that an asynchronous CUDA step is timed whole."""
    watch = Stopwatch()
    tic = time.perf_counter()
    yield watch
    if sync:
        torch.cuda.synchronize()
    watch.seconds = time.perf_counter() - tic


def repeat_seconds(fn: Callable[[], object], repeats: int, warmup: int = 0) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        with stopwatch() as watch:
            fn()
        seconds.append(watch.seconds)
    return seconds


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 0) -> float:
    """The median seconds of ``repeats`` calls of ``fn`` (:func:`repeat_seconds`)."""
    return float(np.median(repeat_seconds(fn, repeats, warmup)))
