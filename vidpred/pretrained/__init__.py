"""The checkpoints shipped with the package, and the one command that re-creates them.

``python -m vidpred.pretrained [--profile book] [--models convlstm,predrnn,transformer]`` trains each
model of the profile with the profile's own configs (resuming where a run stopped), evaluates it on
the test split, and copies into ``vidpred/pretrained/<profile>/<model>/`` its weights (``last.pt``,
without the optimizer state), its ``log.jsonl``, and a ``manifest.json`` for the profile: model,
configs, the identity of the training data (:func:`vidpred.runs.data_identity`), steps, seconds,
device, torch version and the test metrics. ``tests/test_pretrained.py`` checks that each shipped
checkpoint still gives the manifest's test metrics. With ``--refresh`` nothing is trained: the shipped
checkpoints are shipped again with the profile's inference options as they are now (hold-still, self-check:
chosen after training) and evaluated on the test split again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..config import get_profile
from ..utils import atomic_write

HERE = Path(__file__).parent
HEADLINE = ("mse", "moving_mse", "psnr", "ssim", "mse_per_horizon", "moving_mse_per_horizon", "ssim_per_horizon")


def ship(profile: str = "book", models=None, runs: str | Path = "runs/ship", device: str = "auto",
         threads: int | None = None) -> dict:
    """Train (or resume) and ship the ``models`` of ``profile``; return the manifest."""
    from ..bench import test_probe
    from ..data import windows
    from ..evaluate import baseline_models, evaluate_model
    from ..models import LEARNED, REFERENCE_BASELINES, build
    from ..runs import data_identity
    from ..train import fit, run_dir

    if threads:
        torch.set_num_threads(threads)
    prof = get_profile(profile)
    datasets = windows(prof.data)
    data = data_identity(prof.data, datasets["train"].clips)
    out = HERE / prof.name
    out.mkdir(parents=True, exist_ok=True)
    baselines = {}
    for name, model in baseline_models(datasets["train"], REFERENCE_BASELINES).items():
        result = evaluate_model(model, datasets["test"])
        baselines[name] = {"config": model.config_dict(), **{k: result[k] for k in HEADLINE}}
    manifest = update_manifest(out, {"profile": prof.name, "data": data, "test_windows": len(datasets["test"]),
                                     "baselines": baselines})
    for name in models or LEARNED:
        cfg = prof.train_config(name)
        torch.manual_seed(cfg.seed)
        model = build(name, **prof.model_config(name))
        folder = run_dir(runs, model, prof.data, cfg)
        fit(model, datasets["train"], datasets["val"], cfg, folder, prof.data, device=device,
            probe=test_probe(datasets["test"]))  # the quality-against-time curve, logged
        state = torch.load(folder / "last.pt", map_location="cpu", weights_only=True)
        for key in ("optimizer", "scaler", "rng"):  # resume state: not needed to predict, and large
            state.pop(key, None)
        manifest = package(name, model, state, datasets["test"], out, baselines)
        thin_log(folder / "log.jsonl", out / name / "log.jsonl")  # package made the folder
    return manifest


def package(name: str, model, state: dict, test, out: Path, baselines: dict) -> dict:
    """Write ``state`` (a finished run, without resume state) as ``out/name/last.pt`` with the profile's inference
    options as they are now (``model``'s config: hold_still and self_check, chosen on validation after training,
    are not part of the run, so a finished run is shipped again, not retrained, when they change), evaluate it on
    ``test`` and record it in the manifest."""
    from ..evaluate import evaluate_model

    state["model_config"] = model.config_dict()
    target = out / name
    target.mkdir(parents=True, exist_ok=True)
    atomic_write(target / "last.pt", lambda handle, state=state: torch.save(state, handle))
    model.load_state_dict(state["state_dict"])
    result = evaluate_model(model.cpu(), test)
    entry = {"model_config": state["model_config"], "train_config": state["train_config"],
             "data_config": state["data_config"], "steps": state["step"],
             "train_seconds": state["train_seconds"], "device": state["device"],
             "precision": state["precision"],
             "torch_version": state["torch_version"], "threads": torch.get_num_threads(),
             "test": {k: result[k] for k in HEADLINE}}
    if "mse_without_hold_still" in result:  # what the hold-still read-out changed, on the same windows
        entry["test_without_hold_still"] = {"hold_still": model.config.hold_still,
                                            "mse": result["mse_without_hold_still"]}
    manifest = update_manifest(out, {}, {name: entry})
    print(f"shipped {name}: {state['step']} steps, {state['train_seconds'] / 60:.1f} min, test MSE {result['mse']:.5f} "
          f"(blend {baselines['blend']['mse']:.5f}), moving {result['moving_mse']:.4f} "
          f"(blend {baselines['blend']['moving_mse']:.4f})", flush=True)
    return manifest


def refresh(profile: str = "book", models=None, threads: int | None = None) -> dict:
    """Ship the shipped checkpoints of ``profile`` again with the profile's inference options as they are now,
    without their runs and without training: each is evaluated on the test split again. A checkpoint whose
    training config differs from the profile's is refused: that one needs ``ship`` (training)."""
    from ..checkpoints import training_config
    from ..data import windows
    from ..models import build

    if threads:
        torch.set_num_threads(threads)
    prof = get_profile(profile)
    out = HERE / prof.name
    manifest = json.loads((out / "manifest.json").read_text())
    test = windows(prof.data)["test"]
    for name in models or list(manifest["models"]):
        state = torch.load(out / name / "last.pt", map_location="cpu", weights_only=True)
        model = build(name, **prof.model_config(name))
        if training_config(state["model_config"]) != training_config(model.config_dict()):
            raise SystemExit(f"{out / name / 'last.pt'} was trained with another model config than the {prof.name} "
                             f"profile's; re-create it with `python -m vidpred.pretrained --profile {prof.name} "
                             f"--models {name}`")
        manifest = package(name, model, state, test, out, manifest["baselines"])
    return manifest


def thin_log(source: Path, target: Path, every: int = 10) -> None:
    """Copy a run's log with every validation and probe record but only every ``every``-th training step."""
    lines = [line for line in source.read_text().splitlines()
             if json.loads(line)["kind"] != "train" or json.loads(line)["step"] % every == 0]
    atomic_write(target, lambda handle: handle.write(("\n".join(lines) + "\n").encode()))


def update_manifest(folder: Path, fields: dict, models: dict | None = None) -> dict:
    """Read-modify-write ``manifest.json`` under a lock: several models may ship at once."""
    import fcntl

    path = folder / "manifest.json"
    with open(folder / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = json.loads(path.read_text()) if path.exists() else {}
        manifest.update(fields)
        manifest.setdefault("models", {}).update(models or {})
        atomic_write(path, lambda handle: handle.write(json.dumps(manifest, indent=1).encode()))
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vidpred.pretrained", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="book")
    parser.add_argument("--models", default=None, help="comma-separated (default: every learned model)")
    parser.add_argument("--runs", default="runs/ship", help="where the full runs (with optimizer state) go")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--refresh", action="store_true",
                        help="no training: ship the shipped checkpoints again with the profile's inference options")
    args = parser.parse_args(argv)
    models = args.models.split(",") if args.models else None
    if args.refresh:
        refresh(args.profile, models, args.threads)
    else:
        ship(args.profile, models, args.runs, args.device, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
