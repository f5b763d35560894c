"""Benchmarks behind ``vidpred bench data|models|train|app``; each returns a JSON-able dict."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .config import get_profile


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def write_test_avi(path: Path, n_frames: int = 300, size: tuple[int, int] = (320, 240), fps: float = 25.0,
                   fourcc: str = "XVID") -> Path:
    """A colour .avi with moving shapes over a noisy background, as UCF101's 320×240 XviD clips are."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} to {path}")
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    for t in range(n_frames):
        frame = background.copy()
        cv2.circle(frame, (40 + (3 * t) % 240, 120), 30, (255, 200, 0), -1)
        cv2.rectangle(frame, (100, 20 + t % 150), (160, 80 + t % 150), (0, 0, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def bench_data(profile: str | None = None) -> dict:
    from .data.synthetic import generate
    from .data.ucf101 import decode_video

    decode = {}
    with tempfile.TemporaryDirectory() as tmp:
        # XviD is UCF101's codec; MJPG (every frame a JPEG) is a slow worst case worth knowing.
        for fourcc in ("XVID", "MJPG"):
            path = write_test_avi(Path(tmp) / f"bench-{fourcc}.avi", fourcc=fourcc)
            decode_video(path, 64)  # warm-up
            times = []
            for _ in range(5):
                tic = time.perf_counter()
                frames = decode_video(path, 64)
                times.append(time.perf_counter() - tic)
            decode[fourcc] = {"video": f"320x240 {fourcc} avi, {len(frames)} frames, to 64x64 gray",
                              "frames_per_s": len(frames) / float(np.median(times))}
    cfg = get_profile(profile).data
    tic = time.perf_counter()
    clips = generate(cfg)
    synth_seconds = time.perf_counter() - tic
    decode["target_frames_per_s"] = 3000
    return {"machine": machine(), "threads": torch.get_num_threads(), "decode": decode,
            "synthetic": {"profile": get_profile(profile).name, "clips": len(clips), "frames_per_clip": cfg.clip_length,
                          "seconds": synth_seconds, "clips_per_s": len(clips) / synth_seconds},
            "batches": batch_times(profile)}


def batch_times(profile: str | None = None, batches: int = 50, repeats: int = 5) -> dict:
    """The data path of a training step: ms per batch through the loader ``fit`` builds (its step sampler,
    the profile's batch size and workers), on the profile's training windows, the median of ``repeats``
    passes of ``batches`` batches. Beside a step of hundreds of ms it says whether the data path is worth
    a faster layout (pre-stacked windows)."""
    from torch.utils.data import DataLoader

    from .data import windows
    from .train import StepBatchSampler

    prof = get_profile(profile)
    cfg = prof.train  # the batch size and workers every model trains with
    train = windows(prof.data)["train"]
    times = []
    for _ in range(repeats):
        sampler = StepBatchSampler(len(train), cfg.batch_size, batches, cfg.seed)
        loader = DataLoader(train, batch_sampler=sampler, num_workers=cfg.num_workers)
        tic = time.perf_counter()
        for _ in loader:
            pass
        times.append((time.perf_counter() - tic) / batches)
    return {"batch_size": cfg.batch_size, "num_workers": cfg.num_workers, "batches": batches, "repeats": repeats,
            "train_windows": len(train), "ms_per_batch": float(np.median(times)) * 1000}


def matmul_gflops(n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    tic = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - tic) / 1e9


# Each learned model without the method of analogues' help (see vidpred.models.baselines.Analogue).
WITHOUT_ANALOGUE = {"convlstm": {"analogue_window": 0}, "predrnn": {"analogue_window": 0},
                    "predrnn_v2": {"analogue_window": 0}, "transformer": {"analogue": False}}


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
    from .train import make_optimizer

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
                tic = time.perf_counter()
                train_step(model, optimizers[key], context, future, dtype, progress)
                if context.is_cuda:
                    torch.cuda.synchronize()
                times[key].append(time.perf_counter() - tic)
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


# The operators that do a step's convolutions and matrix products (forward and backward) on a CPU.
PRODUCT_OPS = frozenset({"aten::mkldnn_convolution", "aten::convolution_backward", "aten::mkldnn_convolution_backward",
                         "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_mkldnn_linear",
                         "aten::mkldnn_linear_backward", "aten::linear_backward"})


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
        optimizer = ready_optimizer(model, lean, context, future, dtype, progress)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train_step(model, optimizer, context, future, dtype, progress)
    finally:
        prepare_step(model, True)
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


# The recurrent models in a larger configuration (wider cells, finer patches, 5×5 kernels, as the reference
# implementations run them), timed beside the book's: the lean step should pay there too.
LARGER = {"batch": 4, "models": {name: dict(hidden=(64, 64), patch_size=4, kernel_size=5)
                                 for name in ("convlstm", "predrnn")}}


def step_flops_of(model, context: torch.Tensor, future: torch.Tensor) -> int:
    """FLOPs of one training step (forward and backward), counted on the reference step: the paper's
    arithmetic, not the zero blocks of the lean step's merged convolutions."""
    from torch.utils.flop_counter import FlopCounterMode

    prepare_step(model, False)
    try:
        with FlopCounterMode(display=False) as counter:
            loss, _ = model.training_loss(context, future, 0.5)
            loss.backward()
    finally:
        prepare_step(model, True)
    model.zero_grad()
    return counter.get_total_flops()


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
    from .models import BASELINES, LEARNED, build, count_flops, count_parameters, latency_ms, placeholder_config
    from .train import amp_dtype, precision_name
    from .utils import keep_freed_memory

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
    return {"machine": machine(), "profile": prof.name, "batch": batch, "threads": torch.get_num_threads(), "rounds": rounds,
            "matmul_2048_gflops": peak, "matmul_2048_gflops_bf16": matmul_gflops(dtype=torch.bfloat16) if dtype else None,
            "train_precision": precision_name(dtype), "models": rows,
            "larger": larger_rows}


def bench_train(profile: str | None = None) -> dict:
    """Train every learned model of the profile from scratch, as the book does, and time it."""
    from .data import windows
    from .models import LEARNED, build
    from .train import fit, validation_mse

    prof = get_profile(profile)
    tic = time.perf_counter()
    datasets = windows(prof.data)
    data_seconds = time.perf_counter() - tic
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in LEARNED:
            cfg = prof.train_config(name)
            torch.manual_seed(cfg.seed)
            model = build(name, **prof.model_config(name))
            tic = time.perf_counter()
            result = fit(model, datasets["train"], datasets["val"], cfg, Path(tmp) / name, prof.data, progress=False)
            wall = time.perf_counter() - tic
            rows.append({"model": name, "steps": result.steps, "batch_size": cfg.batch_size, "wall_s": wall,
                         "steps_per_s": result.steps / result.train_seconds, "best_val_mse": result.best_val_mse,
                         "test_mse": validation_mse(model, datasets["test"], 16, 10**9, torch.device("cpu"))})
    return {"machine": machine(), "profile": prof.name, "data_seconds": data_seconds, "models": rows,
            "total_wall_s": data_seconds + sum(r["wall_s"] for r in rows), "goal_total_wall_s": 600,
            "train_configs": {n: dataclasses.asdict(prof.train_config(n)) for n in LEARNED}}


def bench_curves(profile: str | None = None, models=None, fraction: float = 1 / 3) -> dict:
    """Does the fast step learn what the reference step learns? Per model, two runs from the same seed, on
    the same batches, for ``fraction`` of the profile's steps: the step as ``fit`` runs it (the lean step,
    mixed precision where the CPU has it) and the reference (step by step, float32). Returns both
    validation curves, their largest relative gap, the test MSE and the training seconds of each."""
    from .data import windows
    from .models import LEARNED, build
    from .train import amp_dtype, fit, precision_name, validation_mse

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
    from .train import LossModule

    step = ModuleStep(model, torch.compile(LossModule(model)))
    tic = time.perf_counter()
    train_step(step, optimizer, context, future, dtype)
    return step, time.perf_counter() - tic


def bench_compile(profile: str | None = None, models=None, batch: int = 8, iters: int = 5, rounds: int = 3) -> dict:
    """Does ``torch.compile`` pay back within a training run? Per model, as ``fit`` runs it with ``compile=True``
    (the lean step, mixed precision where the CPU has it, fused AdamW): the compile time of a first run, with an
    empty compile cache (``compile_seconds``: the first compiled step less a compiled step), and of a later run
    that finds the cache on disk (``compile_seconds_cached``: a resumed run, or the next model trained with the
    same shapes); the compiled and the plain step timed side by side (:func:`compare_steps`; the speed-up is the
    median of pair ratios); and, for each compile time, the steps it takes to earn it back (``break_even_steps``;
    None when compiling does not make the step faster) and the seconds the profile's run (``run_steps``) would
    save net of compiling (negative: it costs)."""
    from .models import LEARNED, build
    from .train import LossModule, amp_dtype, precision_name
    from .utils import keep_freed_memory

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


def test_probe(test, batch_size: int = 32):
    """A probe for :func:`vidpred.train.fit`: whole-frame and moving-pixel MSE on ``test``."""
    from .evaluate import evaluate_model

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
    from .data import windows
    from .evaluate import baseline_models, evaluate_model
    from .models import LEARNED, REFERENCE_BASELINES, build
    from .train import fit

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
    from .data import windows
    from .evaluate import evaluate_model
    from .models import build

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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, server, timeout: float, log: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited with status {server.returncode} before serving: "
                               f"{log.read_text().strip().splitlines()[-1:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the app did not answer on {url} within {timeout:.0f} s")


def _cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its finished children (ffmpeg), from /proc (NaN where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


HEAVY_UPLOAD = {"side": 4096, "frames": 3000, "frame_step": 60}  # 2641 blank 4096² frames to decode: past the cap


def write_heavy_upload(path: Path, side: int = 4096, frames: int = 3000, fps: float = 25.0,
                       segment_frames: int = 250) -> Path:
    """A crafted upload, small to send and slow to decode: ``frames`` blank ``side``×``side`` H.264 frames
    (0.65 MB for 3000 frames of 4096²), within every limit the app checks (size, side, duration). Encoded as
    one segment repeated with ffmpeg's concat (a few seconds instead of a minute)."""
    import math
    import subprocess

    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    segment, listing = path.with_name(f"{path.stem}-segment.mp4"), path.with_name(f"{path.stem}-segments.txt")
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"color=c=black:s={side}x{side}:r={fps}",
                    "-frames:v", str(segment_frames), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                    str(segment)], check=True)
    listing.write_text(f"file '{segment.name}'\n" * math.ceil(frames / segment_frames))
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy",
                    str(path)], check=True)
    segment.unlink()
    listing.unlink()
    return path


def beside_heavy(url: str, clip: Path, heavy: Path, folder: Path, frame_step: int, repeats: int = 3,
                 timeout: float = 300.0) -> dict:
    """The latency of a normal request (``clip``, as the load test sends it) alone, then beside two heavy ones
    (``heavy`` from :func:`write_heavy_upload`, with ``frame_step``) that the server is already serving. The
    normal requests are sent one after the other; only those that start while both heavy ones are unfinished
    count. Target: within 2x the time alone."""
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    def timed(client: Client) -> tuple[float, str]:
        tic = time.perf_counter()
        status = client.predict(handle_file(str(clip)), None, 0, 1, api_name="/predict")[0]
        return time.perf_counter() - tic, status.splitlines()[0][:200]

    normal = Client(url, verbose=False, download_files=str(folder / "normal"))
    timed(normal)  # warm-up: the first request of a client pays for its connection
    alone = [timed(normal) for _ in range(repeats)]
    heavy_clients = [Client(url, verbose=False, download_files=False) for _ in range(2)]
    tic = time.perf_counter()
    jobs = [c.submit(handle_file(str(heavy)), None, 0, frame_step, api_name="/predict") for c in heavy_clients]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(j.done() or j.status().code == Status.PROCESSING for j in jobs):
        time.sleep(0.05)
    time.sleep(0.5)  # the heavy requests are past their upload and decoding (or waiting to decode)
    beside = []
    while not any(j.done() for j in jobs) and len(beside) < repeats:
        beside.append(timed(normal))
    heavy_results = []
    for job in jobs:
        status = job.result(timeout=timeout)[0]
        heavy_results.append({"status": status.splitlines()[0][:200], "seconds": time.perf_counter() - tic})
    alone_s = float(np.median([s for s, _ in alone]))
    beside_s = float(np.median([s for s, _ in beside])) if beside else None
    return {"normal": "the load test's upload, start 0, step 1",
            "heavy_upload": f"{HEAVY_UPLOAD['side']}x{HEAVY_UPLOAD['side']} blank H.264, {HEAVY_UPLOAD['frames']} frames, "
                            f"{heavy.stat().st_size / 2**20:.2f} MB, frame step {frame_step}",
            "alone_s": alone_s, "beside_two_heavy_s": beside_s, "ratio": beside_s / alone_s if beside else None,
            "alone_runs_s": [s for s, _ in alone], "beside_runs_s": [s for s, _ in beside],
            "normal_statuses": sorted({m for _, m in alone + beside}), "heavy_requests": heavy_results, "target_ratio": 2.0}


def bench_app(profile: str | None = None, clients: int = 20, requests: int = 3, checkpoints: str | None = None,
              startup_timeout: float = 300.0, heavy: bool = True) -> dict:
    """Serve the app as ``vidpred app`` does (a subprocess on 127.0.0.1, a free port), then ``clients``
    gradio_client callers at once each upload a 320×240 clip and predict ``requests`` times, one after the
    other. Latency of each prediction (upload included), failures, and predictions per second. With
    ``heavy``, then the latency of one such request beside two crafted uploads that decode to the app's cap
    (``beside_heavy``, :func:`beside_heavy`)."""
    import re
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from gradio_client import Client, handle_file

    from . import app

    prof = get_profile(profile)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-c", "import sys; from vidpred.cli import main; sys.exit(main(sys.argv[1:]))",
               "app", "--profile", prof.name, "--port", str(port)]
    if checkpoints:
        command += ["--checkpoints", str(checkpoints)]
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "server.log"
        clip = write_test_avi(Path(tmp) / "upload.avi", n_frames=60)
        with open(log_path, "w") as log:
            server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                      env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
        try:
            tic = time.perf_counter()
            _wait_for_server(url, server, startup_timeout, log_path)
            startup_s = time.perf_counter() - tic
            barrier = Barrier(clients)

            def caller(index: int) -> list[tuple[float, str | None]]:
                client = Client(url, verbose=False, download_files=str(Path(tmp) / f"client{index}"))
                barrier.wait(timeout=startup_timeout)
                results = []
                for _ in range(requests):
                    tic = time.perf_counter()
                    try:
                        status = client.predict(handle_file(str(clip)), None, 0, 1, api_name="/predict")[0]
                        error = None if status.startswith("**upload.avi**") else status.splitlines()[0]
                    except Exception as err:  # a failed request is a result to count, not a crash
                        error = f"{type(err).__name__}: {err}"
                    results.append((time.perf_counter() - tic, error))
                return results

            server_cpu, client_cpu = _cpu_seconds(server.pid), _cpu_seconds(os.getpid())
            tic = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                results = [r for rs in pool.map(caller, range(clients)) for r in rs]
            wall = time.perf_counter() - tic
            server_cpu, client_cpu = _cpu_seconds(server.pid) - server_cpu, _cpu_seconds(os.getpid()) - client_cpu
            slow = None
            if heavy:
                heavy_path = write_heavy_upload(Path(tmp) / "heavy.mp4", HEAVY_UPLOAD["side"], HEAVY_UPLOAD["frames"])
                slow = beside_heavy(url, clip, heavy_path, Path(tmp), HEAVY_UPLOAD["frame_step"],
                                    timeout=startup_timeout)
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        banner = next((line for line in log_path.read_text().splitlines() if line.startswith("vidpred app:")), "")
    latencies = [seconds for seconds, error in results if error is None]
    errors = [error for _, error in results if error is not None]
    threads = re.search(r"(\d+) torch thread", banner)
    return {"machine": {**machine(), "cpu_count": os.cpu_count()}, "profile": prof.name,
            "server": "vidpred " + " ".join(command[3:]), "banner": banner,
            "threads": int(threads.group(1)) if threads else None, "concurrency_limit": app.CONCURRENCY,
            "serving_slots": app.SERVING_SLOTS, "large_decodes": app.HEAVY_DECODES, "large_waiting": app.HEAVY_WAITING,
            "queue_size": app.QUEUE_SIZE, "clients": clients, "requests_per_client": requests,
            "requests": len(results), "failures": len(errors), "failure_examples": sorted(set(errors))[:3],
            "upload": "320x240 XviD .avi, 60 frames", "startup_s": startup_s, "wall_s": wall,
            "requests_per_s": len(latencies) / wall, "server_cpu_s_per_request": server_cpu / len(results),
            "client_cpu_s_per_request": client_cpu / len(results),  # the callers share the machine with the app
            "p50_s": float(np.percentile(latencies, 50)) if latencies else None,
            "p95_s": float(np.percentile(latencies, 95)) if latencies else None,
            "max_s": max(latencies) if latencies else None, "target_p95_s": 8.0, "beside_heavy": slow}


def run(what: str, profile: str | None = None, **options) -> dict:
    """``options`` go to the benchmark: the app's clients, requests and checkpoints; ``models`` (learned
    models by name) to models, curves, quality and compile."""
    return {"data": bench_data, "models": bench_models, "train": bench_train, "quality": bench_quality,
            "analogue": bench_analogue, "curves": bench_curves, "compile": bench_compile, "app": bench_app}[what](
        profile, **options)
