"""The sample clips the app offers beside uploads (test clips spread over every class), and the real exercise set's
splits where its videos are on this machine (the app never starts a download)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..config import DataConfig, get_profile

log = logging.getLogger(__name__)


def real_splits(cfg: DataConfig) -> dict | None:
    """The real exercise set's clips by split where its videos are on this machine (``cfg.data_dir``, else a mirror:
    ``$VIDPRED_EXERCISE_DIR`` or ``shared/exercise`` beside the project), else None: the app never starts a download."""
    import dataclasses

    from ..data import load_splits
    from ..data.exercise import find_mirror

    mirror = cfg.data_dir or find_mirror()
    if mirror is None:
        return None
    try:
        return load_splits(dataclasses.replace(cfg, data_dir=str(mirror)))
    except (OSError, ValueError, RuntimeError) as err:
        log.warning("the real exercise set in %s cannot be used (%s); the samples are synthetic clips", mirror, err)
        return None


def spread_over_classes(clips: list, limit: int) -> list:
    """Up to ``limit`` clips taking one of each class in turn, so that every class is represented."""
    by_class: dict[str, list] = {}
    for clip in clips:
        by_class.setdefault(clip.label, []).append(clip)
    queues, spread = list(by_class.values()), []
    while len(spread) < limit and any(queues):
        for queue in queues:
            if queue and len(spread) < limit:
                spread.append(queue.pop(0))
    return spread


def sample_clips(profile: str | None = None, limit: int = 12, splits=None, data: DataConfig | None = None,
                 ) -> dict[str, np.ndarray]:
    """Sample clips by name, spread over every class.

    Without ``data``: synthetic test clips always, and UCF101 test clips when a cache holds them.
    With ``data`` (the data the app was asked for, e.g. ``vidpred app --data-dir … --classes …``): the
    test clips of that data only. ``splits`` (from :func:`vidpred.data.load_splits`) saves loading twice.
    """
    from ..data import load_splits

    if data is not None:
        source = {"ucf101": "UCF101", "exercise": "real"}.get(data.source, "synthetic")
        tests = (splits or load_splits(data))["test"]
        return {f"{source}: {c.name}": c.frames for c in spread_over_classes(tests, limit)}
    cfg = get_profile(profile).data
    synthetic = cfg if cfg.source == "synthetic" else get_profile("smoke").data
    tests = (splits or load_splits(synthetic))["test"]
    clips = {f"synthetic: {c.name}": c.frames for c in spread_over_classes(tests, limit)}
    for manifest in sorted(Path(cfg.cache_dir).glob("ucf101-*/manifest.json")):
        entries = json.loads(manifest.read_text()).get("clips", {})
        names = [n for n, e in entries.items() if e.get("split") == "test"][:limit]
        for name in names:
            path = manifest.parent / "frames" / f"{name}.npy"
            if path.exists():
                clips[f"UCF101: {name}"] = np.load(path)
    return clips
