"""Run identity: what a checkpoint is, finding "the checkpoints of this profile trained on this data".

A checkpoint knows what it is (see :func:`vidpred.train.fit`): the model name, its model and
training config, the data config, and ``data``, the identity of the data it was trained on
(:func:`data_identity`: source, classes, frame step, image size and a fingerprint of the training
clips' frames). Folder names are a convenience and never the source of identity: a row is named by
the model name inside its checkpoint.

Everything that picks checkpoints (``evaluate``, ``generate``, the app, ``load_or_train``) asks
:func:`find_runs`, which refuses a set trained on different data, or on other data than the data
being evaluated, with a message naming each checkpoint and its data (``allow_mixed`` overrides).
The package ships checkpoints of the book profile (:func:`shipped_runs`); ``python -m
vidpred.pretrained`` re-creates them.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import DataConfig
from .utils import display_path

SHIPPED = Path(__file__).parent / "pretrained"
REAL_SOURCES = ("exercise", "ucf101")  # decoded from real videos, so cropped one way or another


class RunMismatch(ValueError):
    """Checkpoints trained on different data were about to be compared, or run on other data."""


def data_identity(cfg: DataConfig, train_clips) -> dict:
    """What the training data was: source, classes, frame step, size and a fingerprint of its frames.

    ``train_clips`` are :class:`~vidpred.data.Clip` objects (a WindowDataset's ``clips``). The
    fingerprint hashes every clip's name and uint8 frames, so two runs agree on it exactly when
    they saw the same pixels, whatever folder the data came from.
    """
    digest = hashlib.sha256()
    frames = 0
    for clip in sorted(train_clips, key=lambda c: c.name):
        digest.update(clip.name.encode())
        digest.update(np.ascontiguousarray(clip.frames).tobytes())
        frames += len(clip.frames)
    return {"source": cfg.source, "classes": list(cfg.classes), "frame_step": cfg.frame_step,
            "image_size": cfg.image_size,  # synthetic frames are rendered square: no crop applies to them
            "crop": getattr(cfg, "crop", "none") if cfg.source in REAL_SOURCES else "none",
            "train_clips": len(train_clips), "train_frames": frames, "fingerprint": digest.hexdigest()[:16]}


def describe_data(data: dict | None) -> str:
    """One line: ``synthetic exercise videos (5 classes), frame step 1, 64 px, 175 training clips, data 1a2b…``."""
    if not data:
        return "unknown data (a checkpoint from before provenance was recorded)"
    source = {"synthetic": "synthetic exercise videos", "exercise": "real exercise videos",
              "ucf101": "UCF101"}.get(data["source"], data["source"])
    classes = data["classes"]
    names = ", ".join(classes) if len(classes) <= 5 else f"{', '.join(classes[:4])} and {len(classes) - 4} more"
    crop = {"center": ", centre square", "none": ", squashed (no crop)"}.get(data.get("crop"), "")
    crop = crop if data["source"] in REAL_SOURCES else ""  # synthetic frames are rendered square
    return (f"{source} ({names}), frame step {data['frame_step']}, {data['image_size']} px{crop}, "
            f"{data['train_clips']} training clips, data {data['fingerprint']}")


@dataclass
class Run:
    """One trained model: its checkpoint's identity, weights and where it came from."""

    name: str  # the model's registry name, read from the checkpoint
    path: Path
    state: dict  # the checkpoint as loaded (weights_only)
    origin: str = "trained"  # "trained" | "shipped"

    @property
    def data(self) -> dict | None:
        return self.state.get("data")

    @property
    def steps(self) -> int:
        return int(self.state["step"])

    def describe(self) -> str:
        seconds = self.state.get("train_seconds") or 0
        return (f"{self.name}: {self.steps} steps ({seconds / 60:.1f} min on {self.state.get('device', '?')}), "
                f"{self.origin} checkpoint {display_path(self.path)}, trained on {describe_data(self.data)}")

    def model(self, device="cpu"):
        """The predictor with these weights, in eval mode."""
        from .models import rebuild

        model = rebuild(self.state["model"], self.state["model_config"])
        model.load_state_dict(self.state["state_dict"])
        return model.to(device).eval()


@dataclass
class RunSet:
    """The runs found, by model name, and every checkpoint that was skipped with the reason."""

    runs: dict[str, Run] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def models(self, device="cpu") -> dict:
        return {name: run.model(device) for name, run in self.runs.items()}


def read_run(folder: Path, origin: str = "trained") -> tuple[Run | None, list[str]]:
    """The run in ``folder``: ``last.pt``, or ``best.pt`` where ``last.pt`` is unreadable.

    Returns the run (None when neither file is usable) and a message per unusable file.
    """
    from .checkpoints import load_checkpoint

    problems, found = [], None
    for filename in ("last.pt", "best.pt"):  # both are checked, so a damaged best.pt is reported too
        path = folder / filename
        if not path.exists():
            continue
        try:
            state = load_checkpoint(path)
        except (ValueError, OSError) as err:
            problems.append(f"skipped {path}: {str(err).splitlines()[0]}")
            continue
        found = found or Run(state["model"], path, state, origin)
    return found, problems


def find_runs(root: str | Path | None, data: dict | None = None, *, allow_mixed: bool = False,
              models=None) -> RunSet:
    """The newest run per model name under ``root`` (``root/<anything>/last.pt``).

    ``data`` is the identity (:func:`data_identity`) of the data the caller is about to use: a run
    trained on other data is refused, and so is a set of runs trained on different data, with
    :class:`RunMismatch` naming each checkpoint and its data, unless ``allow_mixed``.
    """
    found = RunSet()
    if root is None or not Path(root).is_dir():
        return found
    folders = sorted((p.parent for p in Path(root).glob("*/*.pt") if p.name in ("last.pt", "best.pt")),
                     key=lambda f: max(p.stat().st_mtime for p in f.glob("*.pt")))
    for folder in dict.fromkeys(folders):
        run, problems = read_run(folder)
        found.skipped += problems
        if run is not None and (models is None or run.name in models):
            found.runs[run.name] = run  # newest last: it wins
    for message in found.skipped:
        warnings.warn(message, stacklevel=2)
    check_same_data(found.runs, data, allow_mixed)
    return found


def check_same_data(runs: dict[str, Run], data: dict | None, allow_mixed: bool = False) -> None:
    """Refuse runs trained on different data, or on other data than ``data``."""
    if allow_mixed or not runs:
        return
    prints = {name: (run.data or {}).get("fingerprint") for name, run in runs.items()}
    wanted = data["fingerprint"] if data else None
    if len(set(prints.values())) > 1 or (wanted is not None and set(prints.values()) != {wanted}):
        lines = [f"  {run.describe()}" for run in runs.values()]
        if data is not None:
            lines.append(f"  the data asked for: {describe_data(data)}")
        raise RunMismatch("these checkpoints were not all trained on the data asked for:\n" + "\n".join(lines)
                          + "\ntrain them on this data (vidpred train ... with the same --data/--data-dir/--classes/--crop),"
                            " point --runs (the app: --checkpoints) at the matching folder, or pass --allow-mixed to"
                            " compare them anyway")


# ------------------------------------------------------------------------------ shipped checkpoints
def shipped_manifest(profile: str = "book") -> dict | None:
    path = SHIPPED / profile / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def shipped_runs(profile: str = "book", models=None) -> RunSet:
    """The checkpoints that come with the package for ``profile`` (empty when none is shipped)."""
    found = RunSet()
    folder = SHIPPED / profile
    if not folder.is_dir():
        return found
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        run, problems = read_run(sub, origin="shipped")
        found.skipped += problems
        if run is not None and (models is None or run.name in models):
            found.runs[run.name] = run
    return found


WINDOW_FIELDS = ("n_context", "n_future", "frame_step", "window_stride", "train_stride")


def shipped_match(identity: dict, data: dict | None, profile: str | None = None) -> Run | None:
    """The shipped run with this run identity: the same model, model and training configs, windows
    cut the same way, and training data with the same fingerprint (``data``, from
    :func:`data_identity`; the pixels decide, not how the config that made them is spelled)."""
    from .checkpoints import training_config
    from .config import PROFILES

    if data is None:
        return None
    for name in [profile] if profile else PROFILES:
        run = shipped_runs(name).runs.get(identity["model"])
        if run is None:
            continue
        state = run.state
        windows_match = all(state["data_config"].get(k) == identity["data_config"].get(k) for k in WINDOW_FIELDS)
        same_training = training_config(state["model_config"]) == identity["model_config"]
        if (same_training and state["train_config"] == identity["train_config"]
                and windows_match and (run.data or {}).get("fingerprint") == data["fingerprint"]):
            return run
    return None


def runs_for(root: str | Path | None, profile: str, data: dict | None = None, *, allow_mixed: bool = False,
             models=None) -> RunSet:
    """Trained runs under ``root``; where a model has none, the shipped one when its data matches."""
    found = find_runs(root, data, allow_mixed=allow_mixed, models=models)
    shipped = shipped_runs(profile, models)
    for name, run in shipped.runs.items():
        same_data = data is None or (run.data or {}).get("fingerprint") == data.get("fingerprint")
        if name not in found.runs and same_data:
            found.runs[name] = run
    check_same_data(found.runs, data, allow_mixed)
    return found
