"""Augmentation changes what a camera, a room and a person could change, never the motion: one draw per window."""

from __future__ import annotations

import torch

from vidpred.augment import augment_video, augment_window
from vidpred.train import load_checkpoint


def video(batch=64, length=45):
    torch.manual_seed(1)
    frames = torch.rand(batch, 1, 1, 64, 64) * 0.5 + 0.25
    return frames.expand(batch, length, 1, 64, 64).clone()  # a still video per window


def test_shape_range_and_a_still_video_stays_still():
    still = video()
    out = augment_video(still)
    assert out.shape == still.shape and out.dtype == still.dtype
    assert out.min() >= 0 and out.max() <= 1
    # one draw per window for all of its frames: a video that does not move still does not move
    assert torch.equal(out, out[:, :1].expand_as(out))
    assert not torch.equal(out, still)


def test_each_kind_of_change_happens_and_the_draws_follow_the_seed():
    frames = torch.zeros(256, 2, 1, 64, 64)
    frames[..., :, :32] = 0.8  # bright left half: a mirror image is bright on the right
    torch.manual_seed(0)
    out = augment_video(frames)
    left, right = out[:, 0, 0, :, :16].mean((1, 2)), out[:, 0, 0, :, 48:].mean((1, 2))
    flipped = right > left
    assert 0.35 < flipped.float().mean() < 0.65  # half are mirrored
    means = out.mean((1, 2, 3, 4))
    assert means.std() > 0.02  # brightness and contrast vary by window
    row = out[:, 0, 0, 32]  # the edge between the halves: at column 32, or moved by a zoom and a shift
    steepest = (row[:, 1:] - row[:, :-1]).abs().argmax(1)
    assert (steepest == 31).float().mean() > 0.4 and len(steepest.unique()) > 5
    torch.manual_seed(0)
    assert torch.equal(augment_video(frames), out)


def test_window_is_split_back_at_the_same_frame():
    context, future = torch.rand(4, 30, 1, 64, 64), torch.rand(4, 15, 1, 64, 64)
    torch.manual_seed(3)
    a, b = augment_window(context, future)
    torch.manual_seed(3)
    whole = augment_video(torch.cat([context, future], 1))
    assert a.shape == context.shape and b.shape == future.shape
    assert torch.equal(torch.cat([a, b], 1), whole)


def test_a_checkpoint_from_before_augmentation_loads_with_it_off(tmp_path):
    from vidpred.models import build
    from vidpred.train import save_checkpoint

    model = build("copy_last")
    state = {"model": "copy_last", "model_config": model.config_dict(), "data_config": {},
             "train_config": {"steps": 8}, "state_dict": {}}
    save_checkpoint(tmp_path / "old.pt", state)
    assert load_checkpoint(tmp_path / "old.pt")["train_config"]["augment"] is False
