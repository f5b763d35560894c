"""A PredFormer-style pure-attention predictor with factorized temporal and spatial attention.

Each frame is cut into patches (patch 16 → 4×4 = 16 tokens per 64×64 frame). The 30 context
frames are embedded; the 15 future frames start as *query tokens*: the embedding of the last
context frame plus a learned embedding of their position in time. Blocks alternate causal
attention along time (each patch location attends to itself at earlier or equal times) and
attention across the patches of one frame, so every future frame is predicted in one pass, never
sees ground truth after the context, and the k-th prediction does not depend on how many frames
were asked for. Non-autoregressive decoding avoids the train/test mismatch of feeding back
predictions and trains in one parallel pass, which matters on a CPU.

The read-out (``output``, in :mod:`vidpred.models.token_readout`) turns the final tokens of the future
frames into pixels: by default it points at the context frames patch by patch (exercise is periodic, so
the future pose is usually already there); "direct" draws every pixel from the head, as the plain model
does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Predictor, full_precision
from .stillness import hold_still
from .token_readout import OUT_CHANNELS, TokenReadout


@dataclass
class TransformerConfig:
    dim: int = 64
    depth: int = 4
    heads: int = 4
    patch_size: int = 16
    mlp_ratio: int = 4
    dropout: float = 0.0
    output: str = "retrieve"  # "retrieve" | "mix" | "gated" | "direct" | "residual"
    fallback: bool = True  # "retrieve": a learned per-horizon mix with last frame and context mean
    analogue: bool = True  # "retrieve": the analogue baseline's frame is one more candidate to point at
    hold_still: float = 0.0  # eval only: copy the last frame where the context is still (stillness.py; 0: off)
    image_size: int = 64
    n_context: int = 30
    n_future: int = 15



@functools.lru_cache(maxsize=8)
def _attention_bias(length: int, causal: bool, device: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(L, L) added to the attention scores: with ``causal``, −inf where key j comes after query i (what
    causal attention masks out), else 0."""
    return torch.full((length, length), float("-inf") if causal else 0.0, device=device, dtype=dtype).triu(1)


class Attention(nn.Module):
    # On a CPU, attention as three explicit steps (scores, softmax, weighted sum): at these lengths (16
    # patches, 45 frames) and head width 16 the fused kernel is slower (`vidpred bench models`); False:
    # always F.scaled_dot_product_attention (the reference, and the choice on a GPU).
    explicit_on_cpu: bool = True

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        batch, length, dim = x.shape  # (B', L, D)
        qkv = self.qkv(x)  # (B', L, 3·D)
        if self.explicit_on_cpu and x.device.type == "cpu":
            return self.proj(self.attend(qkv, causal))
        q, k, v = qkv.view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=dropout)  # (B', heads, L, w)
        return self.proj(out.transpose(1, 2).reshape(batch, length, dim))

    def attend(self, qkv: torch.Tensor, causal: bool) -> torch.Tensor:
        """Attention as scores, softmax and weighted sum in ``qkv``'s dtype (bfloat16 under autocast), the
        softmax computed in float32. ``qkv`` (B', L, 3·D) -> (B', L, D); one copy brings q, k and v into
        the layout the batched products read, one brings the result back. The scale and the causal mask
        go inside the first product: −inf added, no masked copy of the scores."""
        batch, length, dim = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
        heads, width = self.heads, dim // self.heads
        q, k, v = (qkv.view(batch, length, 3, heads, width).permute(2, 0, 3, 1, 4)  # (3, B', heads, L, w)
                   .reshape(3, batch * heads, length, width).unbind(0))  # (reshape copies here)
        bias = _attention_bias(length, causal, str(qkv.device), qkv.dtype).expand(batch * heads, length, length)
        scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=width**-0.5)  # (B'·heads, L, L)
        weights = torch.softmax(scores, -1, dtype=torch.float32).to(v.dtype)
        weights = F.dropout(weights, self.dropout if self.training else 0.0)
        out = torch.bmm(weights, v).view(batch, heads, length, width)
        return out.transpose(1, 2).reshape(batch, length, dim)


class FactorizedBlock(nn.Module):
    """Temporal attention (causal, per patch), spatial attention (per frame), then an MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.norm_t, self.norm_s, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.temporal = Attention(dim, heads, dropout)
        self.spatial = Attention(dim, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, time, n, dim = tokens.shape  # (B, T, N, D)
        along_time = tokens.transpose(1, 2).reshape(batch * n, time, dim)  # (B·N, T, D)
        along_time = along_time + self.temporal(self.norm_t(along_time), causal=True)
        tokens = along_time.view(batch, n, time, dim).transpose(1, 2).reshape(batch * time, n, dim)
        tokens = tokens + self.spatial(self.norm_s(tokens), causal=False)  # (B·T, N, D)
        tokens = tokens + self.mlp(self.norm_mlp(tokens))
        return tokens.view(batch, time, n, dim)


class TransformerPredictor(TokenReadout, Predictor):
    name = "transformer"
    Config = TransformerConfig

    @property
    def lean_step(self) -> bool:
        """True (the default): attention as explicit steps on a CPU (:class:`Attention`); False: the
        reference, the fused kernel everywhere (``vidpred bench models`` times one against the other)."""
        return all(m.explicit_on_cpu for m in self.modules() if isinstance(m, Attention))

    @lean_step.setter
    def lean_step(self, lean: bool) -> None:
        for module in self.modules():
            if isinstance(module, Attention):
                module.explicit_on_cpu = lean

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        if config.output not in OUT_CHANNELS:
            raise ValueError(f"output must be one of {', '.join(OUT_CHANNELS)}, not {config.output!r}")
        p, side = config.patch_size, config.image_size // config.patch_size
        self.n_patches = side * side
        self.embed = nn.Linear(p * p, config.dim)
        self.pos_space = nn.Parameter(torch.randn(1, 1, self.n_patches, config.dim) * 0.02)
        self.pos_time = nn.Parameter(torch.randn(1, config.n_context + config.n_future, 1, config.dim) * 0.02)
        self.blocks = nn.ModuleList(
            FactorizedBlock(config.dim, config.heads, config.mlp_ratio, config.dropout) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(config.dim)
        self.make_head(config)  # the read-out: token_readout.py

    def to_patches(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 1, H, W) -> (B, T, N, p²)."""
        p = self.config.patch_size
        b, t, c, h, w = frames.shape
        x = frames.reshape(b, t, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
        return x.reshape(b, t, (h // p) * (w // p), c * p * p)

    def from_patches(self, patches: torch.Tensor, channels: int) -> torch.Tensor:
        """(B, T, N, C·p²) -> (B, T, C, H, W)."""
        p, side = self.config.patch_size, self.config.image_size // self.config.patch_size
        b, t = patches.shape[:2]
        x = patches.reshape(b, t, side, side, channels, p, p).permute(0, 1, 4, 2, 5, 3, 6)
        return x.reshape(b, t, channels, side * p, side * p)

    def forward(self, context: torch.Tensor, n_future: int = 15) -> torch.Tensor:
        cfg = self.config
        n_context = context.shape[1]
        if n_context != cfg.n_context or n_future > cfg.n_future:
            raise ValueError(f"this transformer was built for {cfg.n_context} context frames and at most "
                             f"{cfg.n_future} future frames, not {n_context} and {n_future}")
        patches = self.to_patches(context)  # (B, 30, N, p²)
        tokens = self.embed(patches)  # (B, 30, N, D)
        queries = tokens[:, -1:].expand(-1, n_future, -1, -1)  # (B, n_future, N, D)
        tokens = torch.cat([tokens, queries], 1) + self.pos_space + self.pos_time[:, : n_context + n_future]
        for block in self.blocks:
            tokens = block(tokens)
        with full_precision(tokens):  # the read-out forms the pixels: float32 under autocast too
            out = self.read(context, self.norm(tokens).float(), patches, n_future)
        return out if self.training else hold_still(out, context, cfg.hold_still)  # (B, n_future, 1, H, W)
