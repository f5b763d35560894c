"""Helpers the chapters share: the setup cell, showing package source, and where runs live."""

from __future__ import annotations

import inspect
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import Profile, get_profile
from .train import pick_device
from .utils import seed_everything


@dataclass
class BookEnv:
    profile: Profile
    device: torch.device
    root: Path  # the project root (or the working folder in Colab)

    @property
    def runs(self) -> Path:
        """Where this profile's checkpoints go, shared by every chapter (load-or-train)."""
        return self.root / "runs" / self.profile.name


def project_root(start: Path | None = None) -> Path:
    """The folder holding ``_config.yml`` above ``start``; else ``VIDPRED_HOME`` or the working folder."""
    if "VIDPRED_HOME" in os.environ:
        return Path(os.environ["VIDPRED_HOME"])
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").exists() and (folder / "vidpred").is_dir():
            return folder
    return here


def setup(seed: int = 0, profile: str | None = None, quiet: bool = False) -> BookEnv:
    """Seed everything, pick the device and the profile, and say which were picked."""
    seed_everything(seed)
    prof = get_profile(profile)
    device = pick_device()
    env = BookEnv(prof, device, project_root())
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if not quiet:
        print(f"vidpred profile: {prof.name} (set VIDPRED_PROFILE=smoke|book|full to change)")
        print(f"device: {device}  |  torch {torch.__version__}  |  {torch.get_num_threads()} CPU threads  |  "
              f"Python {platform.python_version()}")
        print(f"data: {prof.data.source}  |  runs: {env.runs}")
    return env


def show_source(obj) -> object:
    """The source of a package function or class, highlighted: the book shows the code it runs."""
    from IPython.display import Code

    return Code(inspect.getsource(obj), language="python")
