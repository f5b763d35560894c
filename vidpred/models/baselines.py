"""Baselines every result is compared against. They have no parameters and need no training."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Predictor


@dataclass
class BaselineConfig:
    n_context: int = 30
    n_future: int = 15


class CopyLast(Predictor):
    """Every future frame is the last context frame: right wherever nothing moves."""

    name, trainable, Config = "copy_last", False, BaselineConfig

    def forward(self, context: torch.Tensor, n_future: int = 15) -> torch.Tensor:
        return context[:, -1:].expand(-1, n_future, -1, -1, -1)


class ContextMean(Predictor):
    """Every future frame is the mean of the context: the best constant guess for periodic motion."""

    name, trainable, Config = "context_mean", False, BaselineConfig

    def forward(self, context: torch.Tensor, n_future: int = 15) -> torch.Tensor:
        return context.mean(1, keepdim=True).expand(-1, n_future, -1, -1, -1)


class LinearExtrapolation(Predictor):
    """Continue the last pixel-wise change, clipped to [0, 1]: shows how wrong naive motion gets."""

    name, trainable, Config = "linear", False, BaselineConfig

    def forward(self, context: torch.Tensor, n_future: int = 15) -> torch.Tensor:
        velocity = context[:, -1:] - context[:, -2:-1]  # (B, 1, 1, H, W)
        steps = torch.arange(1, n_future + 1, device=context.device, dtype=context.dtype).view(1, -1, 1, 1, 1)
        return (context[:, -1:] + steps * velocity).clamp(0, 1)
