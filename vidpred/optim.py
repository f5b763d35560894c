"""The optimizer and its schedule: AdamW (fused where it can be) and linear warm-up then cosine decay."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import TrainConfig


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``cfg.lr``, then cosine decay to 5 % of it."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def make_optimizer(model: nn.Module, lr: float = 1e-3, weight_decay: float = 1e-2, fused: bool = True
                   ) -> torch.optim.AdamW:
    """AdamW over ``model``'s parameters, as one fused kernel on a CPU or CUDA device (``fused``): the
    step-by-step AdamW runs about ten small operators per parameter tensor, 3.2 ms a step for the book's
    transformer (84 tensors) on a 2-core CPU against 0.5 ms fused. The same update up to rounding; a
    checkpoint of either kind resumes in the kind it was saved with."""
    params = list(model.parameters())  # all of them, as before: saved optimizer states line up
    fused = fused and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
