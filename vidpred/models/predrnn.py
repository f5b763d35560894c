"""PredRNN (Wang et al., 2017) with the PredRNN-V2 options (Wang et al., 2022).

Each spatiotemporal LSTM (ST-LSTM) cell keeps the usual temporal memory C, carried along time in
its own layer, and a spatiotemporal memory M that zigzags: up through the layers at one time step,
then from the top layer to the bottom layer of the next step. V2 adds two options:

* memory decoupling: a loss that pushes the increments of C and M (after a shared 1×1 adapter)
  towards orthogonality, so the two memories learn different things;
* reverse scheduled sampling (see :func:`vidpred.models.base.truth_masks`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import RecurrentPredictor


@dataclass
class PredRNNConfig:
    hidden: tuple[int, ...] = (16, 16)
    kernel_size: int = 3
    patch_size: int = 4
    forget_bias: float = 1.0
    sampling_stop: float = 0.3
    context_loss_weight: float = 1.0  # weight of next-frame errors inside the context vs the future
    output: str = "retrieve"  # "retrieve" (mix of past frames and a new one) | "gated"; see base.py
    analogue_window: int = 8  # "retrieve": inputs the analogue pointer compares (0: no pointer); base.py
    decouple_beta: float = 0.0  # weight of the V2 decoupling loss (0 = PredRNN v1)
    reverse_scheduled_sampling: bool = False  # V2's sampling schedule
    n_context: int = 30
    n_future: int = 15


class SpatioTemporalLSTMCell(nn.Module):
    def __init__(self, in_channels: int, hidden: int, kernel_size: int, forget_bias: float,
                 decoupling: bool):
        super().__init__()
        pad = kernel_size // 2
        self.hidden, self.forget_bias = hidden, forget_bias
        self.conv_x = nn.Conv2d(in_channels, 7 * hidden, kernel_size, padding=pad)
        self.conv_h = nn.Conv2d(hidden, 4 * hidden, kernel_size, padding=pad)
        self.conv_m = nn.Conv2d(hidden, 3 * hidden, kernel_size, padding=pad)
        self.conv_o = nn.Conv2d(2 * hidden, hidden, kernel_size, padding=pad)
        self.conv_last = nn.Conv2d(2 * hidden, hidden, 1)
        # V2 decoupling: a shared adapter maps both increments into one space before comparing.
        self.adapter = nn.Conv2d(hidden, hidden, 1, bias=False) if decoupling else None

    def forward(self, x, h, c, m, projected=None):
        """``projected``: ``conv_x(x)`` when computed ahead (for all context frames at once)."""
        xi, xf, xg, xi_m, xf_m, xg_m, xo = (self.conv_x(x) if projected is None else projected).chunk(7, 1)
        hi, hf, hg, ho = self.conv_h(h).chunk(4, 1)
        mi, mf, mg = self.conv_m(m).chunk(3, 1)
        # Temporal memory C: a standard LSTM update driven by x and h.
        delta_c = torch.sigmoid(xi + hi) * torch.tanh(xg + hg)
        c = torch.sigmoid(xf + hf + self.forget_bias) * c + delta_c
        # Spatiotemporal memory M: the same update driven by x and the M that arrived from below.
        delta_m = torch.sigmoid(xi_m + mi) * torch.tanh(xg_m + mg)
        m = torch.sigmoid(xf_m + mf + self.forget_bias) * m + delta_m
        memory = torch.cat([c, m], 1)  # (B, 2·hidden, h, w)
        o = torch.sigmoid(xo + ho + self.conv_o(memory))
        h = o * torch.tanh(self.conv_last(memory))
        return h, c, m, delta_c, delta_m

    def decoupling_loss(self, delta_c: torch.Tensor, delta_m: torch.Tensor) -> torch.Tensor:
        """Mean |cosine similarity| per channel between the adapted memory increments."""
        dc = F.normalize(self.adapter(delta_c).flatten(2), dim=2)  # (B, hidden, h·w)
        dm = F.normalize(self.adapter(delta_m).flatten(2), dim=2)
        return (dc * dm).sum(2).abs().mean()


class PredRNN(RecurrentPredictor):
    name = "predrnn"
    Config = PredRNNConfig

    def __init__(self, config: PredRNNConfig):
        super().__init__(config)
        if len(set(config.hidden)) != 1:
            raise ValueError("PredRNN passes M between layers, so every layer needs the same width")
        p2 = config.patch_size**2
        widths = (p2, *config.hidden)
        self.cells = nn.ModuleList(
            SpatioTemporalLSTMCell(widths[i], widths[i + 1], config.kernel_size, config.forget_bias,
                                   decoupling=config.decouple_beta > 0)
            for i in range(len(config.hidden))
        )
        self.make_head(config.hidden[-1])  # self.head (and the pointer): see RecurrentPredictor.readout

    def init_state(self, batch: int, like: torch.Tensor):
        size = like.shape[-1] // self.config.patch_size
        zeros = like.new_zeros(batch, self.config.hidden[0], size, size)
        return [(zeros, zeros) for _ in self.cells], zeros  # per-layer (h, c), and M

    def project_input(self, patches: torch.Tensor) -> torch.Tensor:
        """The first cell's input convolution of (B, T, p², h, w) patched frames, all T at once."""
        return self.cells[0].conv_x(patches.flatten(0, 1)).unflatten(0, patches.shape[:2])

    def step(self, x: torch.Tensor, state, projected: torch.Tensor | None = None):
        layers, m = state  # m left the top layer at the previous step: the zigzag
        new_layers, aux = [], x.new_zeros(())  # x: the input frame in patches, (B, p², H/p, W/p)
        for cell, (h, c) in zip(self.cells, layers):
            h, c, m, delta_c, delta_m = cell(x, h, c, m, projected)
            if self.config.decouple_beta > 0 and self.training:
                aux = aux + self.config.decouple_beta * cell.decoupling_loss(delta_c, delta_m)
            new_layers.append((h, c))
            x, projected = h, None
        return x, (new_layers, m), aux / len(self.cells)


@dataclass
class PredRNNV2Config(PredRNNConfig):
    decouple_beta: float = 0.1  # the weight the official PredRNN-V2 code uses
    reverse_scheduled_sampling: bool = True


class PredRNNV2(PredRNN):
    """PredRNN with both V2 options on by default: its own name, so results and checkpoints say which."""

    name = "predrnn_v2"
    Config = PredRNNV2Config
