"""Augmentation changes what a camera, a room and a person could change, never the motion: one draw per window."""

from __future__ import annotations

import torch

from vidpred.augment import (
    PAUSE_FROM,
    SLOWEST,
    SMALLEST,
    augment_video,
    augment_window,
    pause,
    play_backward,
    slow_down,
    zoom_out,
)
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
    train_config = load_checkpoint(tmp_path / "old.pt")["train_config"]
    assert train_config["augment"] is False and train_config["slow"] == 0 and train_config["pause"] == 0
    assert train_config["reverse"] == 0 and train_config["zoom_out"] == 0


def ramp(batch=256, length=45):
    """Frame t of every window is the flat image t / 100: its value says which moment of the video it shows."""
    return (torch.arange(length, dtype=torch.float32) / 100).view(1, length, 1, 1, 1).expand(batch, length, 1, 4, 4)


def test_slow_motion_replays_the_start_of_the_window_at_one_speed_per_window():
    torch.manual_seed(0)
    out = slow_down(ramp(), 0.5)
    shown = out[:, :, 0, 0, 0] * 100  # the moment each frame shows
    assert torch.equal(out, out[..., :1, :1].expand_as(out))  # whole frames, interpolated in time only
    assert torch.allclose(shown[:, 0], torch.zeros(256))
    steps = shown[:, 1:] - shown[:, :-1]
    speed = steps[:, :1]
    assert torch.allclose(steps, speed.expand_as(steps), atol=1e-4)  # one speed per window, held throughout
    slowed = speed[:, 0] < 1 - 1e-4
    assert 0.35 < slowed.float().mean() < 0.65  # half of the windows
    assert speed.min() >= SLOWEST - 1e-5 and speed.max() <= 1 + 1e-5
    assert torch.equal(out[~slowed], ramp()[~slowed])  # the rest are untouched


def test_a_pause_holds_one_late_context_frame_to_the_end_of_the_window():
    torch.manual_seed(0)
    out = pause(ramp(), 0.5, n_context=30)
    shown = (out[:, :, 0, 0, 0] * 100).round().long()
    paused = shown[:, -1] < 44
    assert 0.35 < paused.float().mean() < 0.65
    stop = shown[paused, -1]
    assert stop.min() >= 30 - PAUSE_FROM[0] and stop.max() <= 30 - PAUSE_FROM[1]
    assert len(stop.unique()) == PAUSE_FROM[0] - PAUSE_FROM[1] + 1  # every allowed stop happens
    time = torch.arange(45)
    assert torch.equal(shown[paused], torch.minimum(time[None], stop[:, None]))  # moves until the stop, then holds
    assert torch.equal(shown[~paused], time.expand(int((~paused).sum()), 45))


def test_timing_changes_off_draw_nothing_and_on_follow_the_seed():
    context, future = torch.rand(8, 30, 1, 8, 8), torch.rand(8, 15, 1, 8, 8)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    a, b = augment_window(context, future, photometric=False)
    assert torch.equal(a, context) and torch.equal(b, future)
    assert torch.equal(torch.get_rng_state(), before)  # a run without them resumes exactly as before they existed
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        runs.append(torch.cat(augment_window(context, future, photometric=False, slow=0.5, pause_p=0.5, reverse=0.5,
                                             zoom_out_p=0.5), 1))
    assert torch.equal(*runs) and not torch.equal(runs[0], torch.cat([context, future], 1))


def test_played_backward_shows_the_last_frame_first_in_half_the_windows():
    torch.manual_seed(2)
    out = play_backward(ramp(), 0.5)
    shown = (out[:, :, 0, 0, 0] * 100).round().long()  # which moment each frame shows
    backward = shown[:, 0] == 44
    assert 0.35 < backward.float().mean() < 0.65
    time = torch.arange(45)
    assert torch.equal(shown[backward], (44 - time).expand(int(backward.sum()), 45))
    assert torch.equal(shown[~backward], time.expand(int((~backward).sum()), 45))


def test_zoom_out_shrinks_the_whole_window_alike_and_keeps_it_inside_the_frame():
    frames = torch.zeros(256, 3, 1, 64, 64)
    frames[..., 16:48, 16:48] = 1.0  # a bright square, 32×32, still in all three frames
    torch.manual_seed(4)
    out = zoom_out(frames, 0.5)
    assert out.shape == frames.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, out[:, :1].expand_as(out))  # one draw per window: a still video stays still
    area = out[:, 0, 0].sum((1, 2))
    zoomed = ~torch.isclose(area, torch.tensor(32.0 * 32))
    assert 0.35 < zoomed.float().mean() < 0.65
    assert torch.equal(out[~zoomed], frames[~zoomed])  # the rest are untouched
    # the square shrinks by the scale in each direction: its area by s², s in [SMALLEST, 1]
    assert (area[zoomed] < 32 * 32).all() and (area[zoomed] > (32 * SMALLEST) ** 2 - 64).all()
    # anywhere inside: the frame's edge (dark around the square) stays dark, the square is never cut off
    bright = out[zoomed, 0, 0] > 0.5
    assert not bright[:, 0].any() and not bright[:, -1].any() and not bright[:, :, 0].any()
    centres = (bright.float() * torch.arange(64.0)).sum((1, 2)) / bright.sum((1, 2)).clamp_min(1)
    assert centres.std() > 1  # in pixels: the shrunken frames are shifted, not all kept in the middle
