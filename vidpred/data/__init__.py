"""Data: UCF101 (original or Kaggle layout), the synthetic exercise videos, and windows."""

from __future__ import annotations

from ..config import DataConfig
from .windows import Clip, WindowDataset, fixed_batch, make_loader, split_by_group

__all__ = ["Clip", "WindowDataset", "fixed_batch", "load_splits", "make_loader", "split_by_group",
           "windows"]


def load_splits(cfg: DataConfig, progress: bool = False) -> dict[str, list[Clip]]:
    """Clips of every split for ``cfg``: generated (synthetic) or decoded through the cache (UCF101).

    Both are split by group (the actor), so no actor is in two splits.
    """
    if cfg.source == "synthetic":
        from .synthetic import generate

        n_test, n_val = max(1, cfg.n_actors // 4), max(1, cfg.n_actors // 6)
        return split_by_group(generate(cfg), range(1, n_test + 1), range(n_test + 1, n_test + n_val + 1))
    if cfg.source == "ucf101":
        from .ucf101 import log, prepare

        report = prepare(cfg, progress=progress)
        for path, why in report.rebuilt.items():  # `vidpred prepare` prints these in its summary
            log.warning(f"rebuilt {path}: {why}")
        return report.clips
    raise ValueError(f"unknown data source {cfg.source!r}; choose 'synthetic' or 'ucf101'")


def windows(cfg: DataConfig, progress: bool = False) -> dict[str, WindowDataset]:
    """A :class:`WindowDataset` per split."""
    return {split: WindowDataset.from_config(clips, cfg, split) for split, clips in load_splits(cfg, progress).items()}
