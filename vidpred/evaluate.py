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
from .utils import json_text, write_files


@torch.no_grad()
def evaluate_model(model: Predictor, dataset: WindowDataset, batch_size: int = 16,
                   device: torch.device | str = "cpu", max_batches: int | None = None) -> dict:
    """Every metric over the dataset, overall and per predicted frame; for a model with the hold-still read-out
    on (:mod:`vidpred.models.stillness`), also its MSE without it (``mse_without_hold_still``), from the same
    forward pass."""
    from .models.stillness import hold_still, read_out_off

    device = torch.device(device)
    model = model.to(device).eval()
    accumulator = MetricAccumulator()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    tic, raw_error, raw_count = time.perf_counter(), 0.0, 0
    with read_out_off(model) as held:  # one forward pass for both: the read-out is applied after the rollout
        for i, (context, future) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            context, future = context.to(device), future.to(device)
            prediction = model(context, future.shape[1])
            if held:
                raw_error += float((prediction.clamp(0, 1) - future).double().square().sum())
                raw_count += future.numel()
                prediction = hold_still(prediction, context, held)
            accumulator.update(prediction.clamp(0, 1), future, context[:, -1:])
    result = accumulator.result()
    result["clips"] = accumulator.count
    result["eval_seconds"] = time.perf_counter() - tic
    if held:
        result["mse_without_hold_still"] = raw_error / max(raw_count, 1)
    return result


def by_label(rows: list[dict], dataset: WindowDataset) -> dict[str, dict]:
    """Each row's MSE over the windows of each clip label (each exercise) apart, from its per-window MSEs
    (``window_mse`` of :func:`evaluate_model`, over ``dataset``'s first windows in order): ``{label: {"windows": n,
    "clips": k, "mse": {model: MSE}}}``, labels by number of windows. No model runs again."""
    count = min(len(row["window_mse"]) for row in rows)
    groups: dict[str, list[int]] = {}
    for i, (clip, _) in enumerate(dataset.index[:count]):
        groups.setdefault(dataset.clips[clip].label, []).append(i)
    return {label: {"windows": len(indices), "clips": len({dataset.index[i][0] for i in indices}),
                    "mse": {row["model"]: sum(row["window_mse"][i] for i in indices) / len(indices) for row in rows}}
            for label, indices in sorted(groups.items(), key=lambda item: -len(item[1]))}


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
               "motion_threshold": MOTION_THRESHOLD, "results": rows, "by_label": by_label(rows, dataset)}
    columns = ["model", "kind", *METRICS, "moving_mse", "mse_per_frame_sum", "params", "flops_per_clip",
               "inference_ms_per_clip", "train_steps", "train_seconds", "train_data_text"]

    def write_csv(handle) -> None:
        import io

        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        handle.write(text.getvalue().encode())

    # both or neither: a full disk leaves the previous pair as it was, and no temporary file (a one-line NotWritten)
    write_files({out_dir / "results.json": lambda h: h.write(json_text(payload, indent=1).encode()),
                 out_dir / "results.csv": write_csv})
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


def versus_best_by_label(groups: dict[str, dict], models: list[str]) -> dict[str, tuple[str, dict[str, float]]]:
    """For each label of :func:`by_label`'s ``groups``: the reference baseline best on its windows, and each of
    ``models``' MSE ÷ that baseline's there: ``{label: (baseline, {model: ratio})}``."""
    found = {}
    for label, group in groups.items():
        mse = group["mse"]
        best = min((m for m in REFERENCE_BASELINES if m in mse), key=mse.get)
        found[label] = best, {m: mse[m] / mse[best] if mse[best] > 0 else float("inf") for m in models}
    return found


def format_by_label(groups: dict[str, dict], rows: list[dict]) -> str:
    """Each learned model's MSE ÷ the best baseline's, on each label's windows apart (each exercise): a plain-text
    table of :func:`by_label`'s ``groups``, a line per label; empty with fewer than two labels or no baseline."""
    learned = [r["model"] for r in rows if r["kind"] == "learned"]
    if len(groups) < 2 or not learned or not any(r["model"] in REFERENCE_BASELINES for r in rows):
        return ""
    widths = [max(12, len(name) + 2) for name in learned]
    header = f"{'label (windows)':<24}{'best baseline':>15}" + "".join(f"{m:>{w}}" for m, w in zip(learned, widths))
    lines = ["MSE ÷ the best baseline's MSE on each label's windows (below 1: the model beats every baseline there)",
             header, "-" * len(header)]
    for label, (best, ratios) in versus_best_by_label(groups, learned).items():
        name = f"{label} ({groups[label]['windows']})"
        lines.append(f"{name:<24}{best:>15}" + "".join(f"{ratios[m]:>{w}.3f}" for m, w in zip(learned, widths)))
    return "\n".join(lines)


# ------------------------------------------------------------------------------ any folder of real videos
def read_clips_folder(folder: str | Path, cfg, progress: bool = False) -> tuple[dict[str, list], dict[str, str]]:
    """Every video under ``folder`` (any names, frame rates and sizes), decoded as the real training footage is
    (:func:`vidpred.data.footage.decode_footage`): {file: [Clip per usable segment]}, and {file: why skipped}."""
    from .data.footage import decode_footage
    from .data.ucf101 import VIDEO_SUFFIXES, VideoError
    from .data.windows import Clip

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--clips {folder}: no such folder; pass a folder of videos ({', '.join(VIDEO_SUFFIXES)})")
    videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and not p.is_dir())
    if not videos:
        raise FileNotFoundError(f"--clips {folder}: the folder holds no video ({', '.join(VIDEO_SUFFIXES)}); "
                                "put the clips to evaluate there, or pass another folder")
    min_frames = (cfg.window_length - 1) * cfg.frame_step + 1
    clips, skipped = {}, {}
    if progress:
        from tqdm.auto import tqdm
        videos = tqdm(videos, desc="decode", unit="video")
    for path in videos:
        name = str(path.relative_to(folder))
        try:
            decoded = decode_footage(path, cfg.image_size, cfg.crop, min_frames)
        except VideoError as err:
            skipped[name] = str(err).split(": ", 1)[-1]
            continue
        if not decoded.segments:
            dropped = f" once {decoded.dropped} were dropped" if decoded.dropped else ""
            skipped[name] = (f"too short: no piece of {min_frames} frames (one window at 25 fps) in its "
                             f"{decoded.source_frames} frames{dropped}")
            continue
        pieces = decoded.segments
        clips[name] = [Clip(name if len(pieces) == 1 else f"{name}#{k + 1}", "", 0, frames) for k, frames in enumerate(pieces)]
    if not clips:
        first = next(iter(skipped.items()))
        raise ValueError(f"--clips {folder}: no video gives one window ({len(skipped)} skipped; {first[0]}: {first[1]}); "
                         f"use clips of at least {min_frames / 25:.1f} s")
    return clips, skipped


@torch.no_grad()
def evaluate_clips(models: dict[str, Predictor], clips: dict[str, list], out_dir: str | Path, cfg,
                   batch_size: int = 16, device: str = "auto", skipped: dict[str, str] | None = None,
                   trained_on: dict[str, str] | None = None) -> dict:
    """Every model on every window of every clip: a row per (clip, model) and per model pooled over all windows.

    Writes ``clips.json`` (per-horizon curves included) and ``clips.csv`` to ``out_dir``. Each row also has
    ``mse_vs_copy_last``: its MSE over copy-last's on the same windows (the "no harm on unseen video" measure).
    """
    dev = pick_device(device)
    windows = {name: WindowDataset(pieces, cfg.n_context, cfg.n_future, cfg.frame_step, cfg.window_stride)
               for name, pieces in clips.items()}
    windows = {name: w for name, w in windows.items() if len(w)}
    per_clip: dict[str, dict[str, dict]] = {name: {} for name in windows}
    pooled: dict[str, dict] = {}
    for model_name, model in models.items():
        model = model.to(dev).eval()
        everything = MetricAccumulator()
        for clip_name, dataset in windows.items():
            accumulator = MetricAccumulator()
            for context, future in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
                prediction = model(context.to(dev), future.shape[1]).clamp(0, 1)
                for acc in (accumulator, everything):
                    acc.update(prediction, future.to(dev), context[:, -1:].to(dev))
            per_clip[clip_name][model_name] = {**accumulator.result(), "windows": accumulator.count}
        pooled[model_name] = {**everything.result(), "windows": everything.count}
    for results in (*per_clip.values(), pooled):
        reference = results.get("copy_last", {}).get("mse")
        for row in results.values():
            row["mse_vs_copy_last"] = row["mse"] / reference if reference else None
    payload = {"device": str(dev), "torch": torch.__version__, "n_context": cfg.n_context, "n_future": cfg.n_future,
               "fps": 25.0, "crop": cfg.crop, "window_stride": cfg.window_stride, "motion_threshold": MOTION_THRESHOLD,
               "trained_on": trained_on or {}, "skipped": skipped or {},
               "clips": {name: {"windows": len(w), "frames": sum(len(c) for c in w.clips), "results": per_clip[name]}
                         for name, w in windows.items()},
               "pooled": pooled}
    out_dir = Path(out_dir)
    columns = ["clip", "model", "windows", "mse", "mse_vs_copy_last", "moving_mse", "psnr", "ssim"]

    def write_csv(handle) -> None:
        import io

        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for clip_name, results in [*per_clip.items(), ("all windows", pooled)]:
            writer.writerows({"clip": clip_name, "model": m, **r} for m, r in results.items())
        handle.write(text.getvalue().encode())

    write_files({out_dir / "clips.json": lambda h: h.write(json_text(payload, indent=1).encode()),
                 out_dir / "clips.csv": write_csv})
    return payload


def format_clips_table(payload: dict) -> str:
    """Per clip, each model's MSE as a multiple of copy-last's (and copy-last's own MSE); then the pooled table."""
    models = list(payload["pooled"])
    width = max([len("all windows"), *(min(len(n), 40) for n in payload["clips"])]) + 2
    others = "".join(f"{m[:12]:>13}" for m in models if m != "copy_last")
    header = f"{'clip':<{width}}{'windows':>8}{'copy-last MSE':>15}{others}"
    lines = ["MSE per clip, as a multiple of copy-last's on the same windows (< 1: better than repeating the last frame)",
             header, "-" * len(header)]
    for name, clip in [*payload["clips"].items(), ("all windows", {"windows": None, "results": payload["pooled"]})]:
        results = clip["results"]
        windows = sum(c["windows"] for c in payload["clips"].values()) if clip["windows"] is None else clip["windows"]
        reference = results.get("copy_last", {}).get("mse", float("nan"))
        lines.append(f"{name[:40]:<{width}}{windows:>8}{reference:>15.5f}" +
                     "".join(f"{r['mse_vs_copy_last'] or float('nan'):>13.3f}" for m, r in results.items() if m != "copy_last"))
    lines += ["", "pooled over all windows:",
              f"{'model':<14}{'MSE':>10}{'x copy-last':>12}{'moving MSE':>12}{'PSNR dB':>9}{'SSIM':>7}"]
    for model, r in sorted(payload["pooled"].items(), key=lambda item: item[1]["mse"]):
        lines.append(f"{model:<14}{r['mse']:>10.5f}{r['mse_vs_copy_last'] or float('nan'):>12.3f}"
                     f"{r.get('moving_mse', float('nan')):>12.4f}{r['psnr']:>9.2f}{r['ssim']:>7.3f}")
    for name, why in payload["skipped"].items():
        lines.append(f"skipped {name}: {why}")
    return "\n".join(lines)
