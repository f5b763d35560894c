"""Videos in and out: mp4 (H.264, browser-playable) and gif writing, OpenCV reading, comparison grids."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch


def to_uint8(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """(T, 1, H, W) / (T, H, W) floats in [0, 1] or uint8 -> (T, H, W) uint8."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().float().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim == 4:
        frames = frames[:, 0]
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)


def _rgb(frames: np.ndarray) -> np.ndarray:
    """(T, H, W) or (T, H, W, 3) uint8 -> (T, H, W, 3), even height and width (H.264 needs them)."""
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def write_video(path: str | Path, frames: np.ndarray, fps: float = 8.0, preset: str = "medium") -> Path:
    """Write (T, H, W[, 3]) uint8 frames as .mp4 (H.264, yuv420p, through moviepy) or .gif, every frame kept.

    ``preset`` is x264's speed/size trade-off for .mp4 ("veryfast" halves the encoding time of a short clip).

    moviepy 2 drops the last frame unless the clip's duration is set to exactly T / fps; its GIF writer
    drops it even then (a float rounding in its frame times), so GIFs are written with imageio.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ValueError(f"{path}: write .mp4 or .gif")
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = _rgb(np.asarray(frames))
    if suffix == ".gif":
        import imageio.v3 as iio

        iio.imwrite(path, rgb, extension=".gif", duration=1000 / fps, loop=0)
        return path
    from moviepy import ImageSequenceClip

    clip = ImageSequenceClip(list(rgb), fps=fps).with_duration(len(rgb) / fps)
    try:
        clip.write_videofile(str(path), fps=fps, codec="libx264", audio=False, logger=None, preset=preset,
                             ffmpeg_params=["-pix_fmt", "yuv420p"])
    finally:
        clip.close()
    return path


def read_video(path: str | Path) -> np.ndarray:
    """Every frame of a video as (T, H, W, 3) uint8 RGB, read with OpenCV (gifs through imageio)."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        import imageio.v3 as iio

        frames = iio.imread(path, index=None)
        return frames[..., :3] if frames.ndim == 4 else np.repeat(frames[..., None], 3, -1)
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"{path}: OpenCV cannot open it")
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    if not frames:
        raise ValueError(f"{path}: no frame could be decoded")
    return np.stack(frames)


def error_map(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """|prediction − truth| as a colour map (T, H, W, 3) uint8 (inferno, black = no error)."""
    diff = np.abs(prediction.astype(np.int16) - truth.astype(np.int16)).astype(np.uint8)
    return np.stack([cv2.cvtColor(cv2.applyColorMap(d, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB) for d in diff])


def comparison_grid(truth: np.ndarray, predictions: dict[str, np.ndarray], context: np.ndarray | None = None,
                    scale: int = 3, with_error: bool = True, columns: int | None = None) -> np.ndarray:
    """Side-by-side video (T, H', W', 3) uint8: ground truth | each model [| its error], labelled.

    All inputs are (T, H, W) uint8 of the predicted horizon. With ``context`` the video first plays
    the context in every panel, then the predictions; a footer counts the frames ("context -2",
    "predicted +3"). Panels are upscaled by ``scale`` (nearest neighbour) to be seen, and their labels
    grow with them. ``columns`` wraps the panels into rows of at most that many (the last row padded
    with black), so that many models still fit a page's text column at a legible size.
    """
    names = list(predictions)
    videos: list[tuple[str, np.ndarray]] = [("ground truth", truth)]
    for name in names:
        videos.append((name, predictions[name]))
    if with_error:
        videos += [(f"{name} error", error_map(predictions[name], truth)) for name in names]
    if context is not None:
        videos = [(label, np.concatenate([_rgb(context), _rgb(video)])) for label, video in videos]
    n_frames = len(videos[0][1])
    n_context = 0 if context is None else len(context)
    header, font = max(14, 7 * scale), max(0.32, 0.16 * scale)  # scale 2: 14 px and 0.32, as always
    panels = []
    for label, video in videos:
        video = _rgb(video)
        big = np.stack([cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) for f in video])
        strip = np.zeros((n_frames, header + big.shape[1], big.shape[2], 3), np.uint8)
        strip[:, header:] = big
        for t in range(n_frames):
            cv2.putText(strip[t], label[:22], (2, header - 4), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), 1,
                        cv2.LINE_AA)
        panels.append(np.pad(strip, ((0, 0), (0, 0), (0, 2), (0, 0))))
    per_row = columns or len(panels)
    rows = [panels[i : i + per_row] for i in range(0, len(panels), per_row)]
    rows[-1] += [np.zeros_like(panels[0])] * (per_row - len(rows[-1])) if len(rows) > 1 else []
    grid = np.concatenate([np.pad(np.concatenate(row, axis=2), ((0, 0), (0, 2 if i < len(rows) - 1 else 0), (0, 0),
                                                                (0, 0)))
                           for i, row in enumerate(rows)], axis=1)
    footer_height, footer_font = max(14, 7 * scale), max(0.35, 0.17 * scale)
    footer = np.zeros((n_frames, footer_height, grid.shape[2], 3), np.uint8)
    for t in range(n_frames):  # context frames count back from the last one (-1); predictions count on (+1 …)
        text = f"context {t - n_context}" if t < n_context else f"predicted +{t - n_context + 1}"
        cv2.putText(footer[t], text, (2, footer_height - 4), cv2.FONT_HERSHEY_SIMPLEX, footer_font, (200, 200, 200), 1,
                    cv2.LINE_AA)
    return np.concatenate([grid, footer], axis=1)
