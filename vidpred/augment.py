"""Augmentation of training windows: what a camera, a room and a person could change without changing the motion.

Real footage varies in what the synthetic world holds fixed: which way the person faces, how bright the room is,
how far the camera stands. Each training window gets, the same for all 45 of its frames (so the motion is intact):

* a mirror image (left-right) with probability 1/2;
* a brightness and contrast change (contrast ×0.8-1.25 around the window's mean, brightness ±0.08);
* with probability 1/2, a zoom in (×1-1.15) and a shift (up to the margin the zoom leaves) by bilinear
  resampling: a camera a little closer or to one side.

All draws come from torch's global generator, which checkpoints save, so a resumed run sees the same windows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CONTRAST = (0.8, 1.25)
BRIGHTNESS = 0.08
ZOOM = 1.15
P_ZOOM = 0.5


def _uniform(low: float, high: float, n: int, device) -> torch.Tensor:
    return torch.rand(n).to(device) * (high - low) + low


def augment_video(video: torch.Tensor) -> torch.Tensor:
    """A randomly changed copy of ``video`` (B, T, 1, H, W) in [0, 1]; one draw per window, shared by its frames."""
    batch, length, channels, height, width = video.shape
    device = video.device
    flip = torch.rand(batch) < 0.5
    contrast = _uniform(*CONTRAST, batch, device).view(batch, 1, 1, 1, 1)
    brightness = _uniform(-BRIGHTNESS, BRIGHTNESS, batch, device).view(batch, 1, 1, 1, 1)
    zoom = torch.where(torch.rand(batch) < P_ZOOM, _uniform(1.0, ZOOM, batch, "cpu"), torch.ones(batch))
    margin = 1 - 1 / zoom  # how far (in the [-1, 1] grid) the zoomed view can move and stay inside the frame
    shift = (torch.rand(batch, 2) * 2 - 1) * margin[:, None]
    out = torch.where(flip.to(device).view(batch, 1, 1, 1, 1), video.flip(-1), video)
    if bool((zoom > 1).any()):
        theta = torch.zeros(batch, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / zoom
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta.to(device, video.dtype), (batch, length * channels, height, width), align_corners=False)
        moved = F.grid_sample(out.reshape(batch, length * channels, height, width), grid, mode="bilinear",
                              padding_mode="border", align_corners=False).view_as(out)
        out = torch.where((zoom > 1).to(device).view(batch, 1, 1, 1, 1), moved, out)
    mean = out.mean(dim=(1, 2, 3, 4), keepdim=True)
    return ((out - mean) * contrast + mean + brightness).clamp(0, 1)


def augment_window(context: torch.Tensor, future: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`augment_video` on a (context, future) batch, split back at the same frame."""
    video = augment_video(torch.cat([context, future], 1))
    return video[:, : context.shape[1]], video[:, context.shape[1] :]
