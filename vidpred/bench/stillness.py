"""``vidpred bench stillness``: the hold-still read-out's threshold (:mod:`vidpred.models.stillness`), chosen on the
validation split. Each trained model of the profile predicts every validation window once without it; the
prediction is then held still at each candidate threshold and scored. One threshold for all the models, the one
with the lowest mean validation MSE, and the test split's MSE without and with it (reported, never used to
choose). For a model with a self-check (:mod:`vidpred.models.selfcheck`; on in all of the above), also its
validation and test MSE at the chosen threshold with the self-check off: what it costs where nothing stops."""

from __future__ import annotations

import torch

from ..config import get_profile
from .timing import machine

THRESHOLDS = (0.0, 0.04, 0.08, 0.16, 0.24, 0.32, 0.4, 0.5, 0.64)


@torch.no_grad()
def held_mse(model, dataset, thresholds=THRESHOLDS, batch_size: int = 16) -> dict[float, float]:
    """MSE per pixel of ``model`` on ``dataset`` with its prediction held still at each threshold (one forward
    pass per batch, whatever the number of thresholds)."""
    from ..models.stillness import hold_still, read_out_off

    total, count = dict.fromkeys(thresholds, 0.0), 0
    with read_out_off(model):
        for context, future in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
            prediction = model(context, future.shape[1])
            for threshold in total:  # each value once, however often it is given
                total[threshold] += float((hold_still(prediction, context, threshold) - future).square().sum())
            count += future.numel()
    return {threshold: value / count for threshold, value in total.items()}


def bench_stillness(profile: str | None = None, models=None, thresholds=THRESHOLDS) -> dict:
    """Validation MSE of each trained model of ``profile`` per threshold, the threshold chosen, and test MSE."""
    from ..data import windows
    from ..models import LEARNED
    from ..runs import data_identity, runs_for

    prof = get_profile(profile)
    datasets = windows(prof.data)
    data = data_identity(prof.data, datasets["train"].clips)
    found = runs_for(f"runs/{prof.name}", prof.name, data, models=models or LEARNED)
    if not found.runs:
        raise FileNotFoundError(f"no trained {prof.name} checkpoints to choose for; train them first "
                                f"(python -m vidpred.pretrained --profile {prof.name})")
    val = {name: held_mse(run.model(), datasets["val"], thresholds) for name, run in found.runs.items()}
    mean = {t: sum(v[t] for v in val.values()) / len(val) for t in thresholds}
    chosen = min(thresholds, key=mean.get)
    test = {name: held_mse(run.model(), datasets["test"], (0.0, chosen)) for name, run in found.runs.items()}
    self_check = {}
    for name, run in found.runs.items():
        model = run.model()
        tau = getattr(model.config, "self_check", 0)
        if tau:
            model.config.self_check = 0.0
            self_check[name] = {"tau": tau, "val_mse": {"off": held_mse(model, datasets["val"], (chosen,))[chosen],
                                                        "on": val[name][chosen]},
                                "test_mse": {"off": held_mse(model, datasets["test"], (chosen,))[chosen],
                                             "on": test[name][chosen]}}
    return {"machine": machine(), "profile": prof.name, "data": data["fingerprint"],
            "val_windows": len(datasets["val"]), "test_windows": len(datasets["test"]),
            "checkpoints": {name: run.describe() for name, run in found.runs.items()},
            "thresholds": list(thresholds), "val_mse": {n: list(v.values()) for n, v in val.items()},
            "val_mean_mse": list(mean.values()), "chosen": chosen,
            "test_mse": {n: {"without": v[0.0], "with": v[chosen]} for n, v in test.items()},
            "self_check": self_check}
