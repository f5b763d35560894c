"""What the app serves, prepared once when it starts (:func:`prepare`): the data its inputs are shaped as, the
models (the baselines and the trained checkpoints) and their runtimes, the sample clips, how uploads are read and
cropped, and the notes shown with the answers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import DataConfig, get_profile
from ..models import Predictor
from ..runs import REAL_SOURCES
from .predict import (
    default_profile,
    load_models,
    real_warning,
    runnable,
    shipped_blend,
    synthetic_warning,
    trained_on_footage,
    upload_crop,
)
from .samples import real_splits, sample_clips


@dataclass
class Served:
    """What the app serves; see :func:`prepare`."""

    data: DataConfig  # the data the inputs are read as (image size, frame step, default crop)
    models: dict[str, Predictor]  # the baselines and the trained models that can predict
    runtimes: dict[str, float]  # each model's ms per clip, measured at startup
    samples: dict[str, np.ndarray]  # sample clips by name
    note: str  # the loaded checkpoints and the models left out, shown with every answer
    crop: str  # how uploads are cropped
    crop_note: str  # how and why, shown with the answer to an upload
    footage: bool  # uploads are read as the real training footage was (25 fps, bars cropped)
    real_video_warning: str  # what to expect of the models on a real upload ("" when nothing to say)
    threads: int  # torch threads the runtimes were measured with


def prepare(checkpoints: str | Path | None = None, profile: str | None = None, data: DataConfig | None = None,
            allow_mixed: bool = True, crop: str | None = None) -> Served:
    """Load what the app serves (the arguments are :func:`~vidpred.app.server.build_app`'s).

    Without ``data`` every checkpoint under ``checkpoints`` (else the shipped ones) is loaded and shown
    with the data it was trained on. With ``data`` only the checkpoints trained on that data are loaded (others
    are refused unless ``allow_mixed``), the blend is fitted on its training split and the samples are its test
    clips. Uploads are cropped with ``crop``, by default as the loaded models' training videos were
    (:func:`~vidpred.app.predict.upload_crop`). Models that cannot predict are left out, with a note.
    """
    from ..data import WindowDataset

    prof = get_profile(profile or default_profile())
    data_cfg, splits, found, fit_blend, samples_data = _data_and_runs(checkpoints, prof, data, allow_mixed)
    train = WindowDataset.from_config(splits["train"], data_cfg, "train") if fit_blend else None
    models, note = load_models(checkpoints, prof.name, train, found, blend=None if fit_blend else shipped_blend(prof.name))
    samples = sample_clips(prof.name, splits=splits, data=samples_data)
    footage = trained_on_footage(found)  # uploads read as the training footage was: 25 fps, bars cropped
    crop, crop_note = _upload_crop(found, crop, data_cfg, footage)
    runtimes, left_out = runnable(models)
    return Served(data=data_cfg, models=models, runtimes=runtimes, samples=samples,
                  note="\n\n".join([note, *left_out]).strip(), crop=crop, crop_note=crop_note, footage=footage,
                  real_video_warning=synthetic_warning(found) or real_warning(found), threads=torch.get_num_threads())


def _data_and_runs(checkpoints: str | Path | None, prof, data: DataConfig | None, allow_mixed: bool):
    """The data config, its splits, the checkpoints found (a RunSet), whether the blend is fitted on the training
    split (else the one shipped with the checkpoints is used), and the data the samples come from (None: the
    profile's synthetic clips, and UCF101 clips where cached)."""
    from ..data import load_splits
    from ..runs import data_identity, runs_for

    if data is not None:
        splits = load_splits(data)
        identity = data_identity(data, splits["train"])
        return data, splits, runs_for(checkpoints, prof.name, identity, allow_mixed=allow_mixed), True, data
    data_cfg = prof.data
    # the real exercise set where it is on this machine: its training split fits the blend, its test clips are
    # the samples; else (and for UCF101 profiles) the synthetic clips, and the blend the profile shipped
    real_data = real_splits(data_cfg) if data_cfg.source == "exercise" else None
    splits = real_data or load_splits(data_cfg if data_cfg.source == "synthetic" else get_profile("smoke").data)
    fit_blend = real_data is not None or data_cfg.source == "synthetic" or shipped_blend(prof.name) is None
    found = runs_for(checkpoints, prof.name, allow_mixed=True)  # read once: models and warning
    return data_cfg, splits, found, fit_blend, data_cfg if real_data else None


def _upload_crop(found, asked: str | None, data_cfg: DataConfig, footage: bool) -> tuple[str, str]:
    """How uploads are cropped (``asked``, else as the models' real training videos were, else the data's crop)
    and the note that says so, and why."""
    trained_crop = upload_crop(found, None)  # None: no agreed crop of real training videos
    real = any((r.data or {}).get("source") in REAL_SOURCES for r in found.runs.values())
    why = ("as chosen with --crop" if asked else "as the models' training videos were" if trained_crop
           else "the default, since the loaded models' real training videos were cropped differently" if real
           else "so that bodies keep their shape, as in the square frames the models were trained on")
    crop = asked or trained_crop or data_cfg.crop
    crop_note = ("Uploads are cropped to their centred square before resizing to 64×64" if crop == "center"
                 else "Uploads are squashed to 64×64 whole (no crop)") + f", {why}."
    if footage:
        crop_note += (" As the models' training footage was, uploads are first brought to 25 fps (start frame and "
                      "frame step count frames at 25 fps) and black or blurred bars are cropped away.")
    return crop, crop_note
