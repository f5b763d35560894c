"""The checkpoints trained on the real exercise set: each loads safely and knows what it was trained on; where the
set is on this machine, the split is the one they were trained and tested on and a model still gives its
manifest's test metrics."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import EXERCISE, need

from vidpred.config import get_profile
from vidpred.data import windows
from vidpred.evaluate import baseline_models, evaluate_model
from vidpred.models import LEARNED, REFERENCE_BASELINES
from vidpred.runs import data_identity, shipped_manifest, shipped_runs

MANIFEST = shipped_manifest("real")
pytestmark = pytest.mark.skipif(MANIFEST is None, reason="no checkpoints are shipped for the real profile")
ROOT = Path(__file__).resolve().parents[1]


def test_every_real_checkpoint_loads_and_knows_its_data():
    runs = shipped_runs("real")
    assert not runs.skipped
    assert set(runs.runs) == set(MANIFEST["models"]) == set(LEARNED)
    assert MANIFEST["data"]["source"] == "exercise" and MANIFEST["profile"] == "real"
    context = torch.rand(2, 30, 1, 64, 64)
    for name, run in runs.runs.items():
        entry = MANIFEST["models"][name]
        assert run.data == MANIFEST["data"] and run.steps == entry["steps"], name
        assert run.state["model_config"] == entry["model_config"] and "optimizer" not in run.state
        assert run.state["train_config"]["augment"] is True, name  # trained on augmented windows
        with torch.no_grad():
            out = run.model()(context, 15)
        assert out.shape == (2, 15, 1, 64, 64) and torch.isfinite(out).all(), name


def test_the_real_manifest_holds_what_the_book_reads():
    """Chapters 8 and 11 read these numbers where the real set is absent; every real-trained model is below the
    best baseline on MSE and on moving pixels (what chapter 1 promises; chapter 11 says by how much)."""
    baselines = MANIFEST["baselines"]
    assert set(baselines) == set(REFERENCE_BASELINES)
    best_mse = min(b["mse"] for b in baselines.values())
    best_moving = min(b["moving_mse"] for b in baselines.values())
    for name, entry in MANIFEST["models"].items():
        test = entry["test"]
        assert len(test["mse_per_horizon"]) == len(test["ssim_per_horizon"]) == 15
        assert test["mse"] < best_mse and test["moving_mse"] < best_moving, name


@pytest.fixture(scope="module")
def real_data():
    need(EXERCISE)
    cfg = dataclasses.replace(get_profile("real").data, data_dir=str(EXERCISE), cache_dir=str(ROOT / "data" / "cache"))
    return cfg, windows(cfg)  # the cache the book build shares: decoded once per machine


def test_the_real_split_and_a_model_give_the_manifest_numbers(real_data):
    cfg, datasets = real_data
    assert data_identity(cfg, datasets["train"].clips) == MANIFEST["data"]  # same clips, same pixels
    assert len(datasets["test"]) == MANIFEST["test_windows"]
    run = shipped_runs("real", ["transformer"]).runs["transformer"]  # the fastest to evaluate
    blend = baseline_models(datasets["train"], ("blend",))["blend"]
    for name, model, expected in (("transformer", run.model(), MANIFEST["models"]["transformer"]["test"]),
                                  ("blend", blend, MANIFEST["baselines"]["blend"])):
        result = evaluate_model(model, datasets["test"])
        for metric in ("mse", "moving_mse", "ssim"):
            assert result[metric] == pytest.approx(expected[metric], rel=1e-3), (name, metric)


def test_the_book_measures_the_real_results_once_per_machine(tmp_path):
    """Chapters 1, 8, 9 and 11 each run in their own kernel: the real results are kept on disk for the same split
    and checkpoints, measured again when a checkpoint changes, and a damaged file is measured again."""
    from vidpred.book import BookEnv, _measured_before, _remember

    env = BookEnv(get_profile("smoke"), torch.device("cpu"), tmp_path)
    runs = list(shipped_runs("real").runs.values())
    first = _measured_before(env, MANIFEST["data"], runs, 2)
    assert first["rows"] is None
    _remember({**first, "rows": [{"model": "blend", "mse": 0.01}], "synthetic": []})
    again = _measured_before(env, MANIFEST["data"], runs, 2)
    assert again["rows"] == [{"model": "blend", "mse": 0.01}] and again["synthetic"] == []
    assert _measured_before(env, MANIFEST["data"], runs, None)["rows"] is None  # all windows: another measurement
    assert _measured_before(env, {"fingerprint": "other"}, runs, 2)["rows"] is None  # other data
    first["path"].write_text("{not json")
    assert _measured_before(env, MANIFEST["data"], runs, 2)["rows"] is None
