"""The frame-by-frame rollout ConvLSTM and PredRNN share: feed a frame, step the cells, read out the next
frame; the context first, then the model's own predictions (with scheduled sampling in training)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Predictor, patchify
from .retrieval import FrameReadout
from .sampling import truth_masks
from .selfcheck import self_check
from .stillness import hold_still


class RecurrentPredictor(FrameReadout, Predictor):
    """Frame-by-frame rollout shared by ConvLSTM and PredRNN.

    Subclasses implement ``init_state(batch, like)``, ``step(x, state, projected=None, weights=None) ->
    (top, state, aux_loss)`` where ``x`` is the input frame in patches, ``top`` the top layer's hidden
    state on the patch grid, ``projected`` the first layer's input convolution of ``x`` when it was
    computed ahead (``project_input(patches, weights)``, for all context frames at once) and ``weights``
    what :meth:`cell_weights` built for the rollout; :meth:`read` turns ``top`` into the next frame. At
    step t the input is frame t (ground truth or the previous prediction) and the output is the
    prediction of frame t + 1, so nothing at or after t + 1 is seen.

    Read-outs (``config.output``): ``"retrieve"`` mixes every input frame so far (newest first: the
    whole context stays in reach to the last predicted frame) and a new frame with per-patch softmax
    weights (:func:`~vidpred.models.retrieval.retrieve`); ``"gated"`` blends the input frame and a new frame
    with a per-pixel gate (:func:`~vidpred.models.retrieval.blend_output`); ``"direct"``, the papers' own, is
    the head's output (see :mod:`vidpred.models.retrieval`).
    """

    # The lean step (True): merged convolutions (:meth:`cell_weights`, :meth:`readout_weights`) and, while
    # the context is fed as it is, the batched context. False: the reference, every step one by one with
    # each convolution as the paper writes it (what the lean step is tested against, and what
    # `vidpred bench models` times it against); the results agree to float rounding.
    lean_step: bool = True

    def cell_weights(self):
        """Weights the cells' lean step uses at every step, built once per rollout from the parameters
        (merged convolutions, already in autocast's dtype), passed to :meth:`step`; None: none."""
        return None

    def rollout_aux(self, weights) -> torch.Tensor | float:
        """Auxiliary loss the lean step's :meth:`step` left in ``weights`` to compute once for all steps
        (summed over steps, as the steps would have returned it)."""
        return 0.0

    def rollout(self, context: torch.Tensor, future: torch.Tensor | None, n_future: int,
                masks: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Predictions of frames 1 … n_context + n_future − 1, (B, T − 1, 1, H, W), and the
        auxiliary loss averaged over steps. Without ``masks`` the future is the model's own (inference).

        The lean step (:attr:`lean_step`) builds merged weights once (:meth:`cell_weights`,
        :meth:`readout_weights`). When the context is fed as it is (inference, plain scheduled sampling,
        V2 once its schedule ends), no prediction inside it feeds back, so it also batches what does not
        depend on the step: the first layer's input convolution over all context frames, and the whole
        read-out of the context steps (:meth:`read_context`). Only the cells' recurrence runs step by
        step there.
        """
        batch, n_context = context.shape[:2]
        state = self.init_state(batch, context)
        predictions, aux_total = [], context.new_zeros(())
        # With an all-true context mask (plain scheduled sampling) the context is fed as is: a
        # torch.where would tie every input to the previous prediction and double backward's work.
        mix_context = masks is not None and not bool(masks[0].all())
        p = self.config.patch_size
        mem = {}
        if self.config.output == "retrieve" and getattr(self.config, "analogue_window", 0):
            length = n_context + n_future  # (B, L, L) pixel distances between inputs, filled as they arrive
            mem.update(distances=context.new_zeros(batch, length, length),
                       frames=context.new_zeros(batch, length, context[0, 0].numel()))
            mem["scratch"] = torch.empty_like(mem["frames"])
        start, weights = 0, None
        if self.lean_step:
            weights = self.cell_weights()
            if self.config.output == "retrieve":
                mem["readout"] = self.readout_weights()
        if (self.lean_step and not mix_context and self.config.output == "retrieve"
                and getattr(self, "record", None) is None):
            patches = patchify(context.flatten(0, 1), p).unflatten(0, (batch, n_context))  # (B, T, p², h, w)
            # unbind, not [:, t]: one backward node for all steps instead of a full-size zero gradient per step
            projected = self.project_input(patches, weights).unbind(1)
            tops = []
            for t in range(n_context):
                top, state, aux = self.step(patches[:, t], state, projected[t], weights)
                tops.append(top)
                aux_total = aux_total + aux
            predictions = list(self.read_context(context, patches, torch.stack(tops, 1), mem).unbind(1))
            start = n_context
        for t in range(start, n_context + n_future - 1):
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
            x = patchify(frame, p)
            top, state, aux = self.step(x, state, None, weights)  # (B, hidden, h, w)
            predictions.append(self.read(t, frame, x, top, mem))
            aux_total = aux_total + aux
        if weights is not None:
            aux_total = aux_total + self.rollout_aux(weights)
        return torch.stack(predictions, 1), aux_total / len(predictions)

    def forward(self, context: torch.Tensor, n_future: int = 15) -> torch.Tensor:
        predictions, _ = self.rollout(context, None, n_future)
        n_seen = context.shape[1] - 1  # predictions of frames 1 … n_context − 1: the context, one step ahead
        future = predictions[:, n_seen:].clamp(0, 1)  # (B, n_future, 1, H, W)
        if self.training:
            return future
        future = self_check(future, context, predictions[:, :n_seen], self.config.self_check)
        return hold_still(future, context, self.config.hold_still)

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
