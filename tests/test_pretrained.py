"""The shipped checkpoints: each loads safely, knows what it is, and still gives its manifest's test metrics."""

from __future__ import annotations

import pytest
import torch

from vidpred.config import get_profile
from vidpred.data import windows
from vidpred.evaluate import evaluate_model
from vidpred.runs import data_identity, shipped_manifest, shipped_runs

MANIFEST = shipped_manifest("book")
pytestmark = pytest.mark.skipif(MANIFEST is None, reason="no checkpoints are shipped for the book profile")


@pytest.fixture(scope="module")
def book_data():
    return windows(get_profile("book").data)


def test_every_shipped_model_matches_its_manifest(book_data):
    runs = shipped_runs("book")
    assert not runs.skipped
    assert set(runs.runs) == set(MANIFEST["models"])
    identity = data_identity(get_profile("book").data, book_data["train"].clips)
    assert MANIFEST["data"] == identity  # the embedded data still renders to the same pixels
    for name, run in runs.runs.items():
        entry = MANIFEST["models"][name]
        assert run.data == identity and run.steps == entry["steps"]
        assert run.state["model_config"] == entry["model_config"] and "optimizer" not in run.state
        torch.manual_seed(0)
        result = evaluate_model(run.model(), book_data["test"])
        for metric in ("mse", "moving_mse", "ssim"):
            assert result[metric] == pytest.approx(entry["test"][metric], rel=1e-3), (name, metric)


def test_shipped_models_beat_the_best_baseline(book_data):
    """The claim the book makes, checked against the numbers the manifest records."""
    assert set(MANIFEST["baselines"]) == {"copy_last", "context_mean", "blend", "analogue"}
    best_mse = min(b["mse"] for b in MANIFEST["baselines"].values())
    best_moving = min(b["moving_mse"] for b in MANIFEST["baselines"].values())
    for name, entry in MANIFEST["models"].items():
        assert entry["test"]["mse"] < best_mse, name
        assert entry["test"]["moving_mse"] < best_moving, name
