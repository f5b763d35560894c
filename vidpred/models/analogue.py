"""The method of analogues' distance machinery: pixel distances between the frames seen so far, and how well
each past frame fits as the next one (forward, and mirrored around a turning point). The analogue baseline
(:class:`vidpred.models.baselines.Analogue`) and the recurrent read-out's analogue pointer both use it."""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=256)
def _analogue_index(times: tuple[int, ...], window: int, device: str):
    """Where :func:`analogue_windows` reads: for the inputs ``times`` (T,) and every candidate j up to
    ``max(times)``, the (row, column) pairs of each window in the distance matrix, both kinds stacked
    ((2, T, window, J) each), which terms count (a frame against itself does not), how many, and
    whether the whole window was seen (both (2, T, J))."""
    t = torch.tensor(times, device=device)[:, None, None]  # (T, 1, 1)
    j = torch.arange(max(times) + 1, device=device)[None, None, :]  # (1, 1, J)
    i = torch.arange(window, device=device)[None, :, None]  # (1, window, 1)
    rows = (t - i).expand(-1, -1, j.shape[-1])  # the last inputs: t, t − 1, …
    cols = torch.stack([(j - 1 - i).expand_as(rows), (j + 1 + i).expand_as(rows)])  # forward, mirror
    inside = ((cols >= 0) & (cols <= t) & (rows >= 0) & (j <= t)).all(2)  # the whole window was seen
    valid = cols != rows
    count = valid.sum(2)
    rows = rows.clamp(min=0).expand_as(cols)
    return rows, torch.minimum(cols.clamp(min=0), t), valid, count.clamp(min=1), inside & (count > 0)


def analogue_windows(distances: torch.Tensor, times: tuple[int, ...], window: int) -> torch.Tensor:
    """How well each input fits as the next frame after each input in ``times``, by the method of analogues.

    ``distances`` (B, L, L) holds the mean squared pixel distance between inputs i and j (filled up to
    input ``max(times)``). Returns (B, 2, T, J), J = ``max(times) + 1``, oldest candidate first; for
    input t and candidate j ≤ t:

    * [:, 0] forward: the mean distance between the ``window`` inputs before j and the last
      ``window`` inputs (t, t − 1, …) — a past stretch like now was followed by j;
    * [:, 1] mirror: the mean distance between the ``window`` inputs after j, read backwards, and the
      last ``window`` inputs — a past stretch like now played backwards was preceded by j (a movement
      reversing at a turning point, as every repetition of an exercise does).

    A candidate whose window reaches outside the inputs seen by t (and every j > t) gets +inf; terms
    that compare an input with itself (windows that overlap around a turning point) are left out of
    the mean. All of it is one gather, whatever the number of inputs.
    """
    rows, cols, valid, count, ok = _analogue_index(tuple(times), window, str(distances.device))
    d = distances[:, rows, cols]  # (B, 2, T, window, J)
    mean = (d * valid).sum(3) / count
    return torch.where(ok, mean, torch.full_like(mean, float("inf")))


def analogue_distances(distances: torch.Tensor, t: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`analogue_windows` for input ``t`` alone, newest candidate first: (forward, mirror), (B, t + 1) each."""
    both = analogue_windows(distances, (t,), window)[:, :, 0].flip(2)
    return both[:, 0], both[:, 1]


def pairwise_distances(frames: torch.Tensor, gram: bool = False):
    """Mean squared distance between every two of ``frames`` (B, T, N): (B, T, T), as
    ‖a‖² + ‖b‖² − 2a·b in one batched product, in float64 (so the difference loses nothing). With
    ``gram``, also that product, the frames' Gram matrix (B, T, T) in float64."""
    flat = frames.double()
    norms = flat.square().sum(2)
    product = flat @ flat.transpose(1, 2)
    # 2·(a·b), not (2a)·b: the same bits (a power of two scales exactly), without scaling every pixel.
    square = norms[:, :, None] + norms[:, None, :] - 2 * product
    distances = (square.clamp(min=0) / flat.shape[2]).to(frames.dtype)
    return (distances, product) if gram else distances


def add_distances(frames: torch.Tensor, distances: torch.Tensor, t: int, scratch: torch.Tensor | None = None) -> None:
    """Fill row and column ``t`` of ``distances`` (B, L, L): the mean squared distance of input ``t``
    (``frames[:, t]``, flattened) to every input up to it. ``scratch``, shaped like ``frames``, holds the
    differences when given: a rollout calls this at every free-running step, and a fresh multi-megabyte
    buffer each time costs more than the arithmetic."""
    diff = torch.sub(frames[:, : t + 1], frames[:, t : t + 1], out=None if scratch is None else scratch[:, : t + 1])
    row = torch.linalg.vector_norm(diff, dim=2).square() / frames.shape[2]
    distances[:, t, : t + 1] = row
    distances[:, : t + 1, t] = row
