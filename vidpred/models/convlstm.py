"""ConvLSTM (Shi et al., 2015): an LSTM whose matrix products are convolutions.

Frames are reshaped space-to-depth (patch p: 1×64×64 → p²×(64/p)×(64/p)) so the recurrent cells
run on a small grid, a stack of cells carries (h, c) through time, and a 1×1 convolution maps the
top hidden state back to the next frame. The same stack reads the context and then forecasts from
its own predictions (scheduled sampling bridges the two during training).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import autocast_weights
from .recurrent import RecurrentPredictor


@dataclass
class ConvLSTMConfig:
    hidden: tuple[int, ...] = (32, 32)  # channels of each stacked cell
    kernel_size: int = 3
    patch_size: int = 4
    forget_bias: float = 1.0  # start by remembering
    sampling_stop: float = 0.3  # scheduled sampling reaches free-running at this progress
    context_loss_weight: float = 1.0  # weight of next-frame errors inside the context vs the future
    output: str = "retrieve"  # "retrieve" (mix of past frames and a new one) | "gated"; retrieval.py
    analogue_window: int = 8  # "retrieve": inputs the analogue pointer compares (0: no pointer); retrieval.py
    hold_still: float = 0.0  # eval only: copy the last frame where the context is still (stillness.py; 0: off)
    self_check: float = 0.0  # eval only: trust the future as far as the recent past was predicted (selfcheck.py)
    n_context: int = 30
    n_future: int = 15


class ConvLSTMCell(nn.Module):
    """i, f, g, o from one convolution over [x, h]; c' = f·c + i·g; h' = o·tanh(c')."""

    def __init__(self, in_channels: int, hidden: int, kernel_size: int, forget_bias: float):
        super().__init__()
        self.hidden, self.in_channels = hidden, in_channels
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2)
        with torch.no_grad():
            self.gates.bias[hidden : 2 * hidden].fill_(forget_bias)

    def split_weights(self) -> tuple[torch.Tensor, ...]:
        """The gates' weight and bias, and the weight's ``x`` and ``h`` parts, in autocast's dtype:
        the lean step casts and splits them once per rollout instead of at every step."""
        weight, bias = autocast_weights(self.gates.weight, self.gates.bias)
        weight_x, weight_h = weight.split([self.in_channels, self.hidden], 1)
        return weight, bias, weight_x.contiguous(), weight_h.contiguous()

    def project_input(self, x: torch.Tensor, weights=None) -> torch.Tensor:
        """The part of the gates that comes from ``x`` alone (bias included): the convolution is
        linear, so it splits into a convolution of x and one of h, and x's can run for many frames
        at once."""
        _, bias, weight_x, _ = self.split_weights() if weights is None else weights
        return F.conv2d(x, weight_x, bias, padding=self.gates.padding)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                projected: torch.Tensor | None = None, weights=None):
        """``weights``: :meth:`split_weights`, built once for a rollout (None: the parameters)."""
        pad = self.gates.padding
        if weights is None:
            weight_h = self.gates.weight[:, self.in_channels :]
            weights = (self.gates.weight, self.gates.bias, None, weight_h)
        weight, bias, _, weight_h = weights
        if projected is None:
            gates = F.conv2d(torch.cat([x, h], 1), weight, bias, padding=pad)
        else:  # x's part computed ahead (project_input): only h's convolution is left
            gates = projected + F.conv2d(h, weight_h, padding=pad)
        i, f, g, o = gates.chunk(4, 1)  # each (B, hidden, h, w)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class ConvLSTM(RecurrentPredictor):
    name = "convlstm"
    Config = ConvLSTMConfig

    def __init__(self, config: ConvLSTMConfig):
        super().__init__(config)
        p2 = config.patch_size**2
        widths = (p2, *config.hidden)
        self.cells = nn.ModuleList(
            ConvLSTMCell(widths[i], widths[i + 1], config.kernel_size, config.forget_bias)
            for i in range(len(config.hidden))
        )
        self.make_head(config.hidden[-1])  # self.head (and the pointer): see RecurrentPredictor.readout

    def init_state(self, batch: int, like: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        size = like.shape[-1] // self.config.patch_size
        return [(like.new_zeros(batch, cell.hidden, size, size),) * 2 for cell in self.cells]

    def cell_weights(self):
        return [cell.split_weights() for cell in self.cells]

    def project_input(self, patches: torch.Tensor, weights=None) -> torch.Tensor:
        """The first cell's input convolution of (B, T, p², h, w) patched frames, all T at once."""
        first = None if weights is None else weights[0]
        return self.cells[0].project_input(patches.flatten(0, 1), first).unflatten(0, patches.shape[:2])

    def step(self, x: torch.Tensor, state, projected: torch.Tensor | None = None, weights=None):
        new_state = []  # x: the input frame in patches, (B, p², H/p, W/p)
        for i, (cell, (h, c)) in enumerate(zip(self.cells, state)):
            h, c = cell(x, h, c, projected, None if weights is None else weights[i])
            new_state.append((h, c))
            x, projected = h, None
        return x, new_state, x.new_zeros(())
