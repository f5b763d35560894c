"""Holding still what does not move: a read-out setting for the parts of a scene the context shows still.

A model trained on people exercising expects things to move, and it redraws a still background a little
off; copy-last gets those pixels exactly right. For each pixel, the largest frame-to-frame change over
the whole context, spread over a ``STILL_WINDOW`` × ``STILL_WINDOW`` neighbourhood (motion next to a pixel
counts: an edge about to move in), gives a weight ``w = max(0, 1 − motion / threshold)`` and the
prediction becomes ``w·last + (1 − w)·prediction``: exactly the last frame where nothing changed, the model's
frame wherever the context moved by ``threshold`` or more. It has no parameters and changes nothing in
training (the models apply it in eval mode only); ``threshold`` is chosen on the validation split after
training (``hold_still`` in a model's config; 0: off).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

STILL_WINDOW = 9  # pixels: the neighbourhood whose motion counts (chosen on the real validation split)


def stillness(context: torch.Tensor, threshold: float, window: int = STILL_WINDOW) -> torch.Tensor:
    """How still each pixel is, from the context (B, T, 1, H, W): weights (B, 1, 1, H, W) in [0, 1], 1 where
    no pixel within ``window // 2`` changed at all between two context frames, 0 where one changed by
    ``threshold`` or more."""
    change = (context[:, 1:] - context[:, :-1]).abs().amax(1)  # (B, 1, H, W): the largest change at each pixel
    change = F.max_pool2d(change, window, stride=1, padding=window // 2)  # the largest within the neighbourhood
    return (1 - change / threshold).clamp(min=0)[:, None]


def hold_still(prediction: torch.Tensor, context: torch.Tensor, threshold: float) -> torch.Tensor:
    """``prediction`` (B, n_future, 1, H, W) pulled toward the last context frame where the context is still
    (:func:`stillness`); unchanged with ``threshold`` 0."""
    if not threshold:
        return prediction
    weight = stillness(context.to(prediction.dtype), threshold)
    return weight * context[:, -1:].to(prediction.dtype) + (1 - weight) * prediction


@contextmanager
def read_out_off(model):
    """``model`` predicting without its hold-still read-out inside the block, which gets the model's threshold (0
    for a model without one: a baseline), so a caller can apply :func:`hold_still` itself to the same prediction;
    the threshold is put back afterwards, whatever happens."""
    config = getattr(model, "config", None)
    threshold = getattr(config, "hold_still", 0) or 0
    if not threshold:
        yield 0.0
        return
    config.hold_still = 0.0
    try:
        yield threshold
    finally:
        config.hold_still = threshold
