"""The recurrent models' read-outs: how the top hidden state becomes the next frame.

* "retrieve" (the default): a per-patch softmax mixture of every input frame so far and one newly drawn
  frame, scored by a learned prior per slot plus a content pointer (and, optionally, the method of
  analogues); exercise is periodic, so the next pose is usually already in the past.
* "gated": ``g·frame + (1 − g)·new``, a per-pixel gate between the input frame and a new frame.
* "direct": the frame is the head's output, a 1×1 convolution of the top state, as in the papers.

The plain ConvLSTM or PredRNN of the papers is "direct"; chapter 4 measures what the others add to it.
:class:`FrameReadout` is mixed into :class:`vidpred.models.recurrent.RecurrentPredictor`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .analogue import add_distances, analogue_windows, pairwise_distances
from .base import full_precision, unpatchify


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


OUTPUTS = ("retrieve", "gated", "direct")  # the recurrent models' read-outs; "direct": the papers' own

class FrameReadout:
    """The read-out half of :class:`vidpred.models.recurrent.RecurrentPredictor`: the head, the pointer and
    the per-step (:meth:`read`) and batched-context (:meth:`read_context`) read-outs."""

    def memory_size(self) -> int:
        """Every input of a rollout can be remembered: the context and all but the last prediction."""
        return self.config.n_context + self.config.n_future - 1

    def head_channels(self) -> int:
        p2 = self.config.patch_size**2
        if self.config.output != "retrieve":
            return p2 if self.config.output == "direct" else 2 * p2
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

    def readout(self, head: torch.Tensor, frame: torch.Tensor, memory, match: torch.Tensor | None = None) -> torch.Tensor:
        """The next frame (B, 1, H, W) from the head's output; ``memory`` (B, seen, p², h, w) holds the
        patched inputs seen so far, newest first (at most :meth:`memory_size`), or a list of such parts
        that follow each other (the lean step keeps the context's part fixed), and ``match`` their
        pointer scores (B, seen, h, w). The head scores every slot the memory can grow to; the slots not
        seen yet are left out (exactly as a score of −inf would), so early steps cost less."""
        p = self.config.patch_size
        if self.config.output == "direct":  # the papers' read-out: the frame is the head's output
            return unpatchify(head, p)
        if self.config.output == "gated":
            return blend_output(frame, head, p)
        parts = [memory] if torch.is_tensor(memory) else memory
        n_memory, seen = self.memory_size(), sum(part.shape[1] for part in parts)
        scores = head[:, :seen] if match is None else head[:, :seen] + match
        logits = torch.cat([scores, head[:, n_memory : n_memory + 1]], 1)  # (B, seen + 1, h, w)
        new = head[:, n_memory + 1 :]
        if getattr(self, "record", None) is not None:  # see retrieval_weights: (B, n_memory + 1), unseen = 0
            weights = torch.softmax(logits, 1).mean((2, 3))
            self.record.append(torch.cat([weights[:, :seen], weights.new_zeros(len(weights), n_memory - seen),
                                          weights[:, seen:]], 1))
        if len(parts) == 1:
            return unpatchify(retrieve(logits, parts[0], new), p)  # (B, 1, H, W)
        *weights, weight_new = torch.softmax(logits, 1).split([part.shape[1] for part in parts] + [1], 1)
        mixed = sum((w[:, :, None] * part).sum(1) for w, part in zip(weights, parts))
        return unpatchify(mixed + weight_new * new, p)  # (B, 1, H, W), as retrieve computes it

    def readout_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The head, key and query 1×1 convolutions as one, over ``[top, x]`` (the head reads only ``top``):
        weight (head channels + 2·hidden, hidden + p², 1, 1) and bias; the lean step builds it once per
        rollout and runs one convolution per step instead of three."""
        head = self.head.weight
        zeros = head.new_zeros(head.shape[0], self.key.weight.shape[1] - head.shape[1], 1, 1)
        weight = torch.cat([torch.cat([head, zeros], 1), self.key.weight, self.query.weight])
        bias = torch.cat([self.head.bias, head.new_zeros(2 * self.key.weight.shape[0])])
        return weight, bias

    def head_key_query(self, features: torch.Tensor, top: torch.Tensor, mem: dict):
        """The head's output, the key and the query of ``features`` = ``[top, x]`` (B, hidden + p², h, w):
        one merged convolution on the lean step (``mem["readout"]``), three on the reference."""
        if "readout" not in mem:
            return self.head(top), self.key(features), self.query(features)
        out = F.conv2d(features, *mem["readout"])
        n_key = self.key.weight.shape[0]
        # split, not slices: backward then joins the three gradients instead of padding each with zeros
        return out.split([out.shape[1] - 2 * n_key, n_key, n_key], 1)

    def analogue_scores(self, windows: torch.Tensor, times: tuple[int, ...]) -> torch.Tensor:
        """Global pointer scores (B, T, J) from :func:`analogue_windows` (B, 2, T, J): the log of
        ``exp(−β_f·forward) + exp(−β_m·mirror)``, shifted so the best candidate scores 0; a candidate
        with no evidence either way (no window fits yet) scores as the worst that has some, and every
        candidate scores 0 while no window fits at all (t < window, known from t: no host sync)."""
        beta = self.analogue_log_beta.exp()[:, None, None]  # (2, 1, 1)
        ok = torch.isfinite(windows)
        missing = torch.full_like(windows, -1e4)  # finite, so no inf · 0 in backward
        scores = torch.where(ok, -beta * windows.nan_to_num(posinf=0.0), missing)
        scores = torch.logaddexp(scores[:, 0], scores[:, 1])  # (B, T, J)
        early = torch.tensor(times, device=scores.device)[:, None] < self.config.analogue_window  # (T, 1)
        some = ok.any(1) | early
        scores = torch.where(early, torch.zeros_like(scores), scores)
        scores = torch.where(some, scores, scores.masked_fill(~some, float("inf")).amin(2, keepdim=True))
        return scores - scores.amax(2, keepdim=True)

    def read(self, t: int, frame: torch.Tensor, x: torch.Tensor, top: torch.Tensor, mem: dict) -> torch.Tensor:
        """One step's read-out: the prediction of frame t + 1 (B, 1, H, W) from the input ``frame`` (``x``:
        its patches) and the top state after reading it; ``mem`` carries what the read-out remembers
        from step to step (the inputs and their keys, newest first; the analogue's distances)."""
        with full_precision(top):
            return self._read(t, frame, x, top.float(), mem)

    def _read(self, t: int, frame: torch.Tensor, x: torch.Tensor, top: torch.Tensor, mem: dict) -> torch.Tensor:
        if self.config.output != "retrieve":
            return self.readout(self.head(top), frame, None)
        n_memory = self.memory_size()
        # "When did the state last look like now? What came next is my prediction." Frame t is
        # remembered under the key of the state that predicted it (step t − 1), and the query of the
        # state now (step t) looks for a match among those keys.
        features = torch.cat([top, x], 1)  # (B, hidden + p², h, w)
        head, key_now, query = self.head_key_query(features, top, mem)
        previous = mem.get("previous_key")
        key_before = (previous if previous is not None else torch.zeros_like(key_now))[:, None]
        mem["previous_key"] = key_now
        if "context_memory" in mem and t < n_memory:
            # After the batched context (read_context): the context's inputs and keys stay one fixed part
            # and the free-running inputs are stacked in front of them, so no step copies (or, in
            # backward, pads with zeros) the whole memory. The same slots, newest first, as below.
            mem["future_memory"].insert(0, x[:, None])
            mem["future_keys"].insert(0, key_before)
            memory = [torch.cat(mem["future_memory"], 1), mem["context_memory"]]
            keys = [torch.cat(mem["future_keys"], 1), mem["context_keys"]]
            match = torch.cat([(query[:, None] * part).sum(2) for part in keys], 1) / top.shape[1] ** 0.5
        else:
            if "context_memory" in mem:  # more inputs than slots (a longer rollout): one tensor again
                mem["memory"] = torch.cat([*mem.pop("future_memory"), mem.pop("context_memory")], 1)
                mem["keys"] = torch.cat([*mem.pop("future_keys"), mem.pop("context_keys")], 1)
            # memory: (B, seen, p², h, w), the inputs so far, newest first; keys: (B, seen, hidden, h, w),
            # one per remembered input. Both grow by one slot a step (up to n_memory): step t works on
            # t + 1 slots.
            memory = mem.get("memory")
            memory = x[:, None] if memory is None else torch.cat([x[:, None], memory[:, : n_memory - 1]], 1)
            keys = mem.get("keys")
            keys = key_before if keys is None else torch.cat([key_before, keys[:, : n_memory - 1]], 1)
            match = (query[:, None] * keys).sum(2) / top.shape[1] ** 0.5  # (B, seen, h, w)
            mem.update(memory=memory, keys=keys)
        if "distances" in mem:
            with torch.no_grad():
                mem["frames"][:, t] = frame.flatten(1)
                add_distances(mem["frames"], mem["distances"], t, mem["scratch"])
            windows = analogue_windows(mem["distances"], (t,), self.config.analogue_window)
            analogue = self.analogue_scores(windows, (t,))[:, 0].flip(1)[:, :, None, None]  # newest first
            analogue = analogue[:, : match.shape[1]]  # in a rollout longer than the memory, the slots it holds
            # Per patch, how much the analogue's choice counts: a patch where nothing moves does better
            # spreading its weight over many frames (their noise averages out) than copying one.
            match = match + analogue * torch.sigmoid(head[:, -1:])
            head = head[:, :-1]
        return self.readout(head, frame, memory, match)

    def read_context(self, context: torch.Tensor, patches: torch.Tensor, tops: torch.Tensor, mem: dict) -> torch.Tensor:
        """:meth:`read` for every context step at once, when the context is fed as it is (its
        predictions do not feed back): (B, n_context, 1, H, W), the predictions of frames 1 … n_context.
        ``patches`` (B, n_context, p², h, w) are the inputs and ``tops`` (B, n_context, hidden, h, w) the
        top states after each; fills ``mem`` as the steps one by one would. The same arithmetic as
        :meth:`read`, with candidates oldest first and later inputs masked out."""
        with full_precision(tops):
            return self._read_context(context, patches, tops.float(), mem)

    def _read_context(self, context: torch.Tensor, patches: torch.Tensor, tops: torch.Tensor, mem: dict) -> torch.Tensor:
        batch, n_context = patches.shape[:2]
        n_memory, p = self.memory_size(), self.config.patch_size
        features = torch.cat([tops, patches], 2).flatten(0, 1)
        heads, keys_now, queries = (part.unflatten(0, (batch, n_context))  # (B, T, channels, h, w) each
                                    for part in self.head_key_query(features, tops.flatten(0, 1), mem))
        # split, not slices, here and below: backward joins the parts' gradients instead of padding each
        # with zeros to the whole (B, T, …) size
        keys_before, key_last = keys_now.split([n_context - 1, 1], 1)
        keys = torch.cat([torch.zeros_like(key_last), keys_before], 1)  # input j's key: step j − 1's
        match = torch.einsum("btchw,bjchw->btjhw", queries, keys) / tops.shape[2] ** 0.5  # (B, T, T, h, w)
        t = torch.arange(n_context, device=patches.device)
        analogue = "distances" in mem
        slots, new_logit, new, *gate = heads.split([n_memory, 1, p * p] + [1] * analogue, 2)
        # The head scores slots newest first (slot s: input t − s); gather them oldest first.
        order = (t[:, None] - t[None, :]).clamp(min=0)  # (T, T): [t, j] -> slot t − j
        prior = slots.gather(2, order[None, :, :, None, None].expand(batch, -1, -1, *heads.shape[-2:]))
        if analogue:
            times = tuple(range(n_context))
            with torch.no_grad():
                mem["frames"][:, :n_context] = context.flatten(2)
                mem["distances"][:, :n_context, :n_context] = pairwise_distances(context.flatten(2))
            windows = analogue_windows(mem["distances"], times, self.config.analogue_window)
            scores = self.analogue_scores(windows, times)[..., None, None]  # (B, T, T, 1, 1)
            match = match + scores * torch.sigmoid(gate[0])
        later = (t[None, :] > t[:, None])[None, :, :, None, None]  # input j is not seen yet at step t
        scores = (prior + match).masked_fill(later, float("-inf"))
        logits = torch.cat([scores, new_logit], 2)  # (B, T, T + 1, h, w)
        weights, weight_new = torch.softmax(logits, 2).split([n_context, 1], 2)
        out = torch.einsum("btjhw,bjphw->btphw", weights, patches) + weight_new * new
        mem.update(context_memory=patches.flip(1), context_keys=keys.flip(1), previous_key=key_last[:, 0],
                   future_memory=[], future_keys=[])
        return unpatchify(out.flatten(0, 1), p).unflatten(0, (batch, n_context))
