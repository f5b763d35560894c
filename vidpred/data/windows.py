"""Clips, leakage-free splits and (context, future) windows as a torch Dataset."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import DataConfig


@dataclass
class Clip:
    """One preprocessed video: uint8 frames (T, H, W) plus where it came from."""

    name: str  # v_<Class>_gXX_cYY
    label: str
    group: int  # UCF101 group (the actor); 0 when unknown
    frames: np.ndarray  # (T, H, W) uint8

    def __len__(self) -> int:
        return len(self.frames)


def split_by_group(clips: Iterable[Clip], test_groups: Iterable[int],
                   val_groups: Iterable[int] = ()) -> dict[str, list[Clip]]:
    """Train/val/test by group, so no actor appears in two splits."""
    test_groups, val_groups = set(test_groups), set(val_groups)
    if test_groups & val_groups:
        raise ValueError(f"groups {sorted(test_groups & val_groups)} are in both test and val")
    splits: dict[str, list[Clip]] = {"train": [], "val": [], "test": []}
    for clip in clips:
        split = "test" if clip.group in test_groups else "val" if clip.group in val_groups else "train"
        splits[split].append(clip)
    return splits


def window_starts(n_frames: int, window_length: int, frame_step: int, stride: int) -> range:
    """Start frames of every full window of ``window_length`` frames taken ``frame_step`` apart."""
    span = (window_length - 1) * frame_step + 1
    return range(0, max(n_frames - span + 1, 0), stride)


class WindowDataset(Dataset):
    """(context, future) pairs cut from clips.

    Item ``i`` is ``(context (n_context, 1, H, W), future (n_future, 1, H, W))``, float32 in [0, 1].
    ``index[i]`` says which (clip, start frame) it came from.
    """

    def __init__(self, clips: Sequence[Clip], n_context: int = 30, n_future: int = 15,
                 frame_step: int = 1, stride: int = 15):
        if n_context < 1 or n_future < 1 or frame_step < 1 or stride < 1:
            raise ValueError("n_context, n_future, frame_step and stride must all be ≥ 1")
        self.clips, self.n_context, self.n_future = list(clips), n_context, n_future
        self.frame_step = frame_step
        length = n_context + n_future
        self.index = [(c, s) for c, clip in enumerate(self.clips)
                      for s in window_starts(len(clip), length, frame_step, stride)]

    @classmethod
    def from_config(cls, clips: Sequence[Clip], cfg: DataConfig, split: str = "test") -> WindowDataset:
        """Windows of ``clips``; the training split may be cut at its own, denser stride."""
        stride = cfg.train_stride if split == "train" and cfg.train_stride else cfg.window_stride
        return cls(clips, cfg.n_context, cfg.n_future, cfg.frame_step, stride)

    def __len__(self) -> int:
        return len(self.index)

    def frames(self, i: int) -> np.ndarray:
        """The uint8 frames (n_context + n_future, H, W) of window ``i``."""
        clip_index, start = self.index[i]
        stop = start + (self.n_context + self.n_future - 1) * self.frame_step + 1
        return self.clips[clip_index].frames[start:stop:self.frame_step]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        video = torch.from_numpy(np.ascontiguousarray(self.frames(i))).float().div_(255).unsqueeze(1)
        return video[: self.n_context], video[self.n_context :]  # (T, 1, H, W) each


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                num_workers: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader with a seeded shuffle (for evaluation and the book's quick looks)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      num_workers=num_workers, drop_last=drop_last,
                      persistent_workers=num_workers > 0)


def fixed_batch(dataset: WindowDataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` windows picked evenly across the dataset, stacked: a reproducible batch to look at."""
    if len(dataset) == 0:
        raise ValueError("the dataset has no windows: clips are shorter than one window")
    picks = np.linspace(0, len(dataset) - 1, num=min(n, len(dataset))).round().astype(int)
    pairs = [dataset[int(i)] for i in picks]
    return torch.stack([c for c, _ in pairs]), torch.stack([f for _, f in pairs])
