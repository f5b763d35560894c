"""Evaluate trained models and the baselines on the test split; write results.json and results.csv.

These files are the single source of every number in the book's comparison and report chapters,
and of the app's model list.
"""

from __future__ import annotations

import csv
import json
import platform
import time
from pathlib import Path

import torch

from .data.windows import WindowDataset
from .metrics import METRICS, MOTION_THRESHOLD, MetricAccumulator
from .models import BASELINES, REFERENCE_BASELINES, Predictor, build, count_flops, count_parameters, latency_ms
from .runs import Run, describe_data, read_run
from .train import pick_device
from .utils import atomic_write


@torch.no_grad()
def evaluate_model(model: Predictor, dataset: WindowDataset, batch_size: int = 16,
                   device: torch.device | str = "cpu", max_batches: int | None = None) -> dict:
    """Every metric over the dataset, overall and per predicted frame."""
    device = torch.device(device)
    model = model.to(device).eval()
    accumulator = MetricAccumulator()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    tic = time.perf_counter()
    for i, (context, future) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        prediction = model(context.to(device), future.shape[1])
        accumulator.update(prediction.clamp(0, 1), future.to(device), context[:, -1:].to(device))
    result = accumulator.result()
    result["clips"] = accumulator.count
    result["eval_seconds"] = time.perf_counter() - tic
    return result


def baseline_models(train: WindowDataset | None = None, names=BASELINES) -> dict[str, Predictor]:
    """The baselines by name; the blend is fitted on ``train`` (left out when there is none)."""
    from .models.baselines import Blend

    models = {}
    for name in names:
        if name == "blend":
            if train is not None and len(train):
                models[name] = Blend.fit(train)
        else:
            models[name] = build(name)
    return models


def best_baseline(rows: list[dict], metric: str = "mse") -> dict:
    """The best of copy-last, context-mean, blend and analogue on ``metric`` (lower is better, SSIM/PSNR higher)."""
    candidates = [r for r in rows if r["model"] in REFERENCE_BASELINES]
    if not candidates:
        raise ValueError(f"no reference baseline ({', '.join(REFERENCE_BASELINES)}) among the rows")
    sign = -1 if metric in ("ssim", "psnr") else 1
    return min(candidates, key=lambda r: sign * r[metric])


def evaluate_all(runs: dict[str, Run | str | Path], dataset: WindowDataset, out_dir: str | Path,
                 batch_size: int = 16, device: str = "auto", baselines: dict[str, Predictor] | None = None,
                 train: WindowDataset | None = None, data: dict | None = None, max_batches: int | None = None,
                 latency_repeats: int = 5) -> list[dict]:
    """Evaluate every run and baseline; write ``results.json`` and ``results.csv`` to ``out_dir``.

    ``runs`` maps names to :class:`~vidpred.runs.Run` (or checkpoint paths). The baselines are
    ``baselines``, or all of them with the blend fitted on ``train``. ``data`` is the identity of
    the evaluated data (:func:`vidpred.runs.data_identity`), recorded beside each model's own.
    Each row: model, metrics (per-horizon arrays in the JSON), moving-pixel MSE, params, FLOPs per
    clip, inference ms per clip (batch 1, median after a warm-up), training steps, seconds, data.
    """
    dev = pick_device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_context, n_future = dataset.n_context, dataset.n_future
    rows = []
    baselines = baseline_models(train) if baselines is None else baselines
    entries: list[tuple[str, Predictor, Run | None]] = [(name, model, None) for name, model in baselines.items()]
    for run in runs.values():
        if not isinstance(run, Run):
            path = Path(run)
            run, problems = read_run(path.parent) if path.name in ("last.pt", "best.pt") else (None, [])
            if run is None:
                raise ValueError("; ".join(problems) or f"no checkpoint at {path}")
        entries.append((run.name, run.model(dev), run))
    for name, model, run in entries:
        model = model.to(dev)
        result = evaluate_model(model, dataset, batch_size, dev, max_batches)
        state = run.state if run is not None else None
        rows.append({
            "model": name, "kind": "baseline" if run is None else "learned",
            **result,
            "params": count_parameters(model),
            "flops_per_clip": count_flops(model, n_context, n_future),
            "inference_ms_per_clip": latency_ms(model, n_context, n_future, repeats=latency_repeats),
            "train_steps": None if state is None else state["step"],
            "train_seconds": None if state is None else state["train_seconds"],
            "trained_on": None if state is None else state.get("device"),
            "train_data": None if state is None else state.get("data"),
            "train_data_text": None if state is None else describe_data(state.get("data")),
            "checkpoint": None if run is None else str(run.path),
            "origin": "baseline" if run is None else run.origin,
            "config": model.config_dict(),
        })
    payload = {"device": str(dev), "machine": platform.processor() or platform.machine(),
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "latency": f"median of {latency_repeats} runs after a warm-up, batch 1, {torch.get_num_threads()} threads",
               "test_windows": len(dataset), "n_context": n_context, "n_future": n_future,
               "eval_data": data, "eval_data_text": describe_data(data) if data else None,
               "motion_threshold": MOTION_THRESHOLD, "results": rows}
    atomic_write(out_dir / "results.json", lambda h: h.write(json.dumps(payload, indent=1).encode()))
    columns = ["model", "kind", *METRICS, "moving_mse", "mse_per_frame_sum", "params", "flops_per_clip",
               "inference_ms_per_clip", "train_steps", "train_seconds", "train_data_text"]

    def write_csv(handle) -> None:
        import io

        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        handle.write(text.getvalue().encode())

    atomic_write(out_dir / "results.csv", write_csv)
    return rows


def load_results(out_dir: str | Path) -> dict:
    path = Path(out_dir) / "results.json"
    if not path.exists():
        raise FileNotFoundError(f"no results at {path}: run `vidpred evaluate` first")
    return json.loads(path.read_text())


def format_table(rows: list[dict]) -> str:
    """A plain-text table of the headline numbers, best MSE first (lower MSE is better)."""
    header = (f"{'model':<14}{'MSE':>10}{'moving MSE':>12}{'MSE/frame':>11}{'PSNR dB':>9}{'SSIM':>7}"
              f"{'params':>10}{'GFLOP':>8}{'ms/clip':>9}")
    lines = [header, "-" * len(header)]
    for r in sorted(rows, key=lambda r: r["mse"]):
        lines.append(f"{r['model']:<14}{r['mse']:>10.5f}{r.get('moving_mse', float('nan')):>12.4f}"
                     f"{r['mse_per_frame_sum']:>11.1f}{r['psnr']:>9.2f}{r['ssim']:>7.3f}{r['params']:>10,}"
                     f"{r['flops_per_clip'] / 1e9:>8.2f}{r['inference_ms_per_clip']:>9.1f}")
    best = best_baseline(rows) if any(r["model"] in REFERENCE_BASELINES for r in rows) else None
    if best is not None:
        lines.append(f"best baseline: {best['model']} (MSE {best['mse']:.5f}); "
                     "moving MSE: over pixels where |truth − last context frame| > "
                     f"{MOTION_THRESHOLD}")
    trained = {r["train_data_text"] for r in rows if r.get("train_data_text")}
    for text in sorted(trained):
        lines.append(f"models trained on: {text}")
    return "\n".join(lines)
