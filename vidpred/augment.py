"""Augmentation of training windows: what a camera, a room and a person could change without changing the motion.

Real footage varies in what the synthetic world holds fixed: which way the person faces, how bright the room is,
how far the camera stands. Each training window gets, the same for all 45 of its frames (so the motion is intact):

* a mirror image (left-right) with probability 1/2;
* a brightness and contrast change (contrast ×0.8-1.25 around the window's mean, brightness ±0.08);
* with probability 1/2, a zoom in (×1-1.15) and a shift (up to the margin the zoom leaves) by bilinear
  resampling: a camera a little closer or to one side.

Two more change the motion's timing, each for a share of the windows set in the training config (0: never, and
then they draw nothing from the generator):

* **slow motion** (``TrainConfig.slow``): the window replays its own start at a speed between 1/32 and 1
  (log-uniform), each frame interpolated linearly between its two neighbours;
* **a pause** (``TrainConfig.pause``): the person stops at one of the last 12 to 2 context frames and holds that
  frame to the end of the window;
* **played backward** (``TrainConfig.reverse``): the window's last frame first. An exercise goes down and up the
  same way, so a reversed window is still a person exercising, with the phases of each repetition swapped;
* **a camera farther away** (``TrainConfig.zoom_out``): the frames shrunk to a scale between 0.65 and 1 and
  placed anywhere they fit, the edges continued outward; other people are filmed from further away than the
  real set's, smaller in the frame.

The real set is people repeating an exercise at its usual pace, so a model trained on it alone learns that what
moved keeps moving and what the context showed earlier comes back; on a one-off movement that then stops (a person
who reaches for a cup and holds it) it redraws earlier poses. People also slow down and stop, between repetitions
and in any other video; these windows show it. The real set is also mostly push-ups filmed close up: windows played
backward and filmed from farther away widen what it shows (what each change does on the real validation split:
``config.REAL_TRAIN``).

All draws come from torch's global generator, which checkpoints save, so a resumed run sees the same windows.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CONTRAST = (0.8, 1.25)
BRIGHTNESS = 0.08
ZOOM = 1.15
P_ZOOM = 0.5
SLOWEST = 1 / 32  # the slowest replay speed of a slow-motion window
PAUSE_FROM = (12, 2)  # a pause starts at one of the last 12 to 2 context frames
SMALLEST = 0.65  # the smallest scale of a window zoomed out (a camera farther away)


def _uniform(low: float, high: float, n: int, device) -> torch.Tensor:
    return torch.rand(n).to(device) * (high - low) + low


def _view(video: torch.Tensor, span: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each window of ``video`` (B, T, C, H, W) through its own view of the frame: output pixel coordinates
    (in [-1, 1]) times ``span`` (B,) plus ``shift`` (B, 2) (x, y) give where it reads the frame, bilinearly, the
    edge pixels continued outward. ``span`` < 1 zooms in, > 1 zooms out; the same view for every frame."""
    batch, length, channels, height, width = video.shape
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = span
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(video.device, video.dtype), (batch, length * channels, height, width),
                         align_corners=False)
    return F.grid_sample(video.reshape(batch, length * channels, height, width), grid, mode="bilinear",
                         padding_mode="border", align_corners=False).view_as(video)


def augment_video(video: torch.Tensor) -> torch.Tensor:
    """A randomly changed copy of ``video`` (B, T, 1, H, W) in [0, 1]; one draw per window, shared by its frames."""
    batch = video.shape[0]
    device = video.device
    flip = torch.rand(batch) < 0.5
    contrast = _uniform(*CONTRAST, batch, device).view(batch, 1, 1, 1, 1)
    brightness = _uniform(-BRIGHTNESS, BRIGHTNESS, batch, device).view(batch, 1, 1, 1, 1)
    zoom = torch.where(torch.rand(batch) < P_ZOOM, _uniform(1.0, ZOOM, batch, "cpu"), torch.ones(batch))
    margin = 1 - 1 / zoom  # how far (in the [-1, 1] grid) the zoomed view can move and stay inside the frame
    shift = (torch.rand(batch, 2) * 2 - 1) * margin[:, None]
    out = torch.where(flip.to(device).view(batch, 1, 1, 1, 1), video.flip(-1), video)
    if bool((zoom > 1).any()):
        out = torch.where((zoom > 1).to(device).view(batch, 1, 1, 1, 1), _view(out, 1 / zoom, shift), out)
    mean = out.mean(dim=(1, 2, 3, 4), keepdim=True)
    return ((out - mean) * contrast + mean + brightness).clamp(0, 1)


def _frames_at(video: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``video`` (B, T, …) with frame ``index[b, t]`` of window b at place t."""
    return video[torch.arange(video.shape[0], device=video.device)[:, None], index.to(video.device)]


def slow_down(video: torch.Tensor, p: float, slowest: float = SLOWEST) -> torch.Tensor:
    """With probability ``p`` per window, ``video`` (B, T, 1, H, W) replays its start at a speed s, log-uniform in
    [``slowest``, 1]: frame t shows time s·t, interpolated linearly between the frames on either side."""
    batch, length = video.shape[:2]
    chosen = torch.rand(batch) < p
    speed = torch.where(chosen, torch.exp(torch.rand(batch) * math.log(slowest)), torch.ones(batch))
    time = torch.arange(length, dtype=torch.float32)[None] * speed[:, None]  # (B, T)
    before = time.floor().long().clamp(max=length - 1)
    after = (before + 1).clamp(max=length - 1)
    weight = (time - before).view(batch, length, 1, 1, 1).to(video.device, video.dtype)
    return (1 - weight) * _frames_at(video, before) + weight * _frames_at(video, after)


def pause(video: torch.Tensor, p: float, n_context: int, start: tuple[int, int] = PAUSE_FROM) -> torch.Tensor:
    """With probability ``p`` per window, the motion of ``video`` (B, T, 1, H, W) stops at context frame
    ``n_context − k`` (k uniform in ``start``, inclusive) and that frame holds to the end of the window."""
    batch, length = video.shape[:2]
    chosen = torch.rand(batch) < p
    stop = torch.randint(n_context - start[0], n_context - start[1] + 1, (batch,))
    time = torch.arange(length)[None]
    return _frames_at(video, torch.where(chosen[:, None] & (time > stop[:, None]), stop[:, None], time))


def play_backward(video: torch.Tensor, p: float) -> torch.Tensor:
    """With probability ``p`` per window, ``video`` (B, T, 1, H, W) played backward: its last frame first."""
    chosen = torch.rand(video.shape[0]) < p
    return torch.where(chosen.to(video.device).view(-1, 1, 1, 1, 1), video.flip(1), video)


def zoom_out(video: torch.Tensor, p: float, smallest: float = SMALLEST) -> torch.Tensor:
    """With probability ``p`` per window, ``video`` (B, T, 1, H, W) as a camera farther away would film it: every
    frame shrunk to a scale s uniform in [``smallest``, 1] (bilinear), moved anywhere the shrunken frame stays
    inside, its edge pixels continued outward. One draw per window, shared by its frames."""
    batch = video.shape[0]
    chosen = torch.rand(batch) < p
    scale = torch.where(chosen, torch.rand(batch) * (1 - smallest) + smallest, torch.ones(batch))
    shift = (torch.rand(batch, 2) * 2 - 1) * (1 / scale - 1)[:, None]  # the room left inside the frame
    # 1 / scale > 1: the view takes in more than the frame, so the frame shrinks
    return torch.where(chosen.to(video.device).view(batch, 1, 1, 1, 1), _view(video, 1 / scale, shift), video)


def augment_window(context: torch.Tensor, future: torch.Tensor, photometric: bool = True, slow: float = 0.0,
                   pause_p: float = 0.0, reverse: float = 0.0,
                   zoom_out_p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A (context, future) batch played backward (share ``reverse``), slowed down (share ``slow``), paused (share
    ``pause_p``), zoomed out (share ``zoom_out_p``) and then, with ``photometric``, changed by
    :func:`augment_video`; split back at the same frame."""
    video = torch.cat([context, future], 1)
    if reverse:
        video = play_backward(video, reverse)
    if slow:
        video = slow_down(video, slow)
    if pause_p:
        video = pause(video, pause_p, context.shape[1])
    if zoom_out_p:
        video = zoom_out(video, zoom_out_p)
    if photometric:
        video = augment_video(video)
    return video[:, : context.shape[1]], video[:, context.shape[1] :]
