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


def retrieve(logits: torch.Tensor, memory: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Next frame as a per-patch mixture of remembered frames and one newly drawn frame.

    All in patch layout: ``logits`` (B, K + 1, h, w) hold, for each patch of the ``h × w`` grid, a
    score per remembered frame and one for ``new``; ``memory`` is (B, K, p², h, w) and ``new``
    (B, p², h, w); the result is (B, p², h, w). A score of −inf drops a frame (one not seen yet).

    Exercise is periodic: the frame that shows where a limb will be is usually already in the past
    (one repetition ago, or its mirror image around the last turning point), so pointing at it is
    far easier to learn than drawing the limb, and the blend baseline (weight α on the last frame,
    the rest spread over the others) is one setting of it.
    """
    weights = torch.softmax(logits, 1)  # (B, K + 1, h, w)
    return (weights[:, :-1, None] * memory).sum(1) + weights[:, -1:] * new


def analogue_distances(distances: torch.Tensor, t: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """How well each input so far fits as the next frame, by the method of analogues.

    ``distances`` (B, L, L) holds the mean squared pixel distance between inputs i and j (filled up to
    input ``t``). For each candidate j ≤ t (returned newest first, (B, t + 1) each):

    * forward: the mean distance between the ``window`` inputs before j and the last ``window``
      inputs — a past stretch like now was followed by j;
    * mirror: the mean distance between the ``window`` inputs after j, read backwards, and the last
      ``window`` inputs — a past stretch like now played backwards was preceded by j (a movement
      reversing at a turning point, as every repetition of an exercise does).

    A candidate whose window reaches outside the inputs seen gets +inf; terms that compare an input
    with itself (windows that overlap around a turning point) are left out of the mean.
    """
    j = torch.arange(t + 1, device=distances.device)
    i = torch.arange(window, device=distances.device)[:, None]  # (window, 1)
    rows = (t - i).expand(-1, t + 1)  # the last inputs: t, t − 1, …
    means = []
    for cols in (j - 1 - i, j + 1 + i):  # forward, mirror: (window, t + 1)
        inside = ((cols >= 0) & (cols <= t) & (rows >= 0)).all(0)  # (t + 1,): the whole window was seen
        valid = cols != rows  # a frame against itself says nothing
        d = distances[:, rows.clamp(min=0), cols.clamp(0, t)]  # (B, window, t + 1)
        count = valid.sum(0)
        mean = (d * valid).sum(1) / count.clamp(min=1)
        means.append(torch.where(inside & (count > 0), mean, torch.full_like(mean, float("inf"))).flip(1))
    return means[0], means[1]


def add_distances(frames: torch.Tensor, distances: torch.Tensor, t: int) -> None:
    """Fill row and column ``t`` of ``distances`` (B, L, L): the mean squared distance of input ``t``
    (``frames[:, t]``, flattened) to every input up to it."""
    row = (frames[:, : t + 1] - frames[:, t : t + 1]).square().mean(2)
    distances[:, t, : t + 1] = row
    distances[:, : t + 1, t] = row


@torch.no_grad()
def retrieval_weights(model: nn.Module, context: torch.Tensor, n_future: int = 15) -> torch.Tensor:
    """Where a "retrieve" read-out points: (B, n_future, K + 1) weights, averaged over the patches,
    on each remembered frame (newest first; for the future frames of a recurrent model the first
    slots hold its own earlier predictions) and, last, on the newly drawn frame."""
    model.record = []
    try:
        model.eval()(context, n_future)
        weights = torch.stack(model.record, 1) if model.record[0].dim() == 2 else model.record[0]
    finally:
        model.record = None
    return weights[:, -n_future:]


def init_retrieval_bias(bias: torch.Tensor, last: float = 3.0) -> None:
    """Start near the blend: most weight on the latest frame (score ``last``; the first of the read-out's
    scores), a little on every other and on ``new`` (score 0)."""
    with torch.no_grad():
        bias.zero_()
        bias[0] = last


OUTPUTS = ("retrieve", "gated")  # the recurrent models' read-outs


class RecurrentPredictor(Predictor):
    """Frame-by-frame rollout shared by ConvLSTM and PredRNN.

    Subclasses implement ``init_state(batch, like)`` and ``step(frame, state) -> (top, state,
    aux_loss)`` where ``top`` is the top layer's hidden state on the patch grid; :meth:`readout`
    turns it into the next frame. At step t the input is frame t (ground truth or the previous
    prediction) and the output is the prediction of frame t + 1, so nothing at or after t + 1 is seen.

    Read-outs (``config.output``): ``"retrieve"`` mixes every input frame so far (newest first: the
    whole context stays in reach to the last predicted frame) and a new frame with per-patch softmax
    weights (:func:`retrieve`); ``"gated"`` blends the input frame and a new frame with a per-pixel
    gate (:func:`blend_output`).
    """

    def memory_size(self) -> int:
        """Every input of a rollout can be remembered: the context and all but the last prediction."""
        return self.config.n_context + self.config.n_future - 1

    def head_channels(self) -> int:
        p2 = self.config.patch_size**2
        if self.config.output != "retrieve":
            return 2 * p2
        analogue = bool(getattr(self.config, "analogue_window", 0))  # the analogue's gate: one more channel
        return self.memory_size() + 1 + p2 + analogue

    def make_head(self, hidden: int) -> None:
        """The read-out from the top hidden state: ``self.head``, and for "retrieve" a pointer
        (``self.query``, ``self.key``) that scores each remembered frame by how well the state at
        the time it was the input matches the state now."""
        if self.config.output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, not {self.config.output!r}")
        self.head = nn.Conv2d(hidden, self.head_channels(), 1)
        if self.config.output == "retrieve":
            init_retrieval_bias(self.head.bias)
            features = hidden + self.config.patch_size**2  # the state and the input patch it just read
            self.query = nn.Conv2d(features, hidden, 1, bias=False)
            self.key = nn.Conv2d(features, hidden, 1, bias=False)
            nn.init.normal_(self.query.weight, std=0.01)  # near zero: start from the head's prior
            if getattr(self.config, "analogue_window", 0):
                # Sharpness of the analogue pointer (forward, mirror), as log inverse temperatures;
                # 1e5: the analogue baseline's 1 / temperature, chosen on validation.
                self.analogue_log_beta = nn.Parameter(torch.full((2,), 11.5))
                # Start as the analogue baseline: no prior over the slots, little weight on the new
                # frame (from a random head, ConvLSTM without the gate below ended at 0.00316 val MSE
                # after 600 steps instead of 0.00287).
                with torch.no_grad():
                    n = self.memory_size()
                    self.head.weight[: n + 1].zero_()
                    self.head.bias[:n].zero_()
                    self.head.bias[n] = -4.0
                    # The analogue's gate, the head's last channel: starts at sigmoid(4) ≈ 0.98.
                    self.head.weight[-1].zero_()
                    self.head.bias[-1] = 4.0

    def readout(self, head: torch.Tensor, frame: torch.Tensor, memory: torch.Tensor | None,
                match: torch.Tensor | None = None) -> torch.Tensor:
        """The next frame (B, 1, H, W) from the head's output; ``memory`` (B, seen, p², h, w) holds the
        patched inputs seen so far, newest first (at most :meth:`memory_size`), and ``match`` their
        pointer scores (B, seen, h, w). The head scores every slot the memory can grow to; the slots not
        seen yet are left out (exactly as a score of −inf would), so early steps cost less."""
        p = self.config.patch_size
        if self.config.output == "gated":
            return blend_output(frame, head, p)
        n_memory, seen = self.memory_size(), memory.shape[1]
        scores = head[:, :seen] if match is None else head[:, :seen] + match
        logits = torch.cat([scores, head[:, n_memory : n_memory + 1]], 1)  # (B, seen + 1, h, w)
        new = head[:, n_memory + 1 :]
        if getattr(self, "record", None) is not None:  # see retrieval_weights: (B, n_memory + 1), unseen = 0
            weights = torch.softmax(logits, 1).mean((2, 3))
            self.record.append(torch.cat([weights[:, :seen], weights.new_zeros(len(weights), n_memory - seen),
                                          weights[:, seen:]], 1))
        return unpatchify(retrieve(logits, memory, new), p)  # (B, 1, H, W)

    def analogue_scores(self, distances: torch.Tensor, t: int, seen: int) -> torch.Tensor:
        """Global pointer scores (B, seen, 1, 1) from :func:`analogue_distances`: the log of
        ``exp(−β_f·forward) + exp(−β_m·mirror)``, shifted so the best candidate scores 0; a candidate
        with no evidence either way (no window fits yet) scores as the worst that has some."""
        forward, mirror = analogue_distances(distances, t, self.config.analogue_window)
        forward, mirror = forward[:, :seen], mirror[:, :seen]
        beta = self.analogue_log_beta.exp()
        ok_forward, ok_mirror = torch.isfinite(forward), torch.isfinite(mirror)
        missing = torch.full_like(forward, -1e4)  # finite, so no inf · 0 in backward
        scores = torch.logaddexp(torch.where(ok_forward, -beta[0] * forward.nan_to_num(posinf=0.0), missing),
                                 torch.where(ok_mirror, -beta[1] * mirror.nan_to_num(posinf=0.0), missing))
        if t < self.config.analogue_window:  # no window fits yet (known from t alone: no host sync)
            return scores.new_zeros(scores.shape[0], seen, 1, 1)
        some = ok_forward | ok_mirror  # (B, seen)
        scores = torch.where(some, scores, scores.masked_fill(~some, float("inf")).amin(1, keepdim=True))
        return (scores - scores.amax(1, keepdim=True))[:, :, None, None]

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
        retrieving = self.config.output == "retrieve"
        n_memory = self.memory_size()
        p = self.config.patch_size
        # memory: (B, seen, p², h, w), the inputs so far, newest first; keys: (B, seen, hidden, h, w), one
        # per remembered input. Both grow by one slot a step (up to n_memory), so step t works on t + 1 slots.
        memory, keys, previous_key = None, None, None
        window = getattr(self.config, "analogue_window", 0) if retrieving else 0
        if window:  # (B, L, L) pixel distances between inputs, filled as they arrive; no gradient
            length = n_context + n_future
            distances = context.new_zeros(batch, length, length)
            seen_frames = context.new_zeros(batch, length, context[0, 0].numel())
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
            if retrieving:  # the inputs so far, newest first
                patch = patchify(frame, p)[:, None]
                memory = patch if memory is None else torch.cat([patch, memory[:, : n_memory - 1]], 1)
            top, state, aux = self.step(frame, state)  # (B, hidden, h, w)
            match = None
            if retrieving:
                # "When did the state last look like now? What came next is my prediction." Frame t
                # is remembered under the key of the state that predicted it (step t − 1), and the
                # query of the state now (step t) looks for a match among those keys.
                features = torch.cat([top, memory[:, 0]], 1)  # (B, hidden + p², h, w)
                key_now = self.key(features)
                key_before = (previous_key if previous_key is not None else torch.zeros_like(key_now))[:, None]
                keys = key_before if keys is None else torch.cat([key_before, keys[:, : n_memory - 1]], 1)
                query = self.query(features)[:, None]  # (B, 1, hidden, h, w)
                match = (query * keys).sum(2) / top.shape[1] ** 0.5  # (B, seen, h, w)
                previous_key = key_now
                if window:
                    with torch.no_grad():
                        seen_frames[:, t] = frame.flatten(1)
                        add_distances(seen_frames, distances, t)
                    analogue = self.analogue_scores(distances, t, match.shape[1])
            head = self.head(top)
            if window:
                # Per patch, how much the analogue's choice counts: a patch where nothing moves does better
                # spreading its weight over many frames (their noise averages out) than copying one.
                match = match + analogue * torch.sigmoid(head[:, -1:])
                head = head[:, :-1]
            next_frame = self.readout(head, frame, memory, match)
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
