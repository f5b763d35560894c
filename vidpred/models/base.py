"""The contract every predictor satisfies, and the small tensor helpers the models share: patch reshaping
and mixed-precision control."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn


class Predictor(nn.Module):
    """The contract the Trainer and the evaluation rely on.

    ``forward(context (B, n_context, 1, H, W), n_future) -> (B, n_future, 1, H, W)`` in [0, 1], and
    ``training_loss(context, future, progress) -> (loss, logs)`` with ``progress`` ∈ [0, 1] the
    fraction of training done (it drives scheduled sampling). Nothing else is assumed.
    """

    name: str = ""
    trainable: bool = True

    def __init__(self, config):
        super().__init__()
        self.config = config

    def config_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self.config).items()}

    def training_loss(self, context: torch.Tensor, future: torch.Tensor, progress: float):
        prediction = self(context, future.shape[1])
        loss = F.mse_loss(prediction, future)
        return loss, {"mse": loss.detach()}


def patchify(frames: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Space-to-depth: (B, C, H, W) -> (B, C·p², H/p, W/p)."""
    return F.pixel_unshuffle(frames, patch_size) if patch_size > 1 else frames


def unpatchify(patches: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Depth-to-space: (B, C·p², H/p, W/p) -> (B, C, H, W)."""
    return F.pixel_shuffle(patches, patch_size) if patch_size > 1 else patches


def full_precision(like: torch.Tensor):
    """Mixed precision off for a block (a no-op without autocast): under bf16 autocast the cells' and
    blocks' convolutions and matrix products run in bf16, but the read-out, where the pixels of the
    prediction are formed from softmax weights over remembered frames, stays in float32."""
    return torch.autocast(like.device.type, enabled=False)


def autocast_weights(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``tensors`` in the dtype autocast would give them (unchanged without autocast). For weights a
    rollout builds once (merged from several parameters) and uses at every step: autocast caches its
    casts of parameters, but not of tensors computed from them, so it would cast those at every call."""
    device = tensors[0].device.type
    if not torch.is_autocast_enabled(device):
        return tensors
    dtype = torch.get_autocast_dtype(device)
    return tuple(t.to(dtype) for t in tensors)
