"""PredRNN (Wang et al., 2017) with the PredRNN-V2 options (Wang et al., 2022).

Each spatiotemporal LSTM (ST-LSTM) cell keeps the usual temporal memory C, carried along time in
its own layer, and a spatiotemporal memory M that zigzags: up through the layers at one time step,
then from the top layer to the bottom layer of the next step. V2 adds two options:

* memory decoupling: a loss that pushes the increments of C and M (after a shared 1×1 adapter)
  towards orthogonality, so the two memories learn different things;
* reverse scheduled sampling (see :func:`vidpred.models.sampling.truth_masks`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import autocast_weights
from .recurrent import RecurrentPredictor


@dataclass
class PredRNNConfig:
    hidden: tuple[int, ...] = (16, 16)
    kernel_size: int = 3
    patch_size: int = 4
    forget_bias: float = 1.0
    sampling_stop: float = 0.3
    context_loss_weight: float = 1.0  # weight of next-frame errors inside the context vs the future
    output: str = "retrieve"  # "retrieve" (mix of past frames and a new one) | "gated"; retrieval.py
    analogue_window: int = 8  # "retrieve": inputs the analogue pointer compares (0: no pointer); retrieval.py
    hold_still: float = 0.0  # eval only: copy the last frame where the context is still (stillness.py; 0: off)
    self_check: float = 0.0  # eval only: trust the future as far as the recent past was predicted (selfcheck.py)
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

    def forward(self, x, h, c, m, projected=None, weights: dict | None = None):
        """``projected``: ``conv_x(x)`` when computed ahead (for all context frames at once). With
        ``weights`` (:meth:`merged_weights`) the lean step's arithmetic, the same function: both paths
        go through here, so forward hooks on a cell see every step either way."""
        if weights is not None:
            return self.lean_forward(x, h, c, m, projected, weights)
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

    def merged_weights(self) -> dict:
        """The cell's gate convolutions as the lean step runs them, built once per rollout.

        Gates in the order i, f, g, o, i′, f′, g′ (′: M's), the forget bias folded into the bias. The
        paper's cell convolves x, h and m separately (x feeds all seven gates, h the four of C and o, m
        the three of M) and adds the results. The lean step adds them inside the convolution instead:

        * ``gates``: one grouped convolution over ``[x, h, x, m]``: ``[x, h]`` → i, f, g, o and
          ``[x, m]`` → i′, f′, g′ (and a block of zeros: groups need equal widths), so the sums
          ``x·i + h·i`` happen in the convolution and no weight multiplies a zero input block;
        * ``x`` and ``hm``: the same, split into x's part (the first layer runs it for all context
          frames at once) and a grouped convolution over ``[h, m]``.

        One gate convolution a step instead of three; ``conv_o`` and ``conv_last`` stay as they are
        (merging the 1×1 ``conv_last`` into the k×k ``conv_o`` would multiply its work by k²)."""
        n, k = self.hidden, self.conv_x.kernel_size[0]
        # conv_x's gates come as i, f, g, i′, f′, g′, o: move o after g
        wx, bx = (torch.cat([w[: 3 * n], w[6 * n :], w[3 * n : 6 * n]])
                  for w in (self.conv_x.weight, self.conv_x.bias))
        wh, wm = self.conv_h.weight, self.conv_m.weight
        zero_gates = wh.new_zeros(n, wx.shape[1] + n, k, k)  # the fourth gate of M's group
        forget = torch.zeros(8 * n, device=wx.device)
        forget[n : 2 * n] = forget[5 * n : 6 * n] = self.forget_bias
        bias_hm = torch.cat([self.conv_h.bias, self.conv_m.bias, wh.new_zeros(n)]) + forget
        merged = {
            "gates": torch.cat([torch.cat([wx[: 4 * n], wh], 1), torch.cat([wx[4 * n :], wm], 1), zero_gates]),
            "gates_bias": torch.cat([bx, bx.new_zeros(n)]) + bias_hm,
            "x": wx, "x_bias": bx,
            "hm": torch.cat([wh, wm, wh.new_zeros(n, n, k, k)]), "hm_bias": bias_hm,
        }
        return dict(zip(merged, autocast_weights(*merged.values())))

    def lean_forward(self, x, h, c, m, projected, weights: dict):
        """:meth:`forward` with :meth:`merged_weights`; ``projected``: x's part computed ahead."""
        pad = self.conv_x.padding
        if projected is None:
            gates = F.conv2d(torch.cat([x, h, x, m], 1), weights["gates"], weights["gates_bias"], padding=pad,
                             groups=2)[:, : 7 * self.hidden]
        else:
            hm = F.conv2d(torch.cat([h, m], 1), weights["hm"], weights["hm_bias"], padding=pad, groups=2)
            gates = projected + hm[:, : 7 * self.hidden]
        i, f, g, o, i_m, f_m, g_m = gates.chunk(7, 1)
        delta_c = torch.sigmoid(i) * torch.tanh(g)
        c = torch.sigmoid(f) * c + delta_c
        delta_m = torch.sigmoid(i_m) * torch.tanh(g_m)
        m = torch.sigmoid(f_m) * m + delta_m
        memory = torch.cat([c, m], 1)  # (B, 2·hidden, h, w)
        h = torch.sigmoid(o + self.conv_o(memory)) * torch.tanh(self.conv_last(memory))
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

    def cell_weights(self):
        return [cell.merged_weights() for cell in self.cells]

    def project_input(self, patches: torch.Tensor, weights=None) -> torch.Tensor:
        """The first cell's input convolution of (B, T, p², h, w) patched frames, all T at once (with
        ``weights``, :meth:`SpatioTemporalLSTMCell.merged_weights`'s x part, gates in its order)."""
        flat = patches.flatten(0, 1)
        if weights is None:
            out = self.cells[0].conv_x(flat)
        else:
            out = F.conv2d(flat, weights[0]["x"], weights[0]["x_bias"], padding=self.cells[0].conv_x.padding)
        return out.unflatten(0, patches.shape[:2])

    def step(self, x: torch.Tensor, state, projected: torch.Tensor | None = None, weights=None):
        layers, m = state  # m left the top layer at the previous step: the zigzag
        new_layers, aux = [], x.new_zeros(())  # x: the input frame in patches, (B, p², H/p, W/p)
        for i, (cell, (h, c)) in enumerate(zip(self.cells, layers)):
            h, c, m, delta_c, delta_m = cell(x, h, c, m, projected, None if weights is None else weights[i])
            if self.config.decouple_beta > 0 and self.training:
                if weights is None:
                    aux = aux + self.config.decouple_beta * cell.decoupling_loss(delta_c, delta_m)
                else:  # the lean step computes it for all steps at once: rollout_aux
                    weights[i].setdefault("deltas", []).append((delta_c, delta_m))
            new_layers.append((h, c))
            x, projected = h, None
        return x, (new_layers, m), aux / len(self.cells)

    def rollout_aux(self, weights) -> torch.Tensor:
        """The decoupling loss of every step the lean step ran, summed over steps as :meth:`step` would
        have: one adapter convolution per cell for all steps' increments instead of two per step."""
        total = 0.0
        for cell, cell_weights in zip(self.cells, weights):
            deltas = cell_weights.pop("deltas", [])
            if deltas:
                delta_c, delta_m = (torch.cat(parts) for parts in zip(*deltas))  # (steps·B, hidden, h, w)
                total = total + len(deltas) * self.config.decouple_beta * cell.decoupling_loss(delta_c, delta_m)
        return total / len(self.cells)


@dataclass
class PredRNNV2Config(PredRNNConfig):
    decouple_beta: float = 0.1  # the weight the official PredRNN-V2 code uses
    reverse_scheduled_sampling: bool = True


class PredRNNV2(PredRNN):
    """PredRNN with both V2 options on by default: its own name, so results and checkpoints say which."""

    name = "predrnn_v2"
    Config = PredRNNV2Config
