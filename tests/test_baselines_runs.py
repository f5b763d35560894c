"""The blend baseline, the moving-pixel metric, and run identity (provenance, mixed sets, shipped runs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vidpred.config import get_profile
from vidpred.data import Clip, WindowDataset, windows
from vidpred.evaluate import baseline_models, best_baseline, by_label, evaluate_all, evaluate_model
from vidpred.metrics import MOTION_THRESHOLD, MetricAccumulator, motion_mask, moving_mse
from vidpred.models import build
from vidpred.models.baselines import Blend
from vidpred.runs import RunMismatch, data_identity, find_runs, read_run
from vidpred.train import fit

SMOKE = get_profile("smoke")


def test_blend_alphas_are_the_least_squares_solution():
    g = torch.Generator().manual_seed(0)
    context = torch.rand(12, 30, 1, 8, 8, generator=g)
    last, mean = context[:, -1:], context.mean(1, keepdim=True)
    true_alpha = torch.linspace(0.9, 0.2, 5).view(1, 5, 1, 1, 1)
    future = true_alpha * last + (1 - true_alpha) * mean  # exactly a blend: the fit must recover α
    pairs = list(zip(context, future))
    blend = Blend.fit(pairs, batch_size=5)
    assert np.allclose(blend.config.alphas, true_alpha.flatten().numpy(), atol=1e-5)
    assert torch.allclose(blend(context, 5), future, atol=1e-5)
    # With noise, the fitted α beats any other α on the training data (it is the minimiser).
    noisy = (future + 0.05 * torch.randn(future.shape, generator=g))
    blend = Blend.fit(list(zip(context, noisy)))
    best = ((blend(context, 5) - noisy) ** 2).mean()
    for shift in (-0.05, 0.05):
        other = Blend(dataclasses.replace(blend.config, alphas=tuple(a + shift for a in blend.config.alphas)))
        assert ((other(context, 5) - noisy) ** 2).mean() > best


def test_unfitted_blend_says_how_to_fit():
    with pytest.raises(ValueError, match="fit it on the training split"):
        build("blend")(torch.rand(1, 30, 1, 8, 8), 15)


def test_blend_is_at_least_as_good_as_copy_last_and_mean_on_train():
    data = windows(SMOKE.data)
    models = baseline_models(data["train"])
    assert set(models) == {"copy_last", "context_mean", "blend", "analogue", "linear"}
    loader = torch.utils.data.DataLoader(data["train"], batch_size=64)
    errors = {name: 0.0 for name in ("copy_last", "context_mean", "blend")}
    for context, future in loader:
        for name in errors:
            errors[name] += float(((models[name](context, 15) - future) ** 2).sum())
    assert errors["blend"] <= min(errors["copy_last"], errors["context_mean"]) * (1 + 1e-9)


def test_motion_mask_and_moving_mse_by_hand():
    last = torch.zeros(1, 1, 1, 16, 16)  # 16 px: SSIM's 11-pixel window must fit
    truth = torch.zeros(1, 2, 1, 16, 16)
    truth[0, 0, 0, 0, 0] = 1.0  # one pixel moves in frame 1
    truth[0, 1, 0, :2, 0] = 0.5  # two in frame 2
    truth[0, 1, 0, 3, 3] = MOTION_THRESHOLD / 2  # below the threshold: not moving
    mask = motion_mask(truth, last)
    assert mask.sum() == 3 and mask[0, 1, 0, 3, 3].item() is False
    prediction = torch.zeros_like(truth)  # copy-last
    assert moving_mse(prediction, truth, last) == pytest.approx((1.0 + 0.25 + 0.25) / 3)
    acc = MetricAccumulator()
    acc.update(prediction, truth, last)
    result = acc.result()
    assert result["moving_mse_per_horizon"] == pytest.approx([1.0, 0.25])
    assert result["moving_mse"] == pytest.approx(0.5)
    assert result["moving_fraction"] == pytest.approx(3 / (2 * 256))


def test_best_baseline_is_the_best_of_three():
    rows = [{"model": "copy_last", "mse": 3.0, "ssim": 0.7}, {"model": "blend", "mse": 2.0, "ssim": 0.8},
            {"model": "context_mean", "mse": 2.5, "ssim": 0.9}, {"model": "linear", "mse": 0.1, "ssim": 0.99}]
    assert best_baseline(rows)["model"] == "blend"
    assert best_baseline(rows, "ssim")["model"] == "context_mean"  # linear is shown, never the bar


def test_results_by_label_are_each_labels_windows_alone():
    rng = np.random.default_rng(0)
    clips = [Clip(f"v_{label}_g0{i}_c01", label, i, rng.integers(0, 255, (50 + 10 * i, 16, 16), dtype=np.uint8))
             for i, label in enumerate(["Squats", "PushUps", "PushUps", "Dips"])]
    dataset = WindowDataset(clips, 30, 15, stride=5)
    rows = [{"model": name, **evaluate_model(build(name), dataset, batch_size=3)}
            for name in ("copy_last", "context_mean")]
    assert len(rows[0]["window_mse"]) == len(dataset)
    assert np.mean(rows[0]["window_mse"]) == pytest.approx(rows[0]["mse"], rel=1e-9)
    found = by_label(rows, dataset)
    assert list(found) == ["PushUps", "Dips", "Squats"]  # by number of windows: 4 + 6, 8, 2
    assert [found[k]["windows"] for k in found] == [10, 8, 2] and found["PushUps"]["clips"] == 2
    alone = evaluate_model(build("context_mean"), WindowDataset(clips[1:3], 30, 15, stride=5))
    assert found["PushUps"]["mse"]["context_mean"] == pytest.approx(alone["mse"], rel=1e-6)
    first = [{"model": "copy_last", **evaluate_model(build("copy_last"), dataset, 3, max_batches=1)}]
    # evaluated on the first batch only: the Squats clip's 2 windows and 1 push-up window
    assert [(k, v["windows"]) for k, v in by_label(first, dataset).items()] == [("Squats", 2), ("PushUps", 1)]


def _train(tmp_path, name, data, folder, cfg_data=SMOKE.data, steps=2):
    cfg = dataclasses.replace(SMOKE.train, steps=steps, batch_size=2, eval_every=2, checkpoint_every=2)
    torch.manual_seed(0)
    model = build(name, **SMOKE.model_config(name))
    fit(model, data["train"], data["val"], cfg, tmp_path / folder, cfg_data, progress=False)
    return tmp_path / folder


def test_checkpoint_records_its_data_and_rows_are_named_from_it(tmp_path):
    data = windows(SMOKE.data)
    folder = _train(tmp_path, "predrnn", data, "convlstm-misnamed")  # a predrnn in a "convlstm" folder
    run, problems = read_run(folder)
    assert not problems and run.name == "predrnn"
    identity = data_identity(SMOKE.data, data["train"].clips)
    assert run.data == identity and run.data["source"] == "synthetic"
    assert "synthetic exercise videos" in run.describe() and identity["fingerprint"] in run.describe()
    rows = evaluate_all(find_runs(tmp_path).runs, data["test"], tmp_path / "out", train=data["train"],
                        data=identity, latency_repeats=1)
    assert [r["model"] for r in rows] == ["copy_last", "context_mean", "blend", "analogue", "linear", "predrnn"]
    assert rows[-1]["train_data"]["fingerprint"] == identity["fingerprint"]
    assert all("moving_mse_per_horizon" in r and len(r["moving_mse_per_horizon"]) == 15 for r in rows)


def test_mixed_or_mismatched_runs_are_refused(tmp_path):
    data = windows(SMOKE.data)
    other_cfg = dataclasses.replace(SMOKE.data, seed=1)
    other = windows(other_cfg)
    _train(tmp_path, "convlstm", data, "a")
    _train(tmp_path, "transformer", other, "b", other_cfg)
    with pytest.raises(RunMismatch, match="not all trained on the data asked for") as err:
        find_runs(tmp_path)
    assert "convlstm" in str(err.value) and "transformer" in str(err.value) and "--allow-mixed" in str(err.value)
    assert set(find_runs(tmp_path, allow_mixed=True).runs) == {"convlstm", "transformer"}
    identity = data_identity(SMOKE.data, data["train"].clips)
    with pytest.raises(RunMismatch, match="the data asked for"):
        find_runs(tmp_path, identity, models=("transformer",))
    assert set(find_runs(tmp_path, identity, models=("convlstm",)).runs) == {"convlstm"}


def test_data_fingerprint_follows_the_pixels_not_the_folder():
    frames = np.zeros((50, 8, 8), np.uint8)
    cfg = SMOKE.data
    a = data_identity(cfg, [Clip("v_PushUps_g01_c01", "PushUps", 1, frames)])
    b = data_identity(dataclasses.replace(cfg, cache_dir="elsewhere"), [Clip("v_PushUps_g01_c01", "PushUps", 1, frames)])
    changed = frames.copy()
    changed[3, 2, 1] = 1
    c = data_identity(cfg, [Clip("v_PushUps_g01_c01", "PushUps", 1, changed)])
    assert a == b and a["fingerprint"] != c["fingerprint"]
    assert WindowDataset.from_config([Clip("x", "PushUps", 1, frames)], dataclasses.replace(cfg, train_stride=1),
                                     "train").index[:2] == [(0, 0), (0, 1)]


def test_bench_quality_measures_test_error_against_training_time():
    from vidpred.bench import bench_quality

    result = bench_quality("smoke", models=("convlstm", "transformer"), steps=4)
    assert set(result["baselines"]) == {"copy_last", "context_mean", "blend", "analogue"}
    for name, curve in result["curves"].items():
        assert [point["step"] for point in curve] == [0, 1, 2, 3], name  # a probe at every validation
        assert all(p["seconds"] > 0 and 0 < p["test_mse"] < 1 and 0 < p["test_moving_mse"] < 1 for p in curve)
        assert curve == sorted(curve, key=lambda p: p["seconds"])


@pytest.mark.parametrize("damage", ["truncated", "empty", "random"])
def test_a_damaged_checkpoint_is_skipped_with_its_name_and_best_is_used(tmp_path, damage):
    data = windows(SMOKE.data)
    folder = _train(tmp_path, "convlstm", data, "run", steps=2)
    last = folder / "last.pt"
    content = last.read_bytes()
    last.write_bytes({"truncated": content[: len(content) // 2], "empty": b"",
                      "random": np.random.default_rng(0).bytes(4096)}[damage])
    with pytest.warns(UserWarning, match="skipped .*last.pt"):
        found = find_runs(tmp_path)
    assert found.runs["convlstm"].path.name == "best.pt"  # the sound best.pt stands in
    assert all("weights_only=False" not in m and "last.pt" in m for m in found.skipped)
    (folder / "best.pt").write_bytes(b"")
    with pytest.warns(UserWarning, match="best.pt is empty"):
        assert find_runs(tmp_path).runs == {}


def test_the_app_warns_when_models_trained_on_synthetic_videos_meet_a_real_upload(tmp_path):
    from vidpred.app import load_models, synthetic_warning
    from vidpred.runs import runs_for

    assert synthetic_warning(runs_for(tmp_path / "none", "smoke")) == ""  # no trained model, nothing to warn about
    data = windows(SMOKE.data)
    _train(tmp_path, "convlstm", data, "run")
    warning = synthetic_warning(runs_for(tmp_path, "smoke"))
    assert "trained on synthetic" in warning and "vidpred train --model all --data-dir" in warning
    models, note = load_models(tmp_path, "smoke", data["train"])
    assert {"copy_last", "context_mean", "blend", "convlstm"} <= set(models)
    assert "convlstm: 2 steps" in note and "synthetic exercise videos" in note  # which checkpoint, trained on what


@pytest.mark.parametrize("clip", ["v_ApplyEyeMakeup_g01_c01.avi", "v_Basketball_g01_c02.mp4"])
def test_the_app_predicts_on_a_real_ucf101_upload(clip):
    """The app's path for an upload (decode as in training, every model, metrics) on real UCF101 files: XviD in
    AVI, and a raw MPEG-4 stream whose frame count OpenCV reports as negative (../shared/realclips/README.md)."""

    from conftest import REALCLIPS, need

    from vidpred.app import predict_all, read_clip

    frames, has_truth = read_clip(need(REALCLIPS) / clip, start=10)
    assert has_truth and frames.shape == (45, 64, 64) and frames.dtype == np.uint8
    data = windows(SMOKE.data)
    result = predict_all(frames, baseline_models(data["train"]), repeats=1)
    rows = {r["model"]: r for r in result.rows}
    assert set(rows) == {"copy_last", "context_mean", "blend", "analogue", "linear"}
    assert all(0 <= rows[n]["mse"] < 1 and 0 < rows[n]["ssim"] <= 1 for n in rows)
    assert rows["copy_last"]["mse"] > 0  # real video moves


def test_the_table_by_label_divides_each_model_by_that_labels_best_baseline():
    from vidpred.evaluate import format_by_label

    rows = [{"model": "copy_last", "kind": "baseline"}, {"model": "blend", "kind": "baseline"},
            {"model": "linear", "kind": "baseline"}, {"model": "convlstm", "kind": "learned"}]
    groups = {"PushUps": {"windows": 10, "clips": 2, "mse": {"copy_last": 0.02, "blend": 0.01, "linear": 0.001,
                                                              "convlstm": 0.008}},
              "Squats": {"windows": 3, "clips": 1, "mse": {"copy_last": 0.004, "blend": 0.005, "linear": 0.001,
                                                           "convlstm": 0.005}}}
    lines = format_by_label(groups, rows).splitlines()
    assert lines[1].split() == ["label", "(windows)", "best", "baseline", "convlstm"]
    # linear is not a reference baseline: the bar is the best of copy-last, context mean, blend and analogue
    assert lines[3].split() == ["PushUps", "(10)", "blend", "0.800"]
    assert lines[4].split() == ["Squats", "(3)", "copy_last", "1.250"]
    assert format_by_label({"PushUps": groups["PushUps"]}, rows) == ""  # one label: the pooled table says it all
