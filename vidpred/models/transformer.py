"""A PredFormer-style pure-attention predictor with factorized temporal and spatial attention.

Each frame is cut into patches (patch 16 → 4×4 = 16 tokens per 64×64 frame). The 30 context
frames are embedded; the 15 future frames start as *query tokens*: the embedding of the last
context frame plus a learned embedding of their position in time. Blocks alternate causal
attention along time (each patch location attends to itself at earlier or equal times) and
attention across the patches of one frame, so every future frame is predicted in one pass, never
sees ground truth after the context, and the k-th prediction does not depend on how many frames
were asked for. Non-autoregressive decoding avoids the train/test mismatch of feeding back
predictions and trains in one parallel pass, which matters on a CPU.

Output (``output``): by default "retrieve": every patch of a future frame is a softmax mixture of the
same patch in the 30 context frames and one newly drawn patch, scored by a learned prior plus a
content pointer (the future token's query against each context token's key); exercise is periodic,
so the future pose is usually already in the context. With ``fallback`` (default) each horizon t
then mixes in, with a learned gate g_t, a learned blend a_t·last + (1 − a_t)·mean: the retrieval
alone leaves the last frame too early (at the first two horizons it did worse than the blend
baseline), and the gate lets the model keep the baseline where retrieval does not pay. With
``analogue`` (default) the analogue baseline's prediction of each future frame (see
:class:`vidpred.models.baselines.Analogue`) is one more candidate the read-out can point at, patch by
patch: the model learns where to trust the method of analogues and where its own retrieval. "mix"
(per-pixel weights over last frame, context mean and a new frame), "residual" (``last + Δ``),
"direct" and "gated" (``g·last + (1 − g)·new``) are there to compare; chapter 6 measures them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Predictor, full_precision, init_retrieval_bias


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
    image_size: int = 64
    n_context: int = 30
    n_future: int = 15


OUT_CHANNELS = {"mix": 4, "gated": 2, "direct": 1, "residual": 1, "retrieve": 1}  # head outputs per pixel


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


class TransformerPredictor(Predictor):
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
        # "retrieve" adds, per patch, a score for each context frame and one for the new frame.
        extra = config.n_context + 1 + config.analogue if config.output == "retrieve" else 0
        self.head = nn.Linear(config.dim, OUT_CHANNELS[config.output] * p * p + extra)
        if config.output == "retrieve":
            init_retrieval_bias(self.head.bias)
            if config.analogue:  # start by trusting the analogue baseline (see vidpred.models.baselines)
                with torch.no_grad():
                    self.head.bias[0] = 0.0
                    self.head.bias[config.n_context] = 4.0
            # A pointer: each future patch scores every context frame at its place by the match of
            # its query with their keys (near zero at the start: training starts from the head's prior).
            self.query = nn.Linear(config.dim, config.dim, bias=False)
            self.key = nn.Linear(config.dim, config.dim, bias=False)
            nn.init.normal_(self.query.weight, std=0.01)
            if config.fallback:
                # A learned per-horizon fallback: g_t·(a_t·last + (1 − a_t)·mean) + (1 − g_t)·retrieved.
                # a_t starts falling from 0.9 to 0.1 over the horizons (the shape of the blend's
                # least-squares weights), g_t at 0.12; both are learned from the training loss.
                self.fallback_gate = nn.Parameter(torch.full((config.n_future,), -2.0))
                self.fallback_alpha = nn.Parameter(torch.linspace(2.2, -2.2, config.n_future))
        if config.output == "retrieve" and config.analogue:
            from .baselines import Analogue, AnalogueConfig

            self.analogue_baseline = Analogue(AnalogueConfig(n_context=config.n_context, n_future=config.n_future))
        if config.output == "residual":
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

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

    def retrieve_frames(self, head: torch.Tensor, patches: torch.Tensor,
                        analogue: torch.Tensor | None = None) -> torch.Tensor:
        """Each future frame as per-patch softmax weights over the context frames (newest first), the
        analogue baseline's frame when given, and a newly drawn frame (see
        :func:`vidpred.models.base.retrieve`). ``head`` is (B, n_future, N, n_context + 1 + p²), one
        more score with ``analogue`` (B, n_future, N, p²); ``patches`` is the context in patches,
        (B, n_context, N, p²)."""
        n_memory = patches.shape[1]
        n_scores = n_memory + 1 + (analogue is not None)
        weights = torch.softmax(head[..., :n_scores], -1)  # (B, n_future, N, n_scores)
        if getattr(self, "record", None) is not None:  # see vidpred.models.base.retrieval_weights
            self.record.append(weights.mean(2))
        memory = patches.flip(1)  # newest first
        out = torch.einsum("bfnk,bknp->bfnp", weights[..., :n_memory], memory)  # (B, n_future, N, p²)
        if analogue is not None:
            out = out + weights[..., n_memory : n_memory + 1] * analogue
        out = out + weights[..., -1:] * head[..., n_scores:]
        return self.from_patches(out, 1)  # (B, n_future, 1, H, W)

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
            return self.read(context, self.norm(tokens).float(), patches, n_future)

    def read(self, context: torch.Tensor, tokens: torch.Tensor, patches: torch.Tensor, n_future: int) -> torch.Tensor:
        """The future frames (B, n_future, 1, H, W) from the final tokens (B, n_context + n_future, N, D)."""
        cfg, n_context = self.config, context.shape[1]
        head = self.head(tokens[:, n_context:])  # (B, n_future, N, channels)
        if cfg.output == "retrieve":
            query, key = self.query(tokens[:, n_context:]), self.key(tokens[:, :n_context].flip(1))  # newest first
            match = torch.einsum("bfnd,bknd->bfnk", query, key) / cfg.dim**0.5  # (B, n_future, N, n_context)
            head = torch.cat([head[..., :n_context] + match, head[..., n_context:]], -1)
            analogue = None
            if cfg.analogue:  # float32 under autocast too: it is a baseline, and bf16 makes it slower
                with torch.no_grad(), full_precision(context):
                    analogue = self.to_patches(self.analogue_baseline(context.float(), n_future))
            out = self.retrieve_frames(head, patches, analogue)
            if cfg.fallback:
                gate = torch.sigmoid(self.fallback_gate[:n_future]).view(1, -1, 1, 1, 1)
                alpha = torch.sigmoid(self.fallback_alpha[:n_future]).view(1, -1, 1, 1, 1)
                blend = alpha * context[:, -1:] + (1 - alpha) * context.mean(1, keepdim=True)
                out = gate * blend + (1 - gate) * out
            return out.clamp(0, 1) if not self.training else out
        out = self.from_patches(head, OUT_CHANNELS[cfg.output])
        last = context[:, -1:]  # (B, 1, 1, H, W)
        if cfg.output == "mix":  # per-pixel softmax weights over [last frame, context mean, new frame]
            weights = torch.softmax(out[:, :, :3], dim=2)  # (B, n_future, 3, H, W)
            frame = out[:, :, 3:]
            out = weights[:, :, :1] * last + weights[:, :, 1:2] * context.mean(1, keepdim=True) + weights[:, :, 2:] * frame
        elif cfg.output == "gated":
            gate, frame = out[:, :, :1], out[:, :, 1:]
            out = torch.sigmoid(gate) * last + (1 - torch.sigmoid(gate)) * frame
        elif cfg.output == "residual":
            out = last + out
        return out.clamp(0, 1) if not self.training else out  # (B, n_future, 1, H, W)
