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
from .metrics import METRICS, MetricAccumulator
from .models import BASELINES, Predictor, build, count_flops, count_parameters, latency_ms
from .train import load_model, pick_device
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


def find_checkpoints(root: str | Path) -> dict[str, Path]:
    """The newest ``last.pt`` per model name under ``root`` (``root/<model>-<hash>/last.pt``)."""
    found: dict[str, Path] = {}
    for path in sorted(Path(root).glob("*/last.pt"), key=lambda p: p.stat().st_mtime):
        found[path.parent.name.rsplit("-", 1)[0]] = path
    return found


def evaluate_all(checkpoints: dict[str, str | Path], dataset: WindowDataset, out_dir: str | Path,
                 batch_size: int = 16, device: str = "auto", baselines=BASELINES, max_batches: int | None = None,
                 latency_repeats: int = 5) -> list[dict]:
    """Evaluate every checkpoint and baseline; write ``results.json`` and ``results.csv`` to ``out_dir``.

    Each row: model, metrics (and per-horizon arrays in the JSON), params, FLOPs per clip, inference
    ms per clip (batch 1, median, on this machine), training steps and seconds.
    """
    dev = pick_device(device)
    n_context, n_future = dataset.n_context, dataset.n_future
    rows = []
    entries: list[tuple[str, Predictor, dict | None, str | None]] = [(name, build(name), None, None) for name in baselines]
    for name, path in checkpoints.items():
        model, state = load_model(path, dev)
        entries.append((name, model, state, str(path)))
    for name, model, state, path in entries:
        model = model.to(dev)
        result = evaluate_model(model, dataset, batch_size, dev, max_batches)
        rows.append({
            "model": name, "kind": "baseline" if state is None else "learned",
            **result,
            "params": count_parameters(model),
            "flops_per_clip": count_flops(model, n_context, n_future),
            "inference_ms_per_clip": latency_ms(model, n_context, n_future, repeats=latency_repeats),
            "train_steps": None if state is None else state["step"],
            "train_seconds": None if state is None else state["train_seconds"],
            "trained_on": None if state is None else state.get("device"),
            "checkpoint": path,
        })
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"device": str(dev), "machine": platform.processor() or platform.machine(),
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "test_windows": len(dataset), "n_context": n_context, "n_future": n_future, "results": rows}
    atomic_write(out_dir / "results.json", lambda h: h.write(json.dumps(payload, indent=1).encode()))
    columns = ["model", "kind", *METRICS, "mse_per_frame_sum", "params", "flops_per_clip",
               "inference_ms_per_clip", "train_steps", "train_seconds"]

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
    """A plain-text table of the headline numbers, best MSE first."""
    header = f"{'model':<14}{'MSE':>10}{'MSE/frame':>11}{'PSNR dB':>9}{'SSIM':>7}{'params':>10}{'GFLOP':>8}{'ms/clip':>9}"
    lines = [header, "-" * len(header)]
    for r in sorted(rows, key=lambda r: r["mse"]):
        lines.append(f"{r['model']:<14}{r['mse']:>10.5f}{r['mse_per_frame_sum']:>11.1f}{r['psnr']:>9.2f}"
                     f"{r['ssim']:>7.3f}{r['params']:>10,}{r['flops_per_clip'] / 1e9:>8.2f}{r['inference_ms_per_clip']:>9.1f}")
    return "\n".join(lines)
