"""The command line end to end on the smoke profile: prepare, train, evaluate, generate, bench."""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest
import torch

from vidpred.cli import main
from vidpred.models import BASELINES, LEARNED
from vidpred.video import read_video


def test_prepare_reports_splits_and_skipped(kaggle_layout, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (kaggle_layout / "train" / "PushUps" / "v_PushUps_g30_c01.avi").write_bytes(b"junk")
    with open(kaggle_layout / "train.csv", "a") as handle:
        handle.write("v_PushUps_g30_c01,/train/PushUps/v_PushUps_g30_c01.avi,PushUps\n")
    assert main(["prepare", "--profile", "smoke", "--data-dir", str(kaggle_layout)]) == 0
    out = capsys.readouterr().out
    assert "decoded 48" in out and "skipped 1 video(s)" in out and "v_PushUps_g30_c01.avi" in out
    assert out.count("PushUps") >= 3  # the summary names the classes of each split


def test_missing_data_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["prepare", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err


def test_train_evaluate_generate(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    assert main(["train", "--model", "all", "--profile", "smoke", "--steps", "3", "--runs", str(runs)]) == 0
    assert main(["train", "--model", "convlstm", "--profile", "smoke", "--steps", "3", "--runs", str(runs)]) == 0
    assert "already trained (3 steps)" in capsys.readouterr().out
    assert main(["evaluate", "--profile", "smoke", "--runs", str(runs)]) == 0
    results = json.loads((runs / "results.json").read_text())
    assert [r["model"] for r in results["results"]] == [*BASELINES, *LEARNED]
    for row in results["results"]:
        for key in ("mse", "mae", "psnr", "ssim"):
            assert math.isfinite(row[key]) and len(row[f"{key}_per_horizon"]) == 15
        assert row["mse_per_frame_sum"] == pytest.approx(row["mse"] * 4096)
        assert row["inference_ms_per_clip"] > 0
        assert (row["params"] > 0 and row["flops_per_clip"] > 0) == (row["kind"] == "learned")
        assert (row["train_steps"] == 3) == (row["kind"] == "learned")
    with open(runs / "results.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(BASELINES) + len(LEARNED)
    learned = [r for r in results["results"] if r["kind"] == "learned"]
    assert all(r["train_data"]["source"] == "synthetic" for r in learned)  # each row says what it was trained on
    assert results["eval_data"]["fingerprint"] == learned[0]["train_data"]["fingerprint"]
    by_label = results["by_label"]  # each exercise apart, from the same windows
    assert sum(g["windows"] for g in by_label.values()) == results["test_windows"] and len(by_label) > 1
    assert all(set(g["mse"]) == {r["model"] for r in results["results"]} for g in by_label.values())
    printed = capsys.readouterr().out
    assert "MSE ÷ the best baseline's MSE on each label's windows" in printed
    assert all(f"{label} ({g['windows']})" in printed for label, g in by_label.items())
    assert main(["generate", "--profile", "smoke", "--runs", str(runs), "--clips", "1", "--format", "mp4,gif"]) == 0
    for suffix in ("mp4", "gif"):
        frames = read_video(runs / "videos" / f"clip00.{suffix}")
        assert len(frames) == 45  # the 30 context frames, then the 15 predicted ones


def test_evaluate_without_checkpoints_says_what_to_do(tmp_path, capsys):
    assert main(["evaluate", "--profile", "smoke", "--runs", str(tmp_path)]) == 2
    assert "train first: vidpred train --model all --profile smoke" in capsys.readouterr().err


def test_bench_data_writes_json(tmp_path):
    out = tmp_path / "data.json"
    assert main(["bench", "data", "--profile", "smoke", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["decode"]["XVID"]["frames_per_s"] > 0 and result["synthetic"]["clips_per_s"] > 0
    batches = result["batches"]  # the training data path, as fit loads it
    assert batches["batch_size"] == 4 and batches["batches"] == 50 and batches["ms_per_batch"] > 0


@pytest.mark.parametrize("what", ["models", "curves", "quality", "compile"])
def test_bench_models_flag_picks_the_learned_models(what, tmp_path, monkeypatch):
    from vidpred import bench

    calls = []
    monkeypatch.setattr(bench, f"bench_{what}", lambda profile, **options: calls.append((profile, options)) or {})
    assert main(["bench", what, "--profile", "smoke", "--models", "transformer, convlstm,transformer",
                 "--out", str(tmp_path / "out.json")]) == 0
    assert calls == [("smoke", {"models": ("transformer", "convlstm")})]


def test_bench_models_for_some_models_times_only_those():
    from vidpred.bench import bench_models

    larger = {"batch": 1, "models": {"convlstm": dict(hidden=(4,)), "predrnn": dict(hidden=(4, 4))}}
    result = bench_models("smoke", batch=1, iters=1, larger=larger, rounds=1, models=("predrnn",))
    learned = [r["model"] for r in result["models"] if "train_ms_per_step" in r]
    assert learned == ["predrnn"] and [r["model"] for r in result["larger"]] == ["predrnn"]
    assert {r["model"] for r in result["models"]} >= {"copy_last", "context_mean", "analogue"}  # baselines always


def test_bench_compile_weighs_the_compile_time_against_the_run(monkeypatch):
    import time

    from vidpred.bench import bench_compile
    from vidpred.config import get_profile

    compiled = []

    def compile_slowly(module):  # stands in for torch.compile (minutes): the first call costs 0.3 s more
        compiled.append(module)
        calls = []

        def step(*args):
            if not calls:
                time.sleep(0.3)
            calls.append(args)
            return module(*args)
        return step

    import torch._dynamo  # noqa: F401 (importing it sets the variable to torch's default folder)

    cache_before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    monkeypatch.setattr(torch, "compile", compile_slowly)
    result = bench_compile("smoke", models=("transformer",), batch=1, iters=2, rounds=2)
    [row] = result["models"]
    assert len(compiled) == 2 and row["model"] == "transformer" and result["rounds"] == 2  # empty cache, then cached
    assert row["run_steps"] == get_profile("smoke").train_config("transformer").steps
    assert row["speedup"] == pytest.approx(float(np.median(row["speedup_by_step"]))) and len(row["speedup_by_step"]) == 4
    saving = (row["train_ms_per_step"] - row["train_ms_per_step_compiled"]) / 1000
    for suffix in ("", "_cached"):
        seconds = row[f"compile_seconds{suffix}"]
        assert 0.25 < seconds < 1.0  # the first step less a compiled step
        assert row[f"run_seconds_saved{suffix}"] == pytest.approx(row["run_steps"] * saving - seconds)
        break_even = row[f"break_even_steps{suffix}"]
        assert break_even == (pytest.approx(seconds / saving) if saving > 0 else None)  # None: never pays back
        assert row[f"pays_back{suffix}"] == (break_even is not None and break_even < row["run_steps"])
    assert os.environ.get("TORCHINDUCTOR_CACHE_DIR") == cache_before  # the benchmark's own cache is gone


def test_bench_analogue_chooses_on_validation(tmp_path):
    out = tmp_path / "analogue.json"
    assert main(["bench", "analogue", "--profile", "smoke", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert len(result["grid"]) == 30 and {r["mirror"] for r in result["grid"]} == {True, False}
    assert result["chosen"]["mse"] == min(r["mse"] for r in result["grid"])


def test_bench_models_times_the_fast_step_beside_the_reference_and_without_the_analogue(tmp_path):
    from vidpred.bench import PRODUCT_OPS, bench_models
    from vidpred.config import get_profile
    from vidpred.models import build
    from vidpred.train import amp_dtype

    larger = {"batch": 1, "models": {"predrnn": dict(hidden=(8, 8), kernel_size=5)}}  # small, for the test
    result = bench_models("smoke", batch=2, iters=1, larger=larger, rounds=2)
    rows = {r["model"]: r for r in result["models"]}
    precision = "bfloat16" if amp_dtype(torch.device("cpu"), True) else "float32"
    assert result["train_precision"] == precision and result["threads"] == torch.get_num_threads()
    for name in ("convlstm", "predrnn", "predrnn_v2", "transformer"):
        row = rows[name]
        assert row["train_ms_per_step"] > 0 and row["train_ms_per_step_without_analogue"] > 0
        assert row["train_precision"] == precision
        assert row["speedup"] == pytest.approx(float(np.median(row["speedup_by_step"])))  # median of pairs
        assert len(row["speedup_by_step"]) == 2 * 1  # rounds x iters
        assert len(row["speedup_by_round"]) == result["rounds"] == 2  # the noise around the median ratio
        assert min(row["speedup_by_round"]) > 0
        assert row["analogue_step_cost"] == pytest.approx(
            row["train_ms_per_step"] / row["train_ms_per_step_without_analogue"])
        breakdown = row["breakdown"]  # why the step is below the matmul rate: the products' share and rate
        assert 0 < breakdown["products_share"] < 1 and breakdown["products_gflops"] > 0
        assert breakdown["products_fraction_of_matmul"] == pytest.approx(
            breakdown["products_gflops"] / result["matmul_2048_gflops"])
        assert breakdown["operators_per_step"] > 10 and len(breakdown["costliest_rest"]) == 5
        assert all(op["op"] not in PRODUCT_OPS for op in breakdown["costliest_rest"])
    assert "train_ms_per_step" not in rows["analogue"]  # nothing to train
    assert "in_schedule" not in rows["transformer"]  # no sampling schedule: one regime
    for name in ("convlstm", "predrnn", "predrnn_v2"):  # the smoke profile keeps their schedules
        row, inside = rows[name], rows[name]["in_schedule"]
        stop = build(name, **get_profile("smoke").model_config(name)).config.sampling_stop
        assert inside["fraction_of_run"] == pytest.approx(stop) and inside["progress"] == pytest.approx(stop / 2)
        assert inside["speedup"] == pytest.approx(float(np.median(inside["speedup_by_step"])))
        run_reference = stop * inside["train_ms_per_step_reference"] + (1 - stop) * row["train_ms_per_step_reference"]
        run_fast = stop * inside["train_ms_per_step"] + (1 - stop) * row["train_ms_per_step"]
        assert inside["speedup_over_run"] == pytest.approx(run_reference / run_fast)
    [row] = result["larger"]
    assert (row["model"], row["config"], row["batch"]) == ("predrnn", larger["models"]["predrnn"], 1)
    assert row["speedup"] == pytest.approx(float(np.median(row["speedup_by_step"])))
    assert len(row["speedup_by_round"]) == len(row["speedup_by_step"]) == 2
    assert row["fraction_of_matmul"] > 0 and 0 < row["breakdown"]["products_share"] < 1


def test_a_step_with_a_sampling_schedule_is_timed_inside_it_and_after_it(monkeypatch):
    from vidpred import bench
    from vidpred.models import build

    progresses = []
    train_step = bench.train_step

    def recording_step(model, optimizer, context, future, dtype, progress=0.5):
        progresses.append(progress)
        train_step(model, optimizer, context, future, dtype, progress)

    monkeypatch.setattr(bench.steps, "train_step", recording_step)
    model = build("predrnn_v2", hidden=(4,), patch_size=8, sampling_stop=0.4)
    assert bench.schedule_of(model) == 0.4 and bench.schedule_of(build("transformer", dim=8, depth=1, heads=2)) == 0
    assert bench.schedule_of(build("predrnn_v2", hidden=(4,), patch_size=8, sampling_stop=2.0)) == 1.0  # a whole run
    assert bench.after_schedule(model) == pytest.approx(0.7)  # the middle of the run after the schedule
    context, future = torch.rand(1, 30, 1, 64, 64), torch.rand(1, 15, 1, 64, 64)
    inside = bench.in_schedule(model, None, context, future, iters=1, rounds=2, after={"fast": 0.2, "reference": 0.3})
    assert progresses == [0.2] * 6  # an untimed step and two rounds of one step, of both variants, at stop / 2
    assert inside["progress"] == 0.2 and inside["fraction_of_run"] == 0.4
    fast, reference = inside["train_ms_per_step"] / 1000, inside["train_ms_per_step_reference"] / 1000
    assert inside["speedup_over_run"] == pytest.approx((0.4 * reference + 0.6 * 0.3) / (0.4 * fast + 0.6 * 0.2))
    progresses.clear()
    bench.compare_steps({"fast": (model, None, True)}, context, future, iters=1, rounds=1, progress=0.7)
    bench.step_breakdown(model, context, future, None, 1e9, 100.0, progress=0.7)
    assert progresses == [0.7] * 4  # an untimed and a timed step each


def test_bench_curves_trains_the_fast_and_the_reference_step_from_one_seed():
    from vidpred.bench import bench_curves
    from vidpred.train import amp_dtype

    result = bench_curves("smoke", models=["convlstm", "transformer"], fraction=0.2)
    assert result["fast_precision"] == ("bfloat16" if amp_dtype(torch.device("cpu"), True) else "float32")
    for row in result["models"]:
        reference, fast = row["reference"], row["fast"]
        assert [s for s, _ in reference["val_mse"]] == [s for s, _ in fast["val_mse"]] and reference["val_mse"]
        assert row["largest_relative_gap"] == pytest.approx(
            max(abs(f - r) / r for (_, r), (_, f) in zip(reference["val_mse"], fast["val_mse"])))
        assert row["speedup"] == pytest.approx(reference["train_seconds"] / fast["train_seconds"])
        assert 0 < fast["test_mse"] < 1


def test_data_dir_is_the_real_sets_mirror_for_the_real_profile(tmp_path):
    """`--profile real --data-dir M` reads the real exercise set from the mirror M; elsewhere it is a UCF101 folder."""
    import argparse

    from vidpred.cli import _profile

    def data(profile, **extra):
        return _profile(argparse.Namespace(profile=profile, data_dir=str(tmp_path), **extra)).data

    assert (data("real").source, data("real").data_dir) == ("exercise", str(tmp_path))
    assert data("book").source == "ucf101"
    assert data("book", data="exercise").source == "exercise"


def test_vidpred_app_serves_the_apps_default_profile(monkeypatch):
    """`vidpred app` without --profile serves app.default_profile() (the real-trained checkpoints where they ship)."""
    from vidpred import app

    served = {}
    monkeypatch.delenv("VIDPRED_PROFILE", raising=False)
    monkeypatch.setattr(app, "launch", lambda **kwargs: served.update(kwargs))
    monkeypatch.setattr("vidpred.cli.check_port_free", lambda port: None)
    assert main(["app", "--port", "7999"]) == 0
    assert served["profile"] == app.default_profile()
    assert main(["app", "--port", "7999", "--profile", "smoke"]) == 0
    assert served["profile"] == "smoke"
