"""The self-check read-out: a recurrent model's future trusted as far as its one-step predictions of the last
context frames beat copy-last's; nothing in training, no effect on what a run is, and shipping a checkpoint again
with it trains nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vidpred.checkpoints import run_identity
from vidpred.config import get_profile
from vidpred.models import build
from vidpred.models.selfcheck import RECENT, self_check, trust
from vidpred.models.stillness import hold_still

ROOT = Path(__file__).resolve().parents[1]


def sliding_square(batch: int = 2, size: int = 16) -> torch.Tensor:
    """(batch, 30, 1, size, size): a 4×4 square moving one pixel per frame, 0.2 brighter than the background (a
    prediction twice as far off as copy-last stays inside [0, 1])."""
    context = torch.full((batch, 30, 1, size, size), 0.4)
    for t in range(30):
        x = t % (size - 4)
        context[:, t, :, 6:10, x : x + 4] = 0.6
    return context


def test_trust_is_copy_lasts_error_over_the_models():
    context = sliding_square()
    copy_last = context[:, :-1]  # one-step predictions that are copy-last's: frame t predicted by frame t − 1
    far_off = context[:, 1:] + 2 * (context[:, :-1] - context[:, 1:])  # twice copy-last's departure: 4x its error
    assert torch.equal(trust(context, context[:, 1:], 1.0), torch.ones(2, 1, 1, 1, 1))  # better than copy-last
    assert torch.allclose(trust(context, copy_last, 1.0), torch.ones(2, 1, 1, 1, 1))
    assert torch.allclose(trust(context, far_off, 1.0), torch.full((2, 1, 1, 1, 1), 0.25))
    assert torch.allclose(trust(context, far_off, 2.0), torch.full((2, 1, 1, 1, 1), 0.5))
    prediction = torch.rand(2, 15, 1, 16, 16)
    last = context[:, -1:]
    assert torch.allclose(self_check(prediction, context, far_off, 1.0), last + 0.25 * (prediction - last))
    assert torch.equal(self_check(prediction, context, far_off, 0.0), prediction)  # 0: off


def test_only_the_last_frames_are_checked():
    context = sliding_square()
    seen = context[:, 1:].clone()
    seen[:, : -RECENT] = 1 - seen[:, : -RECENT]  # far off early in the context, exact in the last RECENT frames
    assert torch.equal(trust(context, seen, 1.0), torch.ones(2, 1, 1, 1, 1))
    seen[:, -1] = 1 - seen[:, -1]  # far off on the last one
    assert float(trust(context, seen, 1.0).max()) < 0.5


def test_it_commutes_with_hold_still():
    context = sliding_square()
    prediction, seen = torch.rand(2, 15, 1, 16, 16), torch.rand(2, 29, 1, 16, 16)
    assert torch.allclose(hold_still(self_check(prediction, context, seen, 1.0), context, 0.3),
                          self_check(hold_still(prediction, context, 0.3), context, seen, 1.0), atol=1e-6)


@pytest.mark.parametrize("name", ["convlstm", "predrnn", "predrnn_v2"])
def test_recurrent_models_check_themselves_in_eval_only(name):
    context = sliding_square(size=32)
    config = get_profile("smoke").model_config(name)
    torch.manual_seed(0)
    plain = build(name, **config)
    torch.manual_seed(0)
    checked = build(name, **config, self_check=0.5)  # an untrained model is about as good as copy-last: 0.5 acts
    with torch.no_grad():
        assert torch.equal(plain.train()(context, 15), checked.train()(context, 15))  # training never sees it
        seen = plain.eval().rollout(context, None, 15)[0][:, :29]
        plain_eval, checked_eval = plain(context, 15), checked.eval()(context, 15)
    assert torch.allclose(checked_eval, self_check(plain_eval, context, seen, 0.5), atol=1e-6)
    assert float(trust(context, seen, 0.5).max()) < 1
    assert not torch.allclose(checked_eval, plain_eval)
    prof = get_profile("smoke")
    cfg = prof.train_config(name)
    assert run_identity(plain, prof.data, cfg) == run_identity(checked, prof.data, cfg)  # not part of the run


def test_refresh_ships_a_checkpoint_again_with_the_profiles_options_and_refuses_another_model(tmp_path, monkeypatch):
    from vidpred import pretrained

    monkeypatch.setattr(pretrained, "HERE", tmp_path)
    folder = tmp_path / "smoke"
    (folder / "convlstm").mkdir(parents=True)
    config = get_profile("smoke").model_config("convlstm")
    torch.manual_seed(0)
    old = build("convlstm", **config, hold_still=0.5, self_check=2.0)  # options since changed in the profile

    def write(model):
        state = {"model_config": model.config_dict(), "state_dict": model.state_dict(), "train_config": {"steps": 3},
                 "data_config": {}, "step": 3, "train_seconds": 1.0, "device": "cpu", "precision": "float32",
                 "torch_version": str(torch.__version__)}
        torch.save(state, folder / "convlstm" / "last.pt")

    write(old)
    (folder / "manifest.json").write_text(json.dumps({"baselines": {"blend": {"mse": 1.0, "moving_mse": 1.0}},
                                                      "models": {"convlstm": {}}}))
    manifest = pretrained.refresh("smoke", ["convlstm"])
    shipped = torch.load(folder / "convlstm" / "last.pt", weights_only=True)
    assert shipped["model_config"] == build("convlstm", **config).config_dict()  # the profile's options now
    assert all(torch.equal(shipped["state_dict"][k], v) for k, v in old.state_dict().items())  # the same weights
    entry = manifest["models"]["convlstm"]
    assert entry["steps"] == 3 and entry["model_config"] == shipped["model_config"] and 0 < entry["test"]["mse"] < 1
    assert json.loads((folder / "manifest.json").read_text())["models"]["convlstm"] == json.loads(json.dumps(entry))

    write(build("convlstm", **{**config, "hidden": (4,)}))  # trained as another model: that needs training
    with pytest.raises(SystemExit, match="trained with another model config than the smoke profile's; re-create"):
        pretrained.refresh("smoke", ["convlstm"])


def test_bench_stillness_reports_the_self_check_off_and_on(monkeypatch):
    """``vidpred bench stillness`` gives, for a model with a self-check, its validation and test MSE with it off
    and on at the chosen threshold: on is the model as it predicts; off equals the model built without it."""
    from vidpred import runs as runs_module
    from vidpred.bench.stillness import bench_stillness, held_mse
    from vidpred.data import windows

    config = get_profile("smoke").model_config("convlstm")
    torch.manual_seed(0)
    model = build("convlstm", **config, self_check=0.5)
    state = {"model": "convlstm", "model_config": model.config_dict(), "state_dict": model.state_dict(), "step": 0}

    class Shipped(runs_module.Run):
        def describe(self) -> str:
            return "an untrained convlstm"

    found = runs_module.RunSet({"convlstm": Shipped("convlstm", ROOT / "none.pt", state)})
    monkeypatch.setattr(runs_module, "runs_for", lambda *args, **kwargs: found)
    result = bench_stillness("smoke", thresholds=(0.0, 0.3))
    assert torch.is_grad_enabled()  # the bench left the process as it found it (a later training needs gradients)
    entry = result["self_check"]["convlstm"]
    chosen = result["chosen"]
    assert entry["tau"] == 0.5 and entry["val_mse"]["on"] == result["val_mse"]["convlstm"][(0.0, 0.3).index(chosen)]
    plain = build("convlstm", **config)
    plain.load_state_dict(model.state_dict())
    val = windows(get_profile("smoke").data)["val"]
    assert entry["val_mse"]["off"] == pytest.approx(held_mse(plain.eval(), val, (chosen,))[chosen], rel=1e-6)
    assert entry["val_mse"]["off"] != pytest.approx(entry["val_mse"]["on"], rel=1e-4)  # it changed the prediction
