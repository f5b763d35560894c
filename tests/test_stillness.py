"""The hold-still read-out: exact copies where the context is still, the model's frame where it moved, nothing in
training, and no effect on what a run is."""

from __future__ import annotations

import pytest
import torch

from vidpred.checkpoints import run_dir, run_identity
from vidpred.config import get_profile
from vidpred.models import build
from vidpred.models.stillness import STILL_WINDOW, hold_still, stillness


def a_context(batch: int = 2, size: int = 32) -> torch.Tensor:
    """A still scene (random pixels, the same in every frame) with one 4×4 square that flickers by 0.5."""
    torch.manual_seed(0)
    context = torch.rand(batch, 1, 1, size, size).repeat(1, 30, 1, 1, 1)
    context[:, 1::2, :, 4:8, 4:8] += 0.5
    return context.clamp(0, 1)


def test_still_pixels_are_the_last_frame_exactly_and_moving_ones_the_models():
    context = a_context()
    prediction = torch.rand(2, 15, 1, 32, 32)
    held = hold_still(prediction, context, 0.3)
    reach = STILL_WINDOW // 2  # pixels this close to the flicker count as moving
    far = torch.ones(32, 32, dtype=torch.bool)
    far[4 - reach: 8 + reach, 4 - reach: 8 + reach] = False
    last = context[:, -1:].expand_as(prediction)
    assert torch.equal(held[..., far], last[..., far])
    assert torch.equal(held[..., 4:8, 4:8], prediction[..., 4:8, 4:8])  # moved by more than the threshold
    assert stillness(context, 0.3).shape == (2, 1, 1, 32, 32)


def test_threshold_zero_changes_nothing_and_a_change_below_it_is_held_in_part():
    context, prediction = a_context(), torch.rand(2, 15, 1, 32, 32)
    assert torch.equal(hold_still(prediction, context, 0.0), prediction)
    weight = stillness(context, 1.0)  # the flicker (0.5, or less where clipped at 1) is below 1: held in part
    assert float(weight[..., 5, 5].min()) > 0 and float(weight[..., 5, 5].max()) <= 0.5 + 1e-6


def test_models_hold_still_in_eval_only():
    context = a_context(size=64)
    for name in ("convlstm", "transformer"):
        torch.manual_seed(0)
        plain = build(name, **get_profile("smoke").model_config(name))
        torch.manual_seed(0)
        held = build(name, **get_profile("smoke").model_config(name), hold_still=0.3)
        with torch.no_grad():
            plain_eval, held_eval = plain.eval()(context, 15), held.eval()(context, 15)
            plain_train, held_train = plain.train()(context, 15), held.train()(context, 15)
        assert torch.equal(plain_train, held_train)  # training never sees it
        assert torch.allclose(held_eval, hold_still(plain_eval, context, 0.3))
        assert not torch.equal(held_eval, plain_eval)


def test_hold_still_is_not_part_of_what_a_run_is(tmp_path):
    prof = get_profile("smoke")
    plain = build("convlstm", **prof.model_config("convlstm"))
    held = build("convlstm", **prof.model_config("convlstm"), hold_still=0.3)
    cfg = prof.train_config("convlstm")
    assert run_identity(plain, prof.data, cfg) == run_identity(held, prof.data, cfg)
    assert run_dir(tmp_path, plain, prof.data, cfg) == run_dir(tmp_path, held, prof.data, cfg)
    assert "hold_still" not in run_identity(held, prof.data, cfg)["model_config"]


def test_held_mse_counts_each_threshold_once_and_equals_the_plain_mse():
    """``vidpred bench stillness`` scores the test split at (0, chosen): when the choice is 0 (off), that is one
    threshold given twice, and its MSE must not double."""
    from vidpred.bench.stillness import held_mse

    torch.manual_seed(0)
    model = build("convlstm", **get_profile("smoke").model_config("convlstm")).eval()
    windows = [(torch.rand(30, 1, 64, 64), torch.rand(15, 1, 64, 64)) for _ in range(3)]
    with torch.no_grad():
        expected = float(torch.stack([(model(c[None], 15) - f[None]).square().mean() for c, f in windows]).mean())
    assert held_mse(model, windows, (0.0, 0.0)) == pytest.approx({0.0: expected}, rel=1e-5)
    assert held_mse(model, windows, (0.0,))[0.0] == pytest.approx(expected, rel=1e-5)


def test_evaluation_measures_a_model_with_and_without_its_read_out_in_one_pass():
    """``evaluate_model`` reports a held model's MSE without the read-out from the same forward pass: equal to
    evaluating the model with it off, while every other metric is the model's as shipped (read-out on)."""
    from vidpred.evaluate import evaluate_model

    context = a_context(batch=3, size=64)
    windows = [(context[i], (context[i, -15:] + 0.05 * torch.rand(15, 1, 64, 64)).clamp(0, 1)) for i in range(3)]
    torch.manual_seed(0)
    model = build("convlstm", **get_profile("smoke").model_config("convlstm"), hold_still=0.3)
    held = evaluate_model(model, windows, batch_size=2)
    model.config.hold_still = 0.0
    plain = evaluate_model(model, windows, batch_size=2)
    assert "mse_without_hold_still" not in plain
    assert held["mse_without_hold_still"] == pytest.approx(plain["mse"], rel=1e-6)
    assert held["mse"] != pytest.approx(plain["mse"], rel=1e-3)  # the read-out changed the prediction
    assert model.config.hold_still == 0.0  # evaluation put the threshold back as it found it
    model.config.hold_still = 0.3
    evaluate_model(model, windows, batch_size=2)
    assert model.config.hold_still == 0.3


def test_read_out_off_puts_the_threshold_back_even_after_an_error():
    from vidpred.models.stillness import read_out_off

    model = build("convlstm", **get_profile("smoke").model_config("convlstm"), hold_still=0.3)
    with pytest.raises(RuntimeError, match="inside"), read_out_off(model) as threshold:
        assert threshold == 0.3 and model.config.hold_still == 0.0
        raise RuntimeError("inside")
    assert model.config.hold_still == 0.3
    with read_out_off(build("copy_last")) as threshold:  # a baseline has no read-out
        assert threshold == 0.0
