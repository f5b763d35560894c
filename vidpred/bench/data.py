"""``vidpred bench data``: the data path. Decoding a UCF101-like .avi to 64×64 gray frames, generating the
profile's synthetic clips, and the batches of a training step through the loader ``fit`` builds."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..config import get_profile
from .timing import machine, median_seconds, stopwatch


def write_test_avi(path: Path, n_frames: int = 300, size: tuple[int, int] = (320, 240), fps: float = 25.0,
                   fourcc: str = "XVID") -> Path:
    """A colour .avi with moving shapes over a noisy background, as UCF101's 320×240 XviD clips are."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} to {path}")
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    for t in range(n_frames):
        frame = background.copy()
        cv2.circle(frame, (40 + (3 * t) % 240, 120), 30, (255, 200, 0), -1)
        cv2.rectangle(frame, (100, 20 + t % 150), (160, 80 + t % 150), (0, 0, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def bench_data(profile: str | None = None) -> dict:
    from ..data.synthetic import generate
    from ..data.ucf101 import decode_video

    decode = {}
    with tempfile.TemporaryDirectory() as tmp:
        # XviD is UCF101's codec; MJPG (every frame a JPEG) is a slow worst case worth knowing.
        for fourcc in ("XVID", "MJPG"):
            path = write_test_avi(Path(tmp) / f"bench-{fourcc}.avi", fourcc=fourcc)
            frames = decode_video(path, 64)  # warm-up
            seconds = median_seconds(functools.partial(decode_video, path, 64), repeats=5)
            decode[fourcc] = {"video": f"320x240 {fourcc} avi, {len(frames)} frames, to 64x64 gray",
                              "frames_per_s": len(frames) / seconds}
    cfg = get_profile(profile).data
    with stopwatch() as synth:
        clips = generate(cfg)
    decode["target_frames_per_s"] = 3000
    return {"machine": machine(), "threads": torch.get_num_threads(), "decode": decode,
            "synthetic": {"profile": get_profile(profile).name, "clips": len(clips), "frames_per_clip": cfg.clip_length,
                          "seconds": synth.seconds, "clips_per_s": len(clips) / synth.seconds},
            "batches": batch_times(profile)}


def batch_times(profile: str | None = None, batches: int = 50, repeats: int = 5) -> dict:
    """The data path of a training step: ms per batch through the loader ``fit`` builds (its step sampler,
    the profile's batch size and workers), on the profile's training windows, the median of ``repeats``
    passes of ``batches`` batches. Beside a step of hundreds of ms it says whether the data path is worth
    a faster layout (pre-stacked windows)."""
    from torch.utils.data import DataLoader

    from ..data import windows
    from ..train import StepBatchSampler

    prof = get_profile(profile)
    cfg = prof.train  # the batch size and workers every model trains with
    train = windows(prof.data)["train"]
    times = []
    for _ in range(repeats):
        sampler = StepBatchSampler(len(train), cfg.batch_size, batches, cfg.seed)
        loader = DataLoader(train, batch_sampler=sampler, num_workers=cfg.num_workers)
        with stopwatch() as watch:
            for _ in loader:
                pass
        times.append(watch.seconds / batches)
    return {"batch_size": cfg.batch_size, "num_workers": cfg.num_workers, "batches": batches, "repeats": repeats,
            "train_windows": len(train), "ms_per_batch": float(np.median(times)) * 1000}
