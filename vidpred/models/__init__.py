"""The model registry: ``build(name, **config)`` and ``summary()``."""

from __future__ import annotations

from .base import Predictor
from .baselines import Analogue, Blend, ContextMean, CopyLast, LinearExtrapolation
from .convlstm import ConvLSTM
from .predrnn import PredRNN, PredRNNV2
from .transformer import TransformerPredictor

MODELS: dict[str, type[Predictor]] = {
    cls.name: cls for cls in (CopyLast, ContextMean, Blend, Analogue, LinearExtrapolation, ConvLSTM, PredRNN, PredRNNV2,
                             TransformerPredictor)
}
BASELINES = ("copy_last", "context_mean", "blend", "analogue", "linear")
# "Best baseline" means the best of these four; linear extrapolation is shown, never the bar.
REFERENCE_BASELINES = ("copy_last", "context_mean", "blend", "analogue")
LEARNED = ("convlstm", "predrnn", "predrnn_v2", "transformer")


def placeholder_config(name: str, model_config: dict) -> dict:
    """``model_config``, except that the blend gets neutral weights: for timing and FLOP counts only,
    where what the weights are does not matter (for predictions, fit it: ``Blend.fit(train)``)."""
    return {"alphas": (0.5,) * 15} if name == "blend" else model_config


# Options added after checkpoints had been saved, each with the value that reproduces a checkpoint
# saved without it (so a run trained by an earlier version still loads as it was trained).
LEGACY_OPTIONS = {"analogue_window": 0, "analogue": False, "fallback": False}


def rebuild(name: str, config: dict) -> Predictor:
    """The model a checkpoint describes: ``build`` with its saved config, options it predates as they were."""
    fields = MODELS[name].Config.__dataclass_fields__ if name in MODELS else {}
    return build(name, **{**{k: v for k, v in LEGACY_OPTIONS.items() if k in fields}, **config})


def build(name: str, **config) -> Predictor:
    """A model by registry name, its config dataclass filled from ``config``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    cls = MODELS[name]
    fields = cls.Config.__dataclass_fields__
    unknown = set(config) - set(fields)
    if unknown:
        raise ValueError(f"{name} has no option {', '.join(sorted(unknown))}; it has {', '.join(fields)}")
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    return cls(cls.Config(**config))


__all__ = ["BASELINES", "LEARNED", "MODELS", "Predictor", "build", "rebuild", "count_flops", "count_parameters", "latency_ms",
           "summary"]


def count_parameters(model: Predictor) -> int:
    return sum(p.numel() for p in model.parameters())


def model_device(model: Predictor):
    """The device of the model's parameters (the CPU for the parameter-free baselines)."""
    import torch

    return next(iter(model.parameters()), torch.zeros(0)).device


def count_flops(model: Predictor, n_context: int = 30, n_future: int = 15, size: int = 64) -> int:
    """FLOPs of one 30→15 prediction (one clip), counted by torch.utils.flop_counter.

    Matrix products, convolutions and scaled_dot_product_attention are counted (2 FLOPs per
    multiply-add); element-wise work (gates, norms) is not, as is the convention.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    context = torch.zeros(1, n_context, 1, size, size, device=model_device(model))
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(context, n_future)
    model.train(was_training)
    return int(counter.get_total_flops())


def latency_ms(model: Predictor, n_context: int = 30, n_future: int = 15, size: int = 64,
               repeats: int = 5, batch: int = 1) -> float:
    """Median wall time in ms of one forward pass for ``batch`` clips (after one warm-up)."""
    import statistics
    import time

    import torch

    device = model_device(model)
    context = torch.rand(batch, n_context, 1, size, size, device=device)
    was_training = model.training
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            tic = time.perf_counter()
            model(context, n_future)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:
                times.append((time.perf_counter() - tic) * 1000)
    model.train(was_training)
    return statistics.median(times)


def summary(profile: str | None = None, models=None, repeats: int = 3) -> list[dict]:
    """Params, FLOPs per clip and CPU latency (ms per clip) of every model in ``profile``."""
    from ..config import get_profile

    prof = get_profile(profile)
    rows = []
    for name in models or (*BASELINES, *LEARNED):
        model = build(name, **placeholder_config(name, prof.model_config(name)))
        rows.append({"model": name, "params": count_parameters(model), "flops_per_clip": count_flops(model),
                     "latency_ms": latency_ms(model, repeats=repeats)})
    return rows
