"""Scheduled sampling: which inputs of a recurrent rollout are ground truth and which the model's own
predictions, as training goes on (Bengio et al., 2015; the reverse schedule of PredRNN-V2)."""

from __future__ import annotations

import torch


def truth_masks(progress: float, batch: int, n_context: int, n_future: int, *, stop: float,
                reverse: bool, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Which inputs are ground truth (True) rather than the model's own last prediction.

    Returns (context_mask (B, n_context), future_mask (B, n_future)); position t says what is fed
    in to predict frame t + 1, so the first context frame is always ground truth.

    * Scheduled sampling (PredRNN v1): context always true; the future is true with probability
      ``1 - progress / stop`` (teacher forcing at the start, free-running from ``stop`` on).
    * Reverse scheduled sampling (PredRNN-V2): the context is true with probability rising from 0.5
      to 1 and the future with probability falling from 0.5 to 0, both reaching their end at ``stop``;
      learning to predict inside the context forces the encoder to model long-term dynamics.
    At ``progress ≥ stop`` training sees exactly what inference sees.
    """
    ramp = min(max(progress / stop, 0.0), 1.0) if stop > 0 else 1.0
    if reverse:
        p_context, p_future = 0.5 + 0.5 * ramp, 0.5 * (1 - ramp)
    else:
        p_context, p_future = 1.0, 1.0 - ramp
    context_mask = torch.rand(batch, n_context, device=device) < p_context
    context_mask[:, 0] = True
    future_mask = torch.rand(batch, n_future, device=device) < p_future
    return context_mask, future_mask
