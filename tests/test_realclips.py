"""The real pipeline on three real UCF101 clips from ../shared/realclips (provenance in its README.md; skipped
without it: fetched footage is never committed).

They are XviD .avi and raw MPEG-4 .mp4 (with a negative frame count in its header), 4:3-ish and
of three classes outside the five exercises, so they exercise decoding, --classes and the crop.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REALCLIPS, need

from vidpred.cli import main
from vidpred.data.ucf101 import decode_video, square_crop

REAL = {  # file: (frames, (height, width)), as the README says
    "v_ApplyEyeMakeup_g01_c01.avi": (164, (240, 320)),
    "v_Basketball_g01_c02.mp4": (180, (256, 340)),
    "v_Fencing_g01_c06.mp4": (174, (256, 340)),
}
CLASSES = ("ApplyEyeMakeup", "Basketball", "Fencing")
# All three clips are group 1 (a test group). To fill every split, each is copied under group 8
# (validation) and group 11 (training) as well: same pixels, other names.
GROUPS = {1: "test", 8: "val", 11: "train"}


@pytest.mark.parametrize("name", REAL)
def test_decode_real_clip(name):
    n_frames, (height, width) = REAL[name]
    capture = cv2.VideoCapture(str(need(REALCLIPS) / name))
    ok, raw = capture.read()
    capture.release()
    assert ok and raw.shape[:2] == (height, width)
    cropped = decode_video(need(REALCLIPS) / name, 64, crop="center")
    squashed = decode_video(need(REALCLIPS) / name, 64, crop="none")
    assert cropped.shape == squashed.shape == (n_frames, 64, 64) and cropped.dtype == np.uint8
    by_hand = cv2.resize(square_crop(cv2.cvtColor(raw, cv2.COLOR_BGR2GRAY)), (64, 64), interpolation=cv2.INTER_AREA)
    assert square_crop(raw).shape[:2] == (height, height)
    assert np.array_equal(cropped[0], by_hand) and not np.array_equal(cropped[0], squashed[0])


def copies(name: str, group: int) -> str:
    return re.sub(r"_g\d+_", f"_g{group:02d}_", name)


def original_layout(root: Path) -> Path:
    for name in REAL:
        cls = name.split("_")[1]
        for group in GROUPS:
            target = root / "UCF-101" / cls / copies(name, group)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(need(REALCLIPS) / name, target)
    return root


def kaggle_layout(root: Path) -> Path:
    rows = {split: [] for split in GROUPS.values()}
    for name in REAL:
        cls = name.split("_")[1]
        for group, split in GROUPS.items():
            clip = copies(name, group)
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            shutil.copy(need(REALCLIPS) / name, root / split / cls / clip)
            rows[split].append(f"{Path(clip).stem},/{split}/{cls}/{clip},{cls}")
    for split, lines in rows.items():
        (root / f"{split}.csv").write_text("clip_name,clip_path,label\n" + "\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("layout", [original_layout, kaggle_layout], ids=["original", "kaggle"])
def test_prepare_real_clips_with_their_classes(layout, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = layout(tmp_path / "ucf")
    args = ["prepare", "--profile", "smoke", "--data-dir", str(root), "--classes", ",".join(CLASSES), "--crop", "center"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "decoded 9, reused 0" in out and "not used" not in out and "skipped" not in out
    total = sum(n for n, _ in REAL.values())
    for split in GROUPS.values():
        row = next(line for line in out.splitlines() if line.startswith(split))
        clips, frames, windows, classes = row.split(maxsplit=4)[1:]
        assert (int(clips), int(frames), classes) == (3, total, ", ".join(sorted(CLASSES)))
        assert int(windows) == sum((n - 45) // 15 + 1 for n, _ in REAL.values())

    cache = next((tmp_path / "data" / "cache").glob("ucf101-*"))
    for name in REAL:
        cached = np.load(cache / "frames" / f"{copies(Path(name).stem, 8)}.npy")
        assert np.array_equal(cached, decode_video(need(REALCLIPS) / name, 64, crop="center"))

    assert main(args) == 0
    assert "decoded 0, reused 9" in capsys.readouterr().out
    assert main([*args[:-1], "none"]) == 0  # another crop is another cache
    assert "decoded 9, reused 0" in capsys.readouterr().out
    if layout is kaggle_layout:
        assert main([*args, "--split", "kaggle"]) == 0
        assert "decoded 9, reused 0" in capsys.readouterr().out


def test_the_app_crops_uploads_and_picks_checkpoints_as_their_training_data(tmp_path, monkeypatch):
    """`vidpred app --data-dir … --classes …`: the checkpoints trained on that data, its test clips as samples,
    and uploads cropped as those checkpoints' training videos were (here squashed: --crop none)."""
    from vidpred import app
    from vidpred.config import get_profile
    from vidpred.runs import RunMismatch, runs_for

    monkeypatch.chdir(tmp_path)
    root = original_layout(tmp_path / "ucf")
    data = ["--profile", "smoke", "--data-dir", str(root), "--classes", ",".join(CLASSES)]
    assert main(["train", *data, "--crop", "none", "--model", "convlstm", "--steps", "2"]) == 0
    found = runs_for("runs/smoke", "smoke")
    assert app.upload_crop(found) == "none" and app.synthetic_warning(found) == ""

    clip = need(REALCLIPS) / "v_Basketball_g01_c02.mp4"
    for crop in ("none", "center"):
        frames, has_truth = app.read_clip(clip, start=10, crop=crop)
        assert has_truth and np.array_equal(frames, decode_video(clip, 64, crop=crop)[10:55])

    launched = {}
    monkeypatch.setattr(app, "launch", lambda **kwargs: launched.update(kwargs))
    assert main(["app", *data, "--crop", "none", "--port", "7869"]) == 0
    asked = launched["data"]
    assert asked.source == "ucf101" and asked.classes == CLASSES and asked.crop == "none"
    assert launched["allow_mixed"] is False and launched["crop"] == "none"

    demo = app.build_app("runs/smoke", "smoke", data=asked)
    try:
        assert "convlstm" in demo.vidpred_models and demo.vidpred_crop == "none"
        assert {s.split("_")[1] for s in demo.vidpred_samples} == set(CLASSES)  # "UCF101: v_<Class>_g01_cXX"
        assert all(s.startswith("UCF101: ") for s in demo.vidpred_samples)
    finally:
        demo.close()
    centred = get_profile("smoke").data.__class__(**{**asked.__dict__, "crop": "center"})
    with pytest.raises(RunMismatch, match=r"convlstm: .*squashed \(no crop\).*\n  the data asked for: .*centre square"):
        app.build_app("runs/smoke", "smoke", data=centred, allow_mixed=False)
