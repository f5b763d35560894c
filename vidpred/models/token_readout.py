"""The transformer's read-outs: how the final tokens of the future frames become pixels.

* "retrieve" (the default): every patch of a future frame is a softmax mixture of the same patch in the
  context frames (a learned prior plus a content pointer: the future token's query against each context
  token's key), optionally the analogue baseline's frame, and one newly drawn patch; with ``fallback``, a
  learned per-horizon blend of last frame and context mean mixed in by a learned gate.
* "direct" (the plain predictor: the head draws every pixel), "residual" (``last + Δ``), "gated"
  (``g·last + (1 − g)·new``) and "mix" (per-pixel weights over last frame, context mean and a new frame),
  to compare; chapter 6 measures them.

:class:`TokenReadout` is mixed into :class:`vidpred.models.transformer.TransformerPredictor`.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import full_precision
from .retrieval import init_retrieval_bias

OUT_CHANNELS = {"mix": 4, "gated": 2, "direct": 1, "residual": 1, "retrieve": 1}  # head outputs per pixel


class TokenReadout:
    """The head over the final tokens (:meth:`make_head`) and the read-out it feeds (:meth:`read`)."""

    def make_head(self, config) -> None:
        """``self.head`` for ``config.output``, and for "retrieve" the pointer, fallback and analogue parts."""
        p = config.patch_size
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

    def retrieve_frames(self, head: torch.Tensor, patches: torch.Tensor,
                        analogue: torch.Tensor | None = None) -> torch.Tensor:
        """Each future frame as per-patch softmax weights over the context frames (newest first), the
        analogue baseline's frame when given, and a newly drawn frame (see
        :func:`vidpred.models.retrieval.retrieve`). ``head`` is (B, n_future, N, n_context + 1 + p²), one
        more score with ``analogue`` (B, n_future, N, p²); ``patches`` is the context in patches,
        (B, n_context, N, p²)."""
        n_memory = patches.shape[1]
        n_scores = n_memory + 1 + (analogue is not None)
        weights = torch.softmax(head[..., :n_scores], -1)  # (B, n_future, N, n_scores)
        if getattr(self, "record", None) is not None:  # see vidpred.models.retrieval.retrieval_weights
            self.record.append(weights.mean(2))
        memory = patches.flip(1)  # newest first
        out = torch.einsum("bfnk,bknp->bfnp", weights[..., :n_memory], memory)  # (B, n_future, N, p²)
        if analogue is not None:
            out = out + weights[..., n_memory : n_memory + 1] * analogue
        out = out + weights[..., -1:] * head[..., n_scores:]
        return self.from_patches(out, 1)  # (B, n_future, 1, H, W)

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
