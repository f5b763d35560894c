"""Data: the synthetic exercise videos, the real exercise set, UCF101 (original or Kaggle layout), and windows."""

from __future__ import annotations

from ..config import DataConfig
from .windows import Clip, WindowDataset, fixed_batch, make_loader, split_by_group

__all__ = ["Clip", "WindowDataset", "fixed_batch", "load_splits", "make_loader", "split_by_group",
           "synthetic_clips", "windows"]


def synthetic_clips(cfg: DataConfig) -> list[Clip]:
    """The synthetic clips of ``cfg``, rendered once and then read from ``cfg.cache_dir``.

    Rendering is deterministic, so the cache is keyed by the fields that shape the clips (and the
    renderer's version); an unreadable cache file is rendered again and replaced.
    """
    import json
    import warnings
    from pathlib import Path

    import numpy as np

    from ..config import config_hash
    from ..utils import atomic_write
    from .synthetic import RENDERER_VERSION, generate

    key = config_hash({name: getattr(cfg, name) for name in
                       ("classes", "image_size", "clips_per_class", "clip_length", "n_actors", "seed")}, RENDERER_VERSION)
    frames_path = Path(cfg.cache_dir) / f"synthetic-{key}.npy"
    index_path = frames_path.with_suffix(".json")
    if frames_path.exists() and index_path.exists():
        try:
            index = json.loads(index_path.read_text())
            frames = np.load(frames_path, mmap_mode="r")
            if frames.shape[0] != len(index) or frames.dtype != np.uint8:
                raise ValueError(f"{frames.shape[0]} clips for {len(index)} names")
            return [Clip(name, label, group, np.array(frames[i])) for i, (name, label, group) in enumerate(index)]
        except (OSError, ValueError) as err:
            warnings.warn(f"{frames_path} is unreadable ({err}); rendering the synthetic clips again", stacklevel=2)
    clips = generate(cfg)
    try:
        frames_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(frames_path, lambda h: np.save(h, np.stack([c.frames for c in clips])))
        atomic_write(index_path, lambda h: h.write(json.dumps([[c.name, c.label, c.group] for c in clips]).encode()))
    except OSError as err:  # a read-only folder: the clips are still there, just not cached
        warnings.warn(f"could not cache the synthetic clips in {frames_path.parent}: {err}", stacklevel=2)
    return clips


def load_splits(cfg: DataConfig, progress: bool = False) -> dict[str, list[Clip]]:
    """Clips of every split for ``cfg``: generated (synthetic) or decoded through the cache (real exercise set, UCF101).

    All are split by group (the actor; for the real exercise set, the scene), so no actor is in two splits.
    """
    if cfg.source == "synthetic":
        n_test, n_val = max(1, cfg.n_actors // 4), max(1, cfg.n_actors // 6)
        return split_by_group(synthetic_clips(cfg), range(1, n_test + 1), range(n_test + 1, n_test + n_val + 1))
    if cfg.source == "ucf101":
        from .ucf101 import log, prepare

        report = prepare(cfg, progress=progress)
        for path, why in report.rebuilt.items():  # `vidpred prepare` prints these in its summary
            log.warning(f"rebuilt {path}: {why}")
        return report.clips
    if cfg.source == "exercise":
        from .exercise import prepare as prepare_exercise

        return prepare_exercise(cfg, progress=progress).clips
    raise ValueError(f"unknown data source {cfg.source!r}; choose 'synthetic', 'exercise' or 'ucf101'")


def windows(cfg: DataConfig, progress: bool = False) -> dict[str, WindowDataset]:
    """A :class:`WindowDataset` per split."""
    return {split: WindowDataset.from_config(clips, cfg, split) for split, clips in load_splits(cfg, progress).items()}
