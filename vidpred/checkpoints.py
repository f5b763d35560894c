"""Checkpoint files and run identity: what a run is (:func:`run_identity`, the folder it trains in:
:func:`run_dir`), and writing and reading its checkpoints and log safely. Training (:mod:`vidpred.train`) and
everything that finds or loads runs (:mod:`vidpred.runs`, evaluation, the app) import it; it imports neither.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
from pathlib import Path

import torch

from .config import DataConfig, TrainConfig, config_hash, to_dict
from .models import Predictor, rebuild
from .utils import atomic_write

CHECKPOINT_VERSION = 1
# Model options that change only how a trained model predicts (chosen after training, on validation), not what
# it learns: a run is the same run whatever they are set to.
INFERENCE_OPTIONS = ("hold_still", "self_check")

log = logging.getLogger(__name__)


class CheckpointMismatch(ValueError):
    """A checkpoint was made with another config than the one asked for."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (a full disk, mostly); the previous one is kept."""


class CheckpointNotFinite(ValueError):
    """A checkpoint's weights hold NaN or infinite values (a diverged run): it is refused, never served."""



def training_config(config: dict) -> dict:
    """A model config (``model.config_dict()``, or a checkpoint's) without the :data:`INFERENCE_OPTIONS`: what
    training depends on."""
    return {k: v for k, v in config.items() if k not in INFERENCE_OPTIONS}


def run_identity(model: Predictor, data_cfg: DataConfig, train_cfg: TrainConfig) -> dict:
    """What a checkpoint must match to be reused: the model, its config, the data and the training."""
    return {"model": model.name, "model_config": training_config(model.config_dict()), "data_config": to_dict(data_cfg),
            "train_config": to_dict(train_cfg)}


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic: written to a temporary file in the same folder, then renamed over ``path``.

    A failed write (a full disk shows up as ``RuntimeError: [enforce fail at inline_container.cc]
    … unexpected pos`` from torch, or ``OSError: ENOSPC``) leaves the previous file in place and
    raises :class:`CheckpointWriteError` with one line that says so.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, lambda handle: torch.save(state, handle))
    except (OSError, RuntimeError) as err:
        full = getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "unexpected pos" in str(err) \
            or "file write failed" in str(err)
        try:
            free = f", {shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free there"
        except OSError:
            free = ""
        first_line = str(err).splitlines()[0] if str(err) else ""
        why = f"the disk is full{free}" if full else f"{type(err).__name__}: {first_line}"
        kept = "the previous checkpoint is kept" if path.exists() else "no previous checkpoint there"
        fix = f"free some space on {path.parent}" if full else "fix that"
        raise CheckpointWriteError(f"could not write {path}: {why}; {kept}. {fix.capitalize()} and resume with "
                                   "the same command") from None


def non_finite(state_dict: dict) -> tuple[str, int, int] | None:
    """The first tensor of ``state_dict`` with NaN or infinite values: (name, how many, of how many); else None."""
    for name, value in state_dict.items():
        if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()) \
                and not bool(torch.isfinite(value).all()):
            return name, int((~torch.isfinite(value)).sum()), value.numel()
    return None


def load_checkpoint(path: str | Path, expect: dict | None = None, map_location="cpu") -> dict:
    """Load safely (``weights_only=True``); with ``expect``, any config difference is an error.

    Weights with a NaN or an infinity (what a diverged run leaves) are refused with
    :class:`CheckpointNotFinite`, so such a checkpoint is never evaluated, served or resumed from.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (an interrupted copy?): delete it, or train again")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated, corrupt or foreign file
        # torch's message may advise retrying with weights_only=False; that would run code from the
        # file, so it is never passed on.
        reason = "truncated or corrupt" if isinstance(err, (RuntimeError, EOFError, OSError)) else \
            "not a checkpoint this package can load safely (weights only)"
        raise ValueError(f"{path} is {reason} ({type(err).__name__}): delete it, or train again") from None
    if not isinstance(state, dict) or "model" not in state or "state_dict" not in state:
        raise ValueError(f"{path} is not a vidpred checkpoint (no model name or weights in it)")
    if isinstance(state.get("train_config"), dict):  # a field added since it was saved holds its default
        state["train_config"] = {**to_dict(TrainConfig()), **state["train_config"]}
    bad = non_finite(state["state_dict"]) if isinstance(state["state_dict"], dict) else None
    if bad is not None:
        name, count, total = bad
        raise CheckpointNotFinite(f"{path}: its weights {name} hold {count} NaN or infinite value(s) of {total} (a "
                                  "diverged run); refused. Delete it and train again, or copy an earlier checkpoint of "
                                  "the run (best.pt) over last.pt to resume from there")
    if expect is not None:
        differences = [
            f"{key}.{name}: checkpoint {state[key].get(name)!r} vs asked {value!r}"
            for key in ("model_config", "data_config", "train_config") if key in expect
            for name, value in expect[key].items() if state.get(key, {}).get(name) != value
        ]
        if state["model"] != expect.get("model", state["model"]):
            differences.insert(0, f"model: checkpoint {state['model']!r} vs asked {expect['model']!r}")
        if differences:
            raise CheckpointMismatch(f"{path} was trained with another config:\n  " + "\n  ".join(differences))
    return state


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[Predictor, dict]:
    """The trained model in eval mode, and its checkpoint (config, step, timings)."""
    state = load_checkpoint(path)
    model = rebuild(state["model"], state["model_config"])
    model.load_state_dict(state["state_dict"])
    return model.to(device).eval(), state


def run_dir(root: str | Path, model: Predictor, data_cfg: DataConfig, train_cfg: TrainConfig) -> Path:
    """``root/<model>-<hash of the run identity>``: one folder per distinct config."""
    return Path(root) / f"{model.name}-{config_hash(run_identity(model, data_cfg, train_cfg))}"


def read_log(path: Path) -> list[dict]:
    """The records of a ``log.jsonl``.

    A torn final line (what a kill in the middle of a write leaves) is dropped with a warning; an
    unreadable line anywhere else is an error that names the file and the line.
    """
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except ValueError as err:
            if number == len(lines):
                log.warning(f"{path}: ignored its torn last line {number} (an interrupted write)")
                break
            raise ValueError(f"{path}, line {number}: not a JSON record ({err}); delete that line, "
                             "or the run folder to train from scratch") from None
    return records
