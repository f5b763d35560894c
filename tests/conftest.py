"""Shared fixtures: small real videos written with OpenCV in both UCF101 layouts."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Two cores' threads shared by the pytest-xdist workers `make test` starts (one each on this 2-core machine):
# more threads than cores makes every torch call wait on the others.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1) // WORKERS))


def write_avi(path: Path, n_frames: int, size=(80, 60), seed: int = 0, colour: bool = True) -> Path:
    """A real MJPG .avi of ``n_frames`` frames: a bright square sliding over a noisy background."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, size, isColor=colour)
    assert writer.isOpened(), path
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 80, (size[1], size[0], 3) if colour else (size[1], size[0]), dtype=np.uint8)
    for t in range(n_frames):
        frame = background.copy()
        x = (seed * 7 + 2 * t) % (size[0] - 16)
        frame[20:36, x : x + 16] = 230
        writer.write(frame)
    writer.release()
    return path


CLASSES = ("PushUps", "Lunges")

# Fetched footage is never committed (DESIGN.md): tests that need real clips read the team's shared folder beside
# the project and skip, saying why, where it is absent (CI always has it).
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REALCLIPS = SHARED / "realclips"
EXERCISE = SHARED / "exercise"


def need(folder: Path) -> Path:
    """``folder``, or skip the test: real footage lives in ../shared, never in the repository."""
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: the real clips are not in the repository (fetched footage is never "
                    "committed); put the team's shared/ folder beside the project to run this test")
    return folder


@pytest.fixture
def original_layout(tmp_path) -> Path:
    """UCF-101/<Class>/v_<Class>_gXX_cYY.avi for groups 1–12, plus the official split-1 lists."""
    root = tmp_path / "ucf"
    test_lines, train_lines = [], []
    for ci, cls in enumerate(CLASSES):
        for group in range(1, 13):
            for clip in (1, 2):
                name = f"v_{cls}_g{group:02d}_c{clip:02d}.avi"
                write_avi(root / "UCF-101" / cls / name, 50, seed=ci * 100 + group * 3 + clip)
                (test_lines if group <= 7 else train_lines).append(f"{cls}/{name}")
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "testlist01.txt").write_text("\n".join(test_lines) + "\n")
    (lists / "trainlist01.txt").write_text("\n".join(f"{n} 1" for n in train_lines) + "\n")
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(CLASSES)))
    return root


@pytest.fixture
def kaggle_layout(tmp_path) -> Path:
    """train|val|test/<Class>/ with CSVs whose clip_path starts with '/'; the split is random by clip."""
    root = tmp_path / "kaggle"
    rng = np.random.default_rng(1)
    rows = {"train": [], "val": [], "test": []}
    for ci, cls in enumerate(CLASSES):
        for group in range(1, 13):
            for clip in (1, 2):
                split = str(rng.choice(["train", "train", "val", "test"]))
                name = f"v_{cls}_g{group:02d}_c{clip:02d}"
                write_avi(root / split / cls / f"{name}.avi", 50, seed=ci * 100 + group * 3 + clip)
                rows[split].append(f"{name},/{split}/{cls}/{name}.avi,{cls}")
    for split, lines in rows.items():
        (root / f"{split}.csv").write_text("clip_name,clip_path,label\n" + "\n".join(lines) + "\n")
    return root
