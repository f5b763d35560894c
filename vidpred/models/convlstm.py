"""ConvLSTM (Shi et al., 2015): an LSTM whose matrix products are convolutions.

Frames are reshaped space-to-depth (patch p: 1×64×64 → p²×(64/p)×(64/p)) so the recurrent cells
run on a small grid, a stack of cells carries (h, c) through time, and a 1×1 convolution maps the
top hidden state back to the next frame. The same stack reads the context and then forecasts from
its own predictions (scheduled sampling bridges the two during training).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import RecurrentPredictor, patchify


@dataclass
class ConvLSTMConfig:
    hidden: tuple[int, ...] = (32, 32)  # channels of each stacked cell
    kernel_size: int = 3
    patch_size: int = 4
    forget_bias: float = 1.0  # start by remembering
    sampling_stop: float = 0.3  # scheduled sampling reaches free-running at this progress
    context_loss_weight: float = 1.0  # weight of next-frame errors inside the context vs the future
    output: str = "retrieve"  # "retrieve" (mix of past frames and a new one) | "gated"; see base.py
    analogue_window: int = 8  # "retrieve": inputs the analogue pointer compares (0: no pointer); base.py
    n_context: int = 30
    n_future: int = 15


class ConvLSTMCell(nn.Module):
    """i, f, g, o from one convolution over [x, h]; c' = f·c + i·g; h' = o·tanh(c')."""

    def __init__(self, in_channels: int, hidden: int, kernel_size: int, forget_bias: float):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2)
        with torch.no_grad():
            self.gates.bias[hidden : 2 * hidden].fill_(forget_bias)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        i, f, g, o = self.gates(torch.cat([x, h], 1)).chunk(4, 1)  # each (B, hidden, h, w)
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

    def step(self, frame: torch.Tensor, state):
        x = patchify(frame, self.config.patch_size)  # (B, p², H/p, W/p)
        new_state = []
        for cell, (h, c) in zip(self.cells, state):
            h, c = cell(x, h, c)
            new_state.append((h, c))
            x = h
        return x, new_state, frame.new_zeros(())
