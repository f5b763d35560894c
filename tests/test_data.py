"""The data pipeline on real files: layouts, splits, decoding, cache, bad videos, windows."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import CLASSES, write_avi

from vidpred.config import DataConfig, get_profile
from vidpred.data import WindowDataset, load_splits
from vidpred.data.synthetic import generate
from vidpred.data.ucf101 import VideoError, assign_splits, decode_video, detect_layout, find_clips, parse_name, prepare


def cfg_for(root, tmp_path, **kw) -> DataConfig:
    return DataConfig(source="ucf101", data_dir=str(root), cache_dir=str(tmp_path / "cache"), classes=CLASSES,
                      n_context=20, n_future=10, window_stride=10, **kw)


def test_parse_name():
    assert parse_name("x/v_WallPushups_g25_c04.avi") == ("v_WallPushups_g25_c04", "WallPushups", 25)
    with pytest.raises(VideoError, match="not a UCF101 clip name"):
        parse_name("holiday.avi")


def test_original_layout_uses_official_split(original_layout):
    assert detect_layout(original_layout) == "original"
    files = find_clips(original_layout, CLASSES)
    assert len(files) == 2 * 12 * 2
    assert {f.label for f in files} == set(CLASSES)
    splits = assign_splits(files)
    for f in files:
        expected = "test" if f.group <= 7 else "val" if f.group <= 10 else "train"
        assert splits[f.name] == expected, f.name


def test_kaggle_layout_csv_paths_and_group_split(kaggle_layout):
    assert detect_layout(kaggle_layout) == "kaggle"
    files = find_clips(kaggle_layout, CLASSES)
    assert len(files) == 48 and all(f.path.exists() for f in files)  # '/train/...' resolved under the root
    kaggle = assign_splits(files, "kaggle")
    by_group = {}
    for f in files:
        by_group.setdefault((f.label, f.group), set()).add(kaggle[f.name])
    assert any(len(s) > 1 for s in by_group.values()), "the fixture should leak actors like Kaggle's split"
    grouped = assign_splits(files, "group")
    groups_per_split = {s: {f.group for f in files if grouped[f.name] == s} for s in ("train", "val", "test")}
    assert not groups_per_split["train"] & groups_per_split["test"]
    assert not groups_per_split["val"] & groups_per_split["test"]
    assert not groups_per_split["train"] & groups_per_split["val"]


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        detect_layout(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither"):
        detect_layout(tmp_path / "empty")


def test_decode_is_gray_64_inter_area(tmp_path):
    path = write_avi(tmp_path / "v_PushUps_g01_c01.avi", 12, size=(320, 240))
    frames = decode_video(path, 64)
    assert frames.shape == (12, 64, 64) and frames.dtype == np.uint8
    assert frames[0].max() > 150  # the bright square survives the resize
    with pytest.raises(VideoError, match="cannot open|no frame"):
        decode_video(tmp_path / "missing.avi")


def test_prepare_caches_resumes_and_reports_bad_videos(original_layout, tmp_path):
    corrupt = original_layout / "UCF-101" / "PushUps" / "v_PushUps_g11_c03.avi"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 10)
    short = write_avi(original_layout / "UCF-101" / "Lunges" / "v_Lunges_g11_c03.avi", 20)
    cfg = cfg_for(original_layout, tmp_path)
    first = prepare(cfg)
    assert first.decoded == 49 and first.reused == 0  # the short clip is decoded, then reported
    assert str(corrupt) in first.skipped and "cannot open" in first.skipped[str(corrupt)]
    assert "too short: 20 frames" in first.skipped[str(short)]
    assert sum(len(c) for c in first.clips.values()) == 48
    manifest = json.loads((first.cache_dir / "manifest.json").read_text())
    entry = manifest["clips"]["v_PushUps_g01_c01"]
    assert entry["group"] == 1 and entry["split"] == "test" and entry["frames"] == 50 and len(entry["sha256"]) == 64
    assert str(corrupt) in manifest["skipped"]

    second = prepare(cfg)  # everything comes from the cache
    assert second.decoded == 0 and second.reused == 49  # the 20-frame clip is cached, then skipped again
    for split in first.clips:
        for a, b in zip(first.clips[split], second.clips[split]):
            assert a.name == b.name and np.array_equal(a.frames, b.frames)

    # An interrupted run: lose some cached clips and the manifest entries; only those are decoded again.
    for name in ("v_PushUps_g02_c01", "v_Lunges_g09_c02"):
        (first.cache_dir / "frames" / f"{name}.npy").unlink()
    third = prepare(cfg)
    assert third.decoded == 2 and third.reused == 47

    # A changed source file is decoded again (its sha256 changed).
    write_avi(original_layout / "UCF-101" / "PushUps" / "v_PushUps_g03_c01.avi", 60, seed=99)
    fourth = prepare(cfg)
    assert fourth.decoded == 1
    assert len(next(c for c in fourth.clips["test"] if c.name == "v_PushUps_g03_c01")) == 60

    # A changed preprocessing config builds another cache.
    other = prepare(dataclasses.replace(cfg, image_size=32))
    assert other.cache_dir != first.cache_dir and other.decoded == 49
    assert next(iter(other.clips["train"])).frames.shape[1:] == (32, 32)


def test_load_splits_ucf101_windows(kaggle_layout, tmp_path):
    cfg = cfg_for(kaggle_layout, tmp_path)
    splits = load_splits(cfg)
    data = WindowDataset.from_config(splits["train"], cfg)
    context, future = data[0]
    assert context.shape == (20, 1, 64, 64) and future.shape == (10, 1, 64, 64)
    assert context.dtype == torch.float32 and context.min() >= 0 and context.max() <= 1


def test_kagglehub_download_finds_the_layout(kaggle_layout, monkeypatch):
    import kagglehub

    from vidpred.data import ucf101

    calls = []
    monkeypatch.setattr(kagglehub, "dataset_download", lambda handle: calls.append(handle) or str(kaggle_layout.parent))
    assert ucf101.download_kaggle() == kaggle_layout
    assert calls == [ucf101.KAGGLE_DATASET]


def test_windows_cover_clips_with_frame_step():
    from vidpred.data.windows import Clip

    clip = Clip("v_PushUps_g01_c01", "PushUps", 1, np.arange(100, dtype=np.uint8)[:, None, None].repeat(4, 1).repeat(4, 2))
    data = WindowDataset([clip], n_context=3, n_future=2, frame_step=2, stride=5)
    assert [s for _, s in data.index] == list(range(0, 100 - 8, 5))
    context, future = data[1]
    assert (context[:, 0, 0, 0] * 255).round().tolist() == [5, 7, 9]
    assert (future[:, 0, 0, 0] * 255).round().tolist() == [11, 13]
    assert len(WindowDataset([clip], n_context=60, n_future=50)) == 0


def test_loader_batches_windows():
    from vidpred.data import make_loader

    data = WindowDataset.from_config(load_splits(get_profile("smoke").data)["train"], get_profile("smoke").data)
    context, future = next(iter(make_loader(data, batch_size=3, shuffle=True, seed=1)))
    assert context.shape == (3, 30, 1, 64, 64) and future.shape == (3, 15, 1, 64, 64)
    again, _ = next(iter(make_loader(data, batch_size=3, shuffle=True, seed=1)))
    assert torch.equal(context, again)  # the shuffle is seeded


def test_synthetic_is_deterministic_and_varied():
    cfg = get_profile("smoke").data
    a, b = generate(cfg), generate(cfg)
    assert [c.name for c in a] == [c.name for c in b]
    assert all(np.array_equal(x.frames, y.frames) for x, y in zip(a, b))
    c = generate(dataclasses.replace(cfg, seed=1))
    assert not np.array_equal(a[0].frames, c[0].frames)
    assert {x.label for x in a} == set(cfg.classes)
    assert a[0].frames.shape == (cfg.clip_length, 64, 64) and a[0].frames.dtype == np.uint8
    motion = np.abs(np.diff(a[0].frames.astype(int), axis=0)).mean()
    assert motion > 0.3  # the figure moves
    means = [x.frames.mean() for x in a]
    assert np.std(means) > 3  # backgrounds differ between clips


def test_synthetic_split_has_no_actor_in_two_splits():
    splits = load_splits(get_profile("book").data)
    groups = {s: {c.group for c in clips} for s, clips in splits.items()}
    assert groups["test"] and groups["val"] and groups["train"]
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["val"])
    assert not (groups["val"] & groups["test"])


def test_centre_crop_is_square_and_part_of_the_cache_key(original_layout, tmp_path):
    from vidpred.data.ucf101 import square_crop

    frame = np.arange(60 * 80, dtype=np.int32).reshape(60, 80)
    assert np.array_equal(square_crop(frame), frame[:, 10:70]) and square_crop(frame, "none") is frame
    assert square_crop(frame.T).shape == (60, 60)  # portrait frames too
    assert DataConfig().crop == "center"
    path = write_avi(tmp_path / "v_PushUps_g01_c01.avi", 3, size=(320, 240))  # the square starts at the left edge
    assert decode_video(path, 64, crop="none")[0].max() > 150 and decode_video(path, 64, crop="center")[0].max() < 150
    centre, squash = prepare(cfg_for(original_layout, tmp_path)), prepare(cfg_for(original_layout, tmp_path, crop="none"))
    assert centre.cache_dir != squash.cache_dir
    assert not np.array_equal(centre.clips["test"][0].frames, squash.clips["test"][0].frames)
    with pytest.raises(ValueError, match="unknown crop 'middle'; choose center or none"):
        prepare(cfg_for(original_layout, tmp_path, crop="middle"))


def test_crop_leaves_square_frames_and_synthetic_data_unchanged(tmp_path):
    cfg = get_profile("smoke").data
    for a, b in zip(generate(dataclasses.replace(cfg, crop="none")), generate(dataclasses.replace(cfg, crop="center"))):
        assert np.array_equal(a.frames, b.frames)
    square = write_avi(tmp_path / "v_PushUps_g01_c01.avi", 5, size=(96, 96))
    assert np.array_equal(decode_video(square, 64, crop="center"), decode_video(square, 64, crop="none"))


def test_classes_option_selects_any_ucf101_classes(original_layout, tmp_path):
    from vidpred.cli import _profile, build_parser

    parser = build_parser()
    for command in ("prepare", "train", "evaluate", "generate"):
        args = parser.parse_args([command, "--data-dir", "x", "--classes", "Lunges, ApplyEyeMakeup,Lunges", "--crop", "none"])
        data = _profile(args).data
        assert data.classes == ("Lunges", "ApplyEyeMakeup") and data.crop == "none" and data.source == "ucf101"
    with pytest.raises(ValueError, match="the synthetic data has only .*; ApplyEyeMakeup needs UCF101"):
        _profile(parser.parse_args(["train", "--classes", "ApplyEyeMakeup"]))
    assert _profile(parser.parse_args(["train", "--classes", "Lunges"])).data.classes == ("Lunges",)

    report = prepare(dataclasses.replace(cfg_for(original_layout, tmp_path), classes=("Lunges",)))
    assert {c.label for split in report.clips.values() for c in split} == {"Lunges"}
    assert report.other_classes == {"PushUps": 24} and report.missing_classes == []
    assert report.cache_dir != prepare(cfg_for(original_layout, tmp_path)).cache_dir
