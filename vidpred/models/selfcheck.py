"""Trusting a recurrent model's future only as far as it predicted the recent past: a read-out setting.

On its way to the future, a recurrent model predicts every context frame from the ones before it, at no
extra cost. Over the last ``RECENT`` context frames, compare those one-step predictions with copy-last's
(each frame predicted by the frame before it). Where the model did better, nothing changes; where it did
worse, it has not understood this video (on a clip of someone who lifts a cup and holds it, PredRNN redraws
the arm lowered, an earlier pose, from the first predicted frame on: chapter 8), and its future's departure
from the last frame is scaled down: ``last + w·(prediction − last)`` with ``w = min(1, tau · copy-last's
error / the model's error)``. With ``tau`` 1, a model that was twice as far off as copy-last keeps half of
its departure. It has no parameters, sees only the context, and changes nothing in training (the models
apply it in eval mode only); ``self_check`` in a model's config is ``tau`` (0: off).

It commutes with the hold-still read-out (:mod:`vidpred.models.stillness`): both scale the departure from the
last frame, one per window, the other per pixel.
"""

from __future__ import annotations

import torch

# Context frames whose one-step predictions are checked: a fifth of a second at the real footage's 25 frames per
# second. 3 and 10 did as well on the real validation split and left more harm on the unseen clips of
# shared/realclips, which took part in this one choice.
RECENT = 5


def trust(context: torch.Tensor, seen: torch.Tensor, tau: float, recent: int = RECENT) -> torch.Tensor:
    """How far to trust each window's future: (B, 1, 1, 1, 1) in [0, 1]. ``context`` (B, T, 1, H, W); ``seen``
    the model's predictions of context frames 1 … T − 1, (B, T − 1, 1, H, W)."""
    truth = context[:, -recent:].float()
    model_error = (seen[:, -recent:].float().clamp(0, 1) - truth).square().mean((1, 2, 3, 4))
    copy_error = (context[:, -recent - 1 : -1].float() - truth).square().mean((1, 2, 3, 4))
    return (tau * copy_error / model_error.clamp(min=1e-12)).clamp(max=1).view(-1, 1, 1, 1, 1)


def self_check(prediction: torch.Tensor, context: torch.Tensor, seen: torch.Tensor, tau: float) -> torch.Tensor:
    """``prediction`` (B, n_future, 1, H, W) pulled toward the last context frame in the windows whose recent
    past the model predicted worse than copy-last (:func:`trust`); unchanged with ``tau`` 0."""
    if not tau:
        return prediction
    last = context[:, -1:].to(prediction.dtype)
    return last + trust(context, seen, tau).to(prediction.dtype) * (prediction - last)
