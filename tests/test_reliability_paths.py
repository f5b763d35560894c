"""Paths that cannot be written or must not be read, and JSON that every parser accepts.

Each test reproduces one case of the reliability issue: an empty cache on a read-only disk (UCF101 and the real
exercise set), a full disk under ``evaluate --out``, NaN and infinity in results, a Kaggle CSV row that points
outside the data folder, and ``train`` into a read-only ``--runs``. Root writes through ``chmod a-w``, so a
read-only disk and a full one are simulated by making ``mkdir``, ``mkstemp`` or a write fail as the kernel would.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_avi
from test_exercise import scene, write_mp4v

import vidpred.data
from vidpred import bench, cli
from vidpred.cli import main
from vidpred.config import DataConfig, get_profile
from vidpred.data import exercise, load_splits, videos
from vidpred.data.exercise import Source
from vidpred.data.windows import Clip, WindowDataset
from vidpred.evaluate import evaluate_all, evaluate_clips
from vidpred.models.baselines import CopyLast
from vidpred.runs import Run, RunSet, data_identity
from vidpred.utils import json_text

ROFS = os.strerror(errno.EROFS)  # "Read-only file system"
FULL = os.strerror(errno.ENOSPC)  # "No space left on device"


def inside(path, folder) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder))


def read_only(monkeypatch, folder: Path) -> None:
    """``folder`` behaves as on a read-only mount: making a folder or a temporary file in it fails with EROFS."""
    real_mkdir, real_mkstemp = Path.mkdir, tempfile.mkstemp

    def mkdir(self, *args, **kwargs):
        if inside(self, folder):
            raise OSError(errno.EROFS, ROFS, str(self))
        return real_mkdir(self, *args, **kwargs)

    def mkstemp(*args, dir=None, **kwargs):  # noqa: A002 (tempfile's name)
        if dir is not None and inside(dir, folder):
            raise OSError(errno.EROFS, ROFS, str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def disk_full(monkeypatch, folder: Path, name: str = "") -> None:
    """Writing a file in ``folder`` (whose name starts with ``.name``) stops after 16 bytes with ENOSPC, as a full
    disk does: the temporary file exists, half-written, when the error comes."""
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            self.handle.write(bytes(data)[:16])
            self.handle.flush()
            raise OSError(errno.ENOSPC, FULL)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()
            return False

        def __getattr__(self, attribute):
            return getattr(self.handle, attribute)

    def fdopen(fd, *args, **kwargs):
        handle = real_fdopen(fd, *args, **kwargs)
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        return Full(handle) if inside(path, folder) and path.name.startswith(f".{name}") else handle

    monkeypatch.setattr(os, "fdopen", fdopen)


def one_line(stderr: str) -> str:
    """The one message on stderr (beside progress bars), never a traceback."""
    lines = [line for line in stderr.replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith(("decode", "download"))]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def strict_json(path: Path):
    """``path`` parsed by a parser that refuses NaN and Infinity, as browsers, jq and most languages do."""
    def refuse(constant):
        raise ValueError(f"{path} holds the non-standard JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


# ------------------------------------------------------------------ 1. an empty cache on a read-only disk
def test_prepare_with_an_empty_read_only_cache_decodes_in_memory_and_says_how_to_keep_the_clips(
        original_layout, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()  # data/ is on a read-only mount, so data/cache cannot be made
    read_only(monkeypatch, tmp_path / "data")
    assert main(["prepare", "--profile", "smoke", "--data-dir", str(original_layout)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = [line for line in captured.out.splitlines() if "could not write the cache" in line]
    assert len(lines) == 1 and re.fullmatch(
        rf"could not write the cache data/cache/ucf101-\w+: {ROFS}; the clips were decoded in memory only and will "
        r"be decoded again next time: to keep them, run vidpred from a folder where data/cache can be written",
        lines[0]), captured.out
    assert "decoded 48, reused 0" in captured.out and re.search(r"^train\s+\d+", captured.out, re.M)
    assert list((tmp_path / "data").iterdir()) == []  # nothing half-made
    # what train, evaluate and generate go through: the clips, from memory, and no error
    cfg = DataConfig(source="ucf101", data_dir=str(original_layout), classes=("PushUps", "Lunges"))
    assert sum(map(len, load_splits(cfg).values())) == 48


def test_prepare_exercise_into_a_read_only_cache_is_one_line_before_any_download(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    read_only(monkeypatch, tmp_path / "data")
    monkeypatch.delenv(exercise.MIRROR_DIR_ENV, raising=False)
    monkeypatch.delenv(exercise.MIRROR_URL_ENV, raising=False)

    def offline(*args, **kwargs):
        raise AssertionError("a download started although its folder cannot be written")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert main(["prepare", "--profile", "smoke", "--data", "exercise"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line == (f"vidpred prepare: cannot download 301 video(s) of the real exercise set into "
                    f"data/cache/exercise-videos ({ROFS}); pass --data-dir <a mirror of the set> (or set "
                    "VIDPRED_EXERCISE_DIR), or run vidpred from a folder where data/cache can be written")
    assert list((tmp_path / "data").iterdir()) == []


def test_prepare_exercise_from_a_mirror_with_a_read_only_cache_decodes_in_memory(tmp_path, monkeypatch, capsys):
    mirror = tmp_path / "mirror"
    sources = []
    for k in range(5):  # five scenes: three go to train, one each to val and test
        path = f"videos/clip{k}.mp4"
        data = write_mp4v(mirror / "someone+exercises" / path, scene(60, 10 + k), 25.0).read_bytes()
        sources.append(Source("someone/exercises", "0" * 40, path, hashlib.sha256(data).hexdigest(), len(data),
                              "push-ups"))
    monkeypatch.setattr(exercise, "load_sources", lambda path=None: sources)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    read_only(monkeypatch, tmp_path / "data")
    assert main(["prepare", "--profile", "smoke", "--data", "exercise", "--data-dir", str(mirror)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^could not write the cache data/cache/exercise-\w+: {ROFS}; the clips were decoded in memory "
                     r"only and will be decoded again next time: to keep them, run vidpred from a folder where "
                     r"data/cache can be written$", out, re.M), out
    assert "decoded 5, reused 0" in out
    assert list((tmp_path / "data").iterdir()) == []


# ------------------------------------------------------------------ 2. a full disk under evaluate --out
def tiny_windows(seed: int, clips: int = 2) -> WindowDataset:
    rng = np.random.default_rng(seed)
    return WindowDataset([Clip(f"c{seed}{k}", "PushUps", k, rng.integers(0, 255, (45, 64, 64), dtype=np.uint8))
                          for k in range(clips)], 30, 15)


def a_run(tmp_path: Path) -> RunSet:
    """A 'trained' run whose model is parameter-free (copy-last), so evaluate has something to evaluate."""
    state = {"model": "copy_last", "model_config": {}, "state_dict": {}, "step": 1, "train_seconds": 0.0,
             "device": "cpu", "data": None}
    return RunSet({"copy_last": Run("copy_last", tmp_path / "runs" / "copy_last-1" / "last.pt", state)})


@pytest.mark.parametrize("fails", ["results.json", "results.csv"])
def test_evaluate_onto_a_full_disk_is_one_line_and_keeps_the_previous_results(fails, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"previous": true}')  # an earlier evaluation: never lost
    datasets = {"train": tiny_windows(1), "val": tiny_windows(2), "test": tiny_windows(3)}
    data = data_identity(get_profile("smoke").data, datasets["train"].clips)
    monkeypatch.setattr(cli, "_runs_and_data", lambda args, profile: (datasets, data, a_run(tmp_path)))
    disk_full(monkeypatch, out, fails)
    assert main(["evaluate", "--profile", "smoke", "--runs", str(tmp_path / "runs"), "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line == (f"vidpred evaluate: cannot write results.json and results.csv in {out} ({FULL}); nothing was "
                    "written there: free some space there, or pass --out <a folder on a disk with space> "
                    "(in Python: another out_dir)")
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]  # no temporary file, no new half of the pair
    assert (out / "results.json").read_text() == '{"previous": true}'


def test_evaluate_clips_onto_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_mp4v(tmp_path / "mine" / "a.mp4", scene(60, 3), 25.0)
    out = tmp_path / "out"
    disk_full(monkeypatch, out)
    assert main(["evaluate", "--profile", "smoke", "--clips", str(tmp_path / "mine"), "--runs", str(tmp_path / "none"),
                 "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line == (f"vidpred evaluate: cannot write clips.json and clips.csv in {out} ({FULL}); nothing was written "
                    "there: free some space there, or pass --out <a folder on a disk with space> (in Python: "
                    "another out_dir)")
    assert list(out.iterdir()) == []


# ------------------------------------------------------------------ 3. standard JSON only: NaN and infinity are null
class Broken(CopyLast):
    """A model whose predictions are NaN (a diverged run): every metric of its row is NaN."""

    def forward(self, context: torch.Tensor, n_future: int = 15) -> torch.Tensor:
        return torch.full_like(context[:, :1], float("nan")).expand(-1, n_future, -1, -1, -1)


def test_json_text_writes_nan_and_infinity_as_null():
    value = {"nan": float("nan"), "inf": [float("inf"), -float("inf"), 1.5], "np": np.float32("nan"),
             "nested": {"x": np.float64("inf"), "n": np.int64(3)}, "tuple": (float("nan"), "text")}
    text = json_text(value, indent=1)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard {c}")) == {
        "nan": None, "inf": [None, None, 1.5], "np": None, "nested": {"x": None, "n": 3}, "tuple": [None, "text"]}


def test_results_and_clips_json_hold_null_for_nan_metrics(tmp_path):
    models = {"copy_last": CopyLast(CopyLast.Config()), "broken": Broken(CopyLast.Config())}
    rows = evaluate_all({}, tiny_windows(3), tmp_path, baselines=models, latency_repeats=1)
    assert np.isnan(rows[1]["mse"])  # in memory the number is NaN, as computed
    results = strict_json(tmp_path / "results.json")
    broken = next(r for r in results["results"] if r["model"] == "broken")
    assert broken["mse"] is None and set(broken["mse_per_horizon"]) == {None}
    assert next(r for r in results["results"] if r["model"] == "copy_last")["mse"] > 0
    cfg = DataConfig(n_context=30, n_future=15)
    clips = {"a.mp4": tiny_windows(4, 1).clips}
    evaluate_clips(models, clips, tmp_path, cfg)
    payload = strict_json(tmp_path / "clips.json")
    assert payload["pooled"]["broken"]["mse"] is None and payload["pooled"]["broken"]["mse_vs_copy_last"] is None
    assert payload["clips"]["a.mp4"]["results"]["broken"]["psnr"] is None


def test_bench_json_holds_null_for_nan_and_infinity(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "run", lambda what, profile=None, **options: {"ms": float("nan"), "speedup": float("inf"),
                                                                          "ok": 1.0})
    out = tmp_path / "bench" / "data.json"
    assert main(["bench", "data", "--profile", "smoke", "--out", str(out)]) == 0
    assert strict_json(out) == {"ms": None, "speedup": None, "ok": 1.0}
    printed = capsys.readouterr().out
    assert json.loads(printed[: printed.rindex("}") + 1], parse_constant=lambda c: pytest.fail(c))["ms"] is None


def test_bench_onto_a_full_disk_prints_the_numbers_then_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "run", lambda what, profile=None, **options: {"ms": 2.5})
    disk_full(monkeypatch, tmp_path)
    assert main(["bench", "data", "--profile", "smoke", "--out", str(tmp_path / "data.json")]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"ms": 2.5}  # the measurement is not lost with the file
    assert one_line(captured.err) == (f"vidpred bench: cannot write data.json in {tmp_path} ({FULL}); nothing was "
                                      "written there: free some space there, or pass --out <a path on a disk with space>")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ 4. Kaggle CSV rows that leave the data folder
@pytest.mark.parametrize("listed", ["/../other/v_PushUps_g30_c01.avi", "/train/../../other/v_PushUps_g30_c01.avi"])
def test_kaggle_csv_path_outside_the_data_folder_is_skipped_and_reported(listed, kaggle_layout, tmp_path, monkeypatch,
                                                                         capsys):
    outside = write_avi(tmp_path / "other" / "v_PushUps_g30_c01.avi", 50)  # a real video, out of bounds
    table = kaggle_layout / "train.csv"
    table.write_text(table.read_text() + f"v_PushUps_g30_c01,{listed},PushUps\n")
    opened = []
    real_open_regular = videos.open_regular
    monkeypatch.setattr(videos, "open_regular", lambda path: opened.append(Path(path)) or real_open_regular(path))
    monkeypatch.chdir(tmp_path)
    assert main(["prepare", "--profile", "smoke", "--data-dir", str(kaggle_layout)]) == 0
    out = capsys.readouterr().out
    assert (f"  1 file(s) listed in a Kaggle CSV with a clip_path that leaves the data folder (not read): "
            f"{listed} in {table}") in out.splitlines()
    assert opened and all(inside(path, kaggle_layout) for path in opened) and outside not in opened
    manifest = next((tmp_path / "data" / "cache").glob("ucf101-*/manifest.json"))
    assert "v_PushUps_g30_c01" not in strict_json(manifest)["clips"]  # and the manifest is standard JSON


def test_kaggle_csv_rows_without_a_path_or_a_label_are_reported(kaggle_layout, tmp_path, monkeypatch, capsys):
    table = kaggle_layout / "val.csv"
    rows = table.read_text().splitlines()
    table.write_text("\n".join([*rows, "v_PushUps_g31_c01,,PushUps", "v_PushUps_g31_c02,/val/PushUps/x.avi,",
                                 "v_PushUps_g31_c03"]) + "\n")
    monkeypatch.chdir(tmp_path)
    assert main(["prepare", "--profile", "smoke", "--data-dir", str(kaggle_layout)]) == 0
    n = len(rows) - 1  # data rows before the three bad ones
    assert (f"  3 file(s) listed in a Kaggle CSV row without a clip_path or a label: data row {n + 1} of {table}, data row "
            f"{n + 2} of {table}, data row {n + 3} of {table}") in capsys.readouterr().out.splitlines()


# ------------------------------------------------------------------ 5. train into a read-only --runs
@pytest.mark.parametrize("where", ["the runs folder", "a missing folder under it"])
def test_train_into_a_read_only_runs_fails_before_loading_the_data(where, tmp_path, monkeypatch, capsys):
    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded before the runs folder was checked")

    monkeypatch.setattr(vidpred.data, "windows", no_data)
    monkeypatch.chdir(tmp_path)
    mount = tmp_path / "ro"
    mount.mkdir()
    runs = mount if where == "the runs folder" else mount / "new" / "runs"
    read_only(monkeypatch, mount)
    assert main(["train", "--model", "convlstm", "--profile", "smoke", "--steps", "1", "--runs", str(runs)]) == 2
    line = one_line(capsys.readouterr().err)
    assert re.fullmatch(rf"vidpred train: cannot train into {runs}/convlstm-\w+: {mount} is not writable \({ROFS}\); "
                        r"pass --runs <a writable folder> \(in Python: another out_dir\)", line), line
    assert list(mount.iterdir()) == []


def test_the_early_runs_check_leaves_no_folder_behind(tmp_path):
    cli.check_runs_writable(tmp_path / "runs" / "smoke")
    assert list(tmp_path.iterdir()) == []  # fit makes the folders when it writes the run
