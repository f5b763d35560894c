"""What every predictor shares: the contract, patch reshaping and scheduled-sampling masks."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn


class Predictor(nn.Module):
    """The contract the Trainer and the evaluation rely on.

    ``forward(context (B, n_context, 1, H, W), n_future) -> (B, n_future, 1, H, W)`` in [0, 1], and
    ``training_loss(context, future, progress) -> (loss, logs)`` with ``progress`` ∈ [0, 1] the
    fraction of training done (it drives scheduled sampling). Nothing else is assumed.
    """

    name: str = ""
    trainable: bool = True

    def __init__(self, config):
        super().__init__()
        self.config = config

    def config_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self.config).items()}

    def training_loss(self, context: torch.Tensor, future: torch.Tensor, progress: float):
        prediction = self(context, future.shape[1])
        loss = F.mse_loss(prediction, future)
        return loss, {"mse": loss.detach()}


def patchify(frames: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Space-to-depth: (B, C, H, W) -> (B, C·p², H/p, W/p)."""
    return F.pixel_unshuffle(frames, patch_size) if patch_size > 1 else frames


def unpatchify(patches: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Depth-to-space: (B, C·p², H/p, W/p) -> (B, C, H, W)."""
    return F.pixel_shuffle(patches, patch_size) if patch_size > 1 else patches


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


def blend_output(frame: torch.Tensor, head: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Next frame from the head's 2·p² channels: a per-pixel gate between the input frame and a new frame.

    ``g·frame + (1 − g)·new`` starts half way between copying and drawing, so the model neither
    starts stuck at copy-last (a zero-initialised residual) nor has to redraw the static background.
    """
    gate, new = unpatchify(head, patch_size).chunk(2, 1)  # (B, 1, H, W) each
    gate = torch.sigmoid(gate)
    return gate * frame + (1 - gate) * new


class RecurrentPredictor(Predictor):
    """Frame-by-frame rollout shared by ConvLSTM and PredRNN.

    Subclasses implement ``init_state(batch, like)`` and ``step(frame, state) -> (next_frame,
    state, aux_loss)``. At step t the input is frame t (ground truth or the previous prediction)
    and the output is the prediction of frame t + 1, so nothing at or after t + 1 is ever seen.
    """

    def rollout(self, context: torch.Tensor, future: torch.Tensor | None, n_future: int,
                masks: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Predictions of frames 1 … n_context + n_future − 1, (B, T − 1, 1, H, W), and the
        auxiliary loss averaged over steps. Without ``masks`` the future is the model's own (inference)."""
        batch, n_context = context.shape[:2]
        state = self.init_state(batch, context)
        predictions, aux_total = [], context.new_zeros(())
        # With an all-true context mask (plain scheduled sampling) the context is fed as is: a
        # torch.where would tie every input to the previous prediction and double backward's work.
        mix_context = masks is not None and not bool(masks[0].all())
        for t in range(n_context + n_future - 1):
            if t < n_context:
                frame = context[:, t]
                if mix_context and t > 0:
                    keep = masks[0][:, t].view(-1, 1, 1, 1)
                    frame = torch.where(keep, frame, predictions[-1])
            elif masks is not None and future is not None:
                keep = masks[1][:, t - n_context].view(-1, 1, 1, 1)
                frame = torch.where(keep, future[:, t - n_context], predictions[-1])
            else:
                frame = predictions[-1]
            next_frame, state, aux = self.step(frame, state)
            predictions.append(next_frame)
            aux_total = aux_total + aux
        return torch.stack(predictions, 1), aux_total / len(predictions)

    def forward(self, context: torch.Tensor, n_future: int = 15) -> torch.Tensor:
        predictions, _ = self.rollout(context, None, n_future)
        return predictions[:, context.shape[1] - 1 :].clamp(0, 1)  # (B, n_future, 1, H, W)

    def masks(self, progress: float, context: torch.Tensor, n_future: int):
        cfg = self.config
        return truth_masks(progress, context.shape[0], context.shape[1], n_future,
                           stop=cfg.sampling_stop, reverse=getattr(cfg, "reverse_scheduled_sampling", False),
                           device=context.device)

    def training_loss(self, context: torch.Tensor, future: torch.Tensor, progress: float):
        masks = self.masks(progress, context, future.shape[1])
        predictions, aux = self.rollout(context, future, future.shape[1], masks)
        n_seen = context.shape[1] - 1  # predictions of frames 1 … n_context − 1 are inside the context
        context_mse = F.mse_loss(predictions[:, :n_seen], context[:, 1:])
        future_mse = F.mse_loss(predictions[:, n_seen:], future)
        # Next-frame prediction inside the context is easy and plentiful; weighting it down keeps
        # the loss about the future. Weight 1 is the plain mean over all frames.
        w = self.config.context_loss_weight
        mse = (w * n_seen * context_mse + future.shape[1] * future_mse) / (w * n_seen + future.shape[1])
        loss = mse + aux
        return loss, {"mse": mse.detach(), "future_mse": future_mse.detach(), "aux": aux.detach()}
