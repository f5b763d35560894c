"""Wrong command lines fail fast with one line that names the flag, the value and the fix (no training here)."""

from __future__ import annotations

import os
import socket

import pytest
import torch

from vidpred.cli import main


def error_of(argv, capsys) -> str:
    """Run ``vidpred argv``; it must exit with status 2 and one line on stderr, which is returned."""
    status = main(argv)
    captured = capsys.readouterr()
    assert status == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


@pytest.mark.parametrize("argv, flag, value", [
    (["generate", "--fps", "0"], "--fps", "0"),
    (["generate", "--fps", "-3"], "--fps", "-3"),
    (["generate", "--clips", "0"], "--clips", "0"),
    (["generate", "--clips", "-1"], "--clips", "-1"),
    (["train", "--steps", "-5"], "--steps", "-5"),
    (["train", "--steps", "0"], "--steps", "0"),
    (["train", "--frame-step", "0"], "--frame-step", "0"),
    (["prepare", "--frame-step", "0"], "--frame-step", "0"),
    (["app", "--port", "0"], "--port", "0"),
    (["app", "--port", "70000"], "--port", "70000"),
    (["app", "--port", "web"], "--port", "web"),
])
def test_bad_numbers_name_the_flag(argv, flag, value, capsys):
    line = error_of(argv, capsys)
    assert line.startswith(f"vidpred {argv[0]}: argument {flag}") and value in line
    assert "give" in line and line.endswith(f"(see vidpred {argv[0]} --help)")


def test_training_a_baseline_says_baselines_need_no_training(capsys):
    line = error_of(["train", "--model", "copy_last"], capsys)
    assert "copy_last is a baseline and needs no training" in line
    assert "train one of convlstm, predrnn, predrnn_v2, transformer or all" in line
    assert "is not a model" in error_of(["train", "--model", "resnet"], capsys)


def test_bench_models_flag_names_the_bad_model_and_where_it_applies(capsys):
    line = error_of(["bench", "curves", "--models", "convlstm,resnet"], capsys)
    assert "argument --models: 'resnet' is not a model; give some of convlstm, predrnn" in line
    assert "copy_last is a baseline" in error_of(["bench", "quality", "--models", "copy_last"], capsys)
    assert "no model named" in error_of(["bench", "models", "--models", ","], capsys)
    line = error_of(["bench", "data", "--models", "convlstm"], capsys)  # before any work
    assert line == ("vidpred bench: --models applies to bench models, curves, quality, compile, stillness, "
                    "not bench data; leave it out")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", ["train", "evaluate", "generate"])
def test_cuda_without_cuda(command, capsys):
    line = error_of([command, "--device", "cuda"], capsys)
    assert "argument --device: cuda: CUDA is not available on this machine" in line and "use --device cpu" in line


def test_unknown_device(capsys):
    assert "'gpu' is not a device; use auto, cpu, cuda, cuda:N or mps" in error_of(["train", "--device", "gpu"], capsys)


def test_data_dir_naming_a_file(tmp_path, capsys):
    archive = tmp_path / "ucf101.zip"
    archive.write_bytes(b"PK")
    line = error_of(["prepare", "--data-dir", str(archive)], capsys)
    assert f"argument --data-dir: {archive} is a file, not a folder" in line


def test_busy_port_names_the_port_and_suggests_another(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = error_of(["app", "--port", str(port), "--profile", "smoke"], capsys)
    assert line.startswith(f"vidpred app: port {port} on 127.0.0.1 is already in use; pick a free one with --port")


@pytest.mark.parametrize("command", ["evaluate", "generate"])
def test_unwritable_out_fails_before_the_work(command, tmp_path, capsys, monkeypatch):
    import vidpred.data

    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded before the output folder was checked")

    monkeypatch.setattr(vidpred.data, "windows", no_data)
    monkeypatch.setattr(vidpred.data, "load_splits", no_data)
    a_file = tmp_path / "results.json"
    a_file.write_text("{}")
    line = error_of([command, "--profile", "smoke", "--runs", str(tmp_path), "--out", str(a_file / "sub")], capsys)
    assert line.startswith(f"vidpred {command}: --out {a_file / 'sub'}: cannot write there (Not a directory)")
    assert line.endswith("give a writable folder")
    line = error_of([command, "--profile", "smoke", "--runs", str(tmp_path), "--out", "/sys/kernel"], capsys)
    assert "--out /sys/kernel: cannot write there" in line  # read-only even for root
    if os.geteuid() != 0:  # root writes into a read-only folder anyway
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        assert "cannot write there (Permission denied)" in error_of(
            [command, "--profile", "smoke", "--runs", str(tmp_path), "--out", str(locked)], capsys)


def test_help_still_exits_zero(capsys):
    assert main(["train", "--help"]) == 0
    assert "--steps" in capsys.readouterr().out
