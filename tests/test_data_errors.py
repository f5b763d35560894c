"""What goes wrong with real data folders and caches, and how prepare copes and says so.

Each test reproduces one failure reported in the reliability issue: a truncated cache, a read-only
cache, a FIFO or a device named like a clip, temporary files left by a kill, a malformed Kaggle
CSV, files prepare cannot use, an empty split, and --download without network.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import time
from contextlib import contextmanager

import numpy as np
import pytest
from conftest import CLASSES, write_avi

from vidpred.cli import main
from vidpred.config import DataConfig
from vidpred.data import load_splits, ucf101
from vidpred.data.ucf101 import VideoError, decode_video, prepare
from vidpred.utils import atomic_write


def cfg_for(root, tmp_path, **kw) -> DataConfig:
    return DataConfig(source="ucf101", data_dir=str(root), cache_dir=str(tmp_path / "cache"), classes=CLASSES,
                      n_context=20, n_future=10, window_stride=10, **kw)


def one_line(stderr: str) -> str:
    """The one message on stderr (beside the progress bar), never a traceback."""
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip() and not line.startswith("decode:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


class Hung(BaseException):
    """Not an OSError (as TimeoutError is), so no ``except OSError`` in the code under test can swallow it."""


@contextmanager
def deadline(seconds: float):
    """Fail instead of hanging: a blocked open() or an endless read is interrupted by SIGALRM (every second)."""
    def expired(signum, frame):
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------ 1. a damaged cache is rebuilt
def test_truncated_empty_or_wrong_cache_files_are_rebuilt_and_reported(original_layout, tmp_path, caplog):
    cfg = cfg_for(original_layout, tmp_path)
    first = prepare(cfg)
    frames = first.cache_dir / "frames"
    truncated, empty, short = (frames / f"{n}.npy" for n in ("v_PushUps_g01_c01", "v_Lunges_g08_c02", "v_PushUps_g12_c01"))
    truncated.write_bytes(truncated.read_bytes()[:1000])  # what a kill or a full disk leaves
    empty.write_bytes(b"")
    np.save(short, np.zeros((7, 64, 64), np.uint8))  # a valid array that is not the clip the manifest describes

    second = prepare(cfg)
    assert second.decoded == 3 and second.reused == 45
    assert "unreadable" in second.rebuilt[str(truncated)] and "unreadable" in second.rebuilt[str(empty)]
    assert second.rebuilt[str(short)] == "7 frames where the manifest says 50"
    for split in first.clips:
        for a, b in zip(first.clips[split], second.clips[split]):
            assert a.name == b.name and np.array_equal(a.frames, b.frames)
    assert prepare(cfg).rebuilt == {}  # repaired for good

    empty.write_bytes(b"")
    with caplog.at_level("WARNING"):
        load_splits(cfg)  # what train / evaluate / generate go through
    assert f"rebuilt {empty}: unreadable" in caplog.text


def test_prepare_summary_says_what_was_rebuilt(original_layout, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["prepare", "--profile", "smoke", "--data-dir", str(original_layout)]
    assert main(args) == 0
    cached = next((tmp_path / "data" / "cache").glob("ucf101-*/frames/v_PushUps_g01_c01.npy"))
    cached.write_bytes(b"")
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"rebuilt {cached.relative_to(tmp_path)}: unreadable (EOFError: No data left in file)" in out
    assert "decoded 1, reused 47" in out


# ------------------------------------------------------------------ 2. a complete cache is read-only
def test_complete_cache_is_used_without_writing(original_layout, tmp_path, monkeypatch):
    cfg = cfg_for(original_layout, tmp_path)
    first = prepare(cfg)
    manifest = first.cache_dir / "manifest.json"
    before = manifest.stat().st_mtime_ns

    def refuse(path, write):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(ucf101, "atomic_write", refuse)  # any write would fail, as in a read-only cache
    second = prepare(cfg)
    assert second.reused == 48 and second.decoded == 0 and second.not_cached is None
    assert manifest.stat().st_mtime_ns == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod a-w; the mocked test above covers it")
def test_complete_cache_works_after_chmod_read_only(original_layout, tmp_path):
    cfg = cfg_for(original_layout, tmp_path)
    cache = prepare(cfg).cache_dir
    for path in [cache, *cache.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        assert prepare(cfg).reused == 48
    finally:
        for path in [cache, *cache.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


def test_read_only_cache_that_needs_a_clip_decodes_it_in_memory(original_layout, tmp_path, monkeypatch):
    cfg = cfg_for(original_layout, tmp_path)
    first = prepare(cfg)
    (first.cache_dir / "frames" / "v_Lunges_g11_c01.npy").unlink()
    def refuse(path, write):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(ucf101, "atomic_write", refuse)
    second = prepare(cfg)
    assert second.decoded == 1 and sum(map(len, second.clips.values())) == 48
    assert second.not_cached == f"{first.cache_dir}: Permission denied"


# ------------------------------------------------------------------ 6. FIFOs and devices named like clips
def test_fifo_and_link_to_dev_zero_are_skipped_not_hung(original_layout, tmp_path):
    fifo = original_layout / "UCF-101" / "PushUps" / "v_PushUps_g12_c05.avi"
    os.mkfifo(fifo)
    zero = original_layout / "UCF-101" / "Lunges" / "v_Lunges_g12_c05.avi"
    zero.symlink_to("/dev/zero")
    with deadline(30):
        report = prepare(cfg_for(original_layout, tmp_path))
        with pytest.raises(VideoError, match="not a video file: a FIFO"):
            decode_video(fifo)
    assert report.skipped[str(fifo)] == "not a video file: a FIFO"
    assert report.skipped[str(zero)] == "not a video file: a device (a link to /dev/zero)"
    assert sum(map(len, report.clips.values())) == 48


# ------------------------------------------------------------------ 7. file modes, leftovers, deleted sources
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_write_respects_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_write(tmp_path / "file.bin", lambda handle: handle.write(b"x"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "file.bin").stat().st_mode) == 0o666 & ~umask


def test_prepare_removes_stale_temp_files_and_entries_of_deleted_sources(original_layout, tmp_path):
    cfg = cfg_for(original_layout, tmp_path)
    first = prepare(cfg)
    frames = first.cache_dir / "frames"
    stale, fresh = frames / ".v_PushUps_g01_c01.npy.abc123.tmp", frames / ".v_PushUps_g01_c02.npy.def456.tmp"
    for tmp in (stale, fresh, first.cache_dir / ".manifest.json.ghi789.tmp"):
        tmp.write_bytes(b"half a file")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    os.utime(first.cache_dir / ".manifest.json.ghi789.tmp", (an_hour_ago, an_hour_ago))
    gone = original_layout / "UCF-101" / "Lunges" / "v_Lunges_g12_c02.avi"
    gone.unlink()

    second = prepare(cfg)
    assert not stale.exists() and fresh.exists()  # a write in progress elsewhere is left alone
    assert not (first.cache_dir / ".manifest.json.ghi789.tmp").exists()
    assert not (frames / "v_Lunges_g12_c02.npy").exists()
    assert "v_Lunges_g12_c02" not in json.loads((first.cache_dir / "manifest.json").read_text())["clips"]
    assert str(stale) in second.cleaned and any(c.startswith("v_Lunges_g12_c02 (its source") for c in second.cleaned)
    assert second.reused == 47


# ------------------------------------------------------------------ 8. Kaggle CSVs
def test_kaggle_csv_without_label_column_is_one_line(kaggle_layout, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    table = kaggle_layout / "val.csv"
    table.write_text(table.read_text().replace("clip_name,clip_path,label", "clip_name,clip_path,class"))
    assert main(["prepare", "--profile", "smoke", "--data-dir", str(kaggle_layout)]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"{table} has no 'label' column (columns: clip_name, clip_path, class)" in line


def test_kaggle_csv_yielding_no_clip_is_an_error(kaggle_layout, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (kaggle_layout / "test.csv").write_text("clip_name,clip_path,label\n")
    assert main(["prepare", "--profile", "smoke", "--data-dir", str(kaggle_layout), "--split", "kaggle"]) == 2
    assert f"{kaggle_layout / 'test.csv'} lists no clips" in one_line(capsys.readouterr().err)
    # rows whose files are all missing: the split they fill is empty, and the error says so
    header = "clip_name,clip_path,label\n"
    (kaggle_layout / "test.csv").write_text(f"{header}v_PushUps_g99_c01,/test/PushUps/v_PushUps_g99_c01.avi,PushUps\n")
    assert main(["prepare", "--profile", "smoke", "--data-dir", str(kaggle_layout), "--split", "kaggle"]) == 2
    assert "the test split is empty" in one_line(capsys.readouterr().err)


# ------------------------------------------------------------------ 10. say what was not used
def test_prepare_lists_what_it_did_not_use(original_layout, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    videos = original_layout / "UCF-101"
    for clip in (1, 2, 3):
        write_avi(videos / "Basketball" / f"v_Basketball_g01_c{clip:02d}.avi", 12)
    holiday = write_avi(videos / "PushUps" / "holiday.avi", 12)  # once enough to abort the whole prepare
    twin = videos / "PushUps" / "v_PushUps_g01_c01.mp4"
    shutil.copy(videos / "PushUps" / "v_PushUps_g01_c01.avi", twin)
    assert main(["prepare", "--profile", "smoke", "--data-dir", str(original_layout),
                 "--classes", "PushUps,Lunges,Pushups"]) == 0
    out = capsys.readouterr().out
    assert "3 clip(s) of 1 unselected class(es) (select with --classes): Basketball 3" in out
    assert f"1 file(s) not named v_<Class>_gXX_cYY: {holiday}" in out
    assert f"1 file(s) a second file of one clip name (the first is used): {twin}" in out
    assert "no clip of Pushups in" in out  # a misspelt class is named


def test_prepare_lists_kaggle_files_missing_from_the_csv(kaggle_layout, tmp_path):
    extra = write_avi(kaggle_layout / "train" / "PushUps" / "v_PushUps_g20_c01.avi", 50)
    report = prepare(cfg_for(kaggle_layout, tmp_path))
    assert report.ignored == {"present but not listed in the Kaggle CSV of its split": [str(extra)]}


def test_unknown_classes_only_is_an_error_naming_the_classes_there(original_layout, capsys):
    assert main(["prepare", "--data-dir", str(original_layout), "--classes", "Pushups"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "no clip of Pushups under" in line and "classes there: Lunges, PushUps" in line


def test_empty_split_names_the_split_and_the_cause(original_layout, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.rmtree(original_layout / "ucfTrainTestlist")
    for path in (original_layout / "UCF-101").glob("*/v_*_g0[89]_*.avi"):
        path.unlink()
    for path in (original_layout / "UCF-101").glob("*/v_*_g10_*.avi"):
        path.unlink()
    assert main(["prepare", "--profile", "smoke", "--data-dir", str(original_layout)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "the val split is empty: no clip of groups 8–10 outside the test split among the selected classes" in line


def test_empty_split_of_skipped_videos_says_they_were_skipped(original_layout, tmp_path):
    for path in (original_layout / "UCF-101").glob("*/v_*_g1[12]_*.avi"):
        path.write_bytes(b"not a video")
    with pytest.raises(ValueError, match=r"the train split is empty: its 8 video\(s\) were all skipped \(.*cannot open it"):
        prepare(cfg_for(original_layout, tmp_path))


# ------------------------------------------------------------------ 13. --download without network
def test_download_without_network_is_one_line(tmp_path, monkeypatch, capsys):
    import kagglehub
    import requests

    def offline(handle):
        raise requests.exceptions.ConnectionError("HTTPSConnectionPool(host='api.kaggle.com', port=443): Max retries")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    monkeypatch.chdir(tmp_path)
    assert main(["prepare", "--download"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "Kaggle is unreachable" in line and "--data-dir" in line
