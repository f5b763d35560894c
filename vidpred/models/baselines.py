"""Baselines every result is compared against. They have no parameters and need no training."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from .analogue import analogue_distances, pairwise_distances
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


@dataclass
class BlendConfig:
    alphas: tuple[float, ...] = ()  # α_t per predicted frame, least squares on the training split
    n_context: int = 30
    n_future: int = 15


class Blend(Predictor):
    """Per predicted frame t, ``α_t·last + (1 − α_t)·mean``: the best mix of the two other baselines.

    The α_t are fitted by least squares on the training split (:meth:`fit`), so this baseline learns
    two numbers per horizon from data and nothing from pixels. A learned model that only averages
    the past converges to it; beating it means predicting motion.
    """

    name, trainable, Config = "blend", False, BlendConfig

    def forward(self, context: torch.Tensor, n_future: int = 15) -> torch.Tensor:
        alphas = self.config.alphas
        if len(alphas) < n_future:
            raise ValueError(f"the blend baseline has {len(alphas)} fitted weights but {n_future} frames were "
                             "asked for: fit it on the training split first (Blend.fit(train_windows))")
        alpha = torch.tensor(alphas[:n_future], dtype=context.dtype, device=context.device).view(1, -1, 1, 1, 1)
        last, mean = context[:, -1:], context.mean(1, keepdim=True)  # (B, 1, 1, H, W) each
        return alpha * last + (1 - alpha) * mean  # (B, n_future, 1, H, W)

    @classmethod
    @torch.no_grad()
    def fit(cls, dataset: Dataset, batch_size: int = 64) -> Blend:
        """α_t = Σ (truth − mean)(last − mean) / Σ (last − mean)², summed over every training window."""
        numerator = denominator = None
        for context, future in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            last, mean = context[:, -1:].double(), context.mean(1, keepdim=True).double()
            gap = (last - mean).expand_as(future)  # (B, n_future, 1, H, W)
            num = ((future.double() - mean) * gap).sum(dim=(0, 2, 3, 4))  # (n_future,)
            den = (gap * gap).sum(dim=(0, 2, 3, 4))
            numerator = num if numerator is None else numerator + num
            denominator = den if denominator is None else denominator + den
        if numerator is None:
            raise ValueError("cannot fit the blend baseline: the training split has no windows")
        alphas = (numerator / denominator.clamp_min(1e-12)).clamp(0, 1)
        return cls(BlendConfig(alphas=tuple(round(float(a), 6) for a in alphas),
                               n_context=dataset[0][0].shape[0], n_future=len(alphas)))


@dataclass
class AnalogueConfig:
    window: int = 8  # frames compared
    temperature: float = 1e-5  # of the softmax over candidates, in units of mean squared pixel distance
    mirror: bool = True  # also the mirror candidates (False: forward analogues only)
    n_context: int = 30
    n_future: int = 15


class Analogue(Predictor):
    """The method of analogues (Lorenz, 1969): find where the past looked like now, and copy what came next.

    Each future frame is a softmax-weighted mix of the frames seen so far (the context, then its own
    predictions). A frame scores by how closely the ``window`` frames before it match the last
    ``window`` frames (*forward*: this happened before, so the same will follow), or the ``window``
    frames after it, read backwards, do (*mirror*: the same movement played backwards, so what came
    before it comes next; every repetition of an exercise turns back on itself). Distances are mean
    squared pixel differences; see :func:`vidpred.models.analogue.analogue_distances`. No parameters are
    learned: ``window`` and ``temperature`` were chosen on the validation split of the book profile.
    """

    name, trainable, Config = "analogue", False, AnalogueConfig

    def forward(self, context: torch.Tensor, n_future: int = 15) -> torch.Tensor:
        """Every prediction is a softmax mix of the inputs so far, and every input is the context or such a
        mix, so each input is a mix of the context frames: the rollout runs on those ``n_context`` mixing
        weights (``mix``), and the distance of a prediction to an input, ‖(c − c′)·X‖², comes from the
        context's Gram matrix G = X·Xᵀ as (c − c′)·G·(c − c′)ᵀ, in float64. The pixels are mixed once, at
        the end: one product instead of a pass over every pixel of every input at every step."""
        batch, n_context = context.shape[:2]
        length = n_context + n_future - 1  # every input of the rollout
        flat = context.flatten(2)  # (B, n_context, N)
        distances = context.new_zeros(batch, length, length)
        distances[:, :n_context, :n_context], gram = pairwise_distances(flat, gram=True)
        mix = gram.new_zeros(batch, length, n_context)  # each input as a mix of the context frames
        mix[:, :n_context] = torch.eye(n_context, dtype=gram.dtype, device=gram.device)
        predictions = []
        for t in range(n_context - 1, length):
            if t >= n_context:  # the previous prediction is the newest input: its distances to all inputs
                diff = mix[:, : t + 1] - mix[:, t : t + 1]  # (B, t + 1, n_context)
                row = ((diff @ gram) * diff).sum(2).clamp(min=0).div(flat.shape[2]).to(distances.dtype)
                distances[:, t, : t + 1] = row
                distances[:, : t + 1, t] = row
            forward, mirror = analogue_distances(distances, t, self.config.window)
            scores = -forward / self.config.temperature
            if self.config.mirror:
                scores = torch.logaddexp(scores, -mirror / self.config.temperature)
            # A context shorter than the window has no analogue at all: copy the newest frame.
            no_analogue = ~torch.isfinite(scores).any(1, keepdim=True)
            scores = scores.masked_fill(no_analogue, float("-inf"))
            scores[:, 0:1] = scores[:, 0:1].masked_fill(no_analogue, 0.0)
            weights = torch.softmax(scores, 1).flip(1)  # (B, t + 1), oldest first like the inputs
            predictions.append(torch.bmm(weights.to(mix.dtype)[:, None], mix[:, : t + 1])[:, 0])  # (B, n_context)
            if t + 1 < length:
                mix[:, t + 1] = predictions[-1]
        frames = torch.bmm(torch.stack(predictions, 1).to(flat.dtype), flat)  # (B, n_future, N)
        return frames.view(batch, n_future, *context.shape[2:])  # (B, n_future, 1, H, W)
