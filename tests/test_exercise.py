"""The real exercise set and any folder of real videos: decoding real footage, the pinned sources (a mirror folder,
a download over HTTP that resumes and checks sha256), the cache, the split by scene, `evaluate --clips`, and every
bad input's one-line message.

Downloads are served from 127.0.0.1 by a small HTTP server that honours Range requests, so the download code runs
for real; the videos it serves are written here with OpenCV. The tests on real footage read ../shared and skip
without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.server
import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import EXERCISE, REALCLIPS, need

from vidpred.cli import main
from vidpred.config import DataConfig
from vidpred.data import exercise, footage
from vidpred.data.exercise import Source, SourceError

# ------------------------------------------------------------------------------------------- decoding


def write_mp4v(path: Path, frames: np.ndarray, fps: float) -> Path:
    """A real MPEG-4 video of grey frames (T, H, W)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames.shape[2:0:-1], isColor=False)
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def scene(n: int, seed: int, size=(120, 160)) -> np.ndarray:
    """``n`` frames of a textured scene with a bright square moving across it (a camera's noise included)."""
    rng = np.random.default_rng(seed)
    blobs = cv2.GaussianBlur(rng.normal(size=size).astype(np.float32), (0, 0), 6)  # large light and dark patches
    background = cv2.normalize(blobs, None, 30, 220, cv2.NORM_MINMAX).astype(np.uint8)
    frames = []
    for t in range(n):
        frame = background.copy()
        x = 10 + (3 * t) % (size[1] - 40)
        frame[40:70, x : x + 24] = 250
        frames.append(np.clip(frame + rng.normal(0, 2, size), 0, 255).astype(np.uint8))
    return np.stack(frames)


def test_resample_takes_the_nearest_frame_at_25_fps():
    assert list(footage.resample(0, 6, 50.0)) == [0, 2, 4]  # 50 fps: every other frame
    assert len(footage.resample(0, 150, 29.97)) == 125  # 6 s at 29.97 fps -> 6 s at 25
    picks = footage.resample(10, 40, 20.0)  # slower than 25 fps: some frames repeat, none is invented
    assert picks[0] == 10 and picks[-1] <= 39 and np.all(np.diff(picks) >= 0) and len(picks) == 37


def test_a_video_at_50_fps_with_bars_a_cut_and_a_frozen_tail(tmp_path):
    """Found from the pixels: 50 -> 25 fps, the black bars cropped, two shots split, the held last frame dropped."""
    first, second = scene(80, 1), scene(80, 2)
    frozen = np.repeat(second[-1:], 30, axis=0)
    body = np.concatenate([first, second, frozen])  # (190, 120, 160)
    framed = np.zeros((190, 120, 200), np.uint8)  # pillarbox: 20 black columns each side
    framed[:, :, 20:180] = body
    path = write_mp4v(tmp_path / "clip.mp4", framed, 50.0)
    decoded = footage.decode_footage(path, 64, "center", min_frames=30)
    assert decoded.source_fps == 50.0 and decoded.source_frames == 190
    top, bottom, left, right = decoded.box
    assert (top, bottom) == (0, 120) and abs(left - 20) <= 2 and abs(right - 180) <= 2 and decoded.cropped
    assert decoded.cuts == 1 and decoded.dropped.get("frozen", 0) >= 28
    assert [len(s) for s in decoded.segments] == [40, 40]  # 80 frames at 50 fps -> 40 at 25, per shot
    assert all(s.dtype == np.uint8 and s.shape[1:] == (64, 64) for s in decoded.segments)


def test_blurred_side_bars_are_cropped_and_plain_walls_are_not():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (16, 90, 60)).astype(np.uint8)  # a portrait picture, full of detail
    frames = np.zeros((16, 90, 160), np.uint8)
    frames[:, :, 50:110] = sharp
    blurred = cv2.GaussianBlur(cv2.resize(sharp[0], (50, 90)), (0, 0), 8)
    frames[:, :, :50] = blurred
    frames[:, :, 110:] = blurred
    assert footage.content_box(frames) == (0, 90, 50, 110)
    wall = frames.copy()
    wall[:, :, :50] = 128  # a smooth wall on one side only: not bars
    wall[:, :, 110:] = sharp[:, :, :50]
    assert footage.content_box(wall) == (0, 90, 0, 160)


def test_a_camera_that_holds_still_is_not_a_freeze_frame():
    rng = np.random.default_rng(0)
    picture = cv2.resize(scene(1, 7)[0], (64, 64)).astype(np.float32)
    still = np.clip(picture + rng.normal(0, 1.5, (40, 64, 64)), 0, 255).astype(np.uint8)  # sensor noise only
    keep, _, dropped = footage.keep_mask(still)
    assert keep.all() and not dropped
    held = np.repeat(still[:1], 40, axis=0)  # a held frame (codec noise at most)
    keep, _, dropped = footage.keep_mask(held)
    assert not keep.any() and dropped == {"frozen": 40}


@pytest.mark.parametrize("name,expect", [
    ("calimiro-ai+WorkoutTracker/data/raw/squats/squat_7.mp4", "blurred side bars"),
    ("riyer8+cs231n-pushfit/datasets/videos/wrong/wrong55.mp4", "black bars"),
    ("riyer8+cs231n-pushfit/datasets/videos/correct/correct23.mp4", "a frozen tail"),
    ("calimiro-ai+WorkoutTracker/data/raw/dips/videoplayback.mp4", "a compilation with cuts"),
    ("calimiro-ai+WorkoutTracker/data/raw/push-ups/push-up_1.mp4", "1080p at 29.97 fps"),
])
def test_real_exercise_footage(name, expect):
    decoded = footage.decode_footage(need(EXERCISE) / name, 64, "center", min_frames=45)
    height, width = decoded.source_size
    top, bottom, left, right = decoded.box
    if expect == "blurred side bars":  # a portrait video in a 1280x720 frame
        assert (top, bottom) == (0, height) and right - left < 0.5 * width
    elif expect == "black bars":
        assert top > 0 and left > 0 and bottom < height and right < width
    elif expect == "a frozen tail":  # the pushfit clips hold their last frame for about a second
        assert decoded.dropped.get("frozen", 0) >= 25
    elif expect == "a compilation with cuts":
        assert decoded.cuts >= 3 and len(decoded.segments) >= 3
    else:
        assert decoded.source_fps == pytest.approx(29.97, abs=0.01) and decoded.box == (0, height, 0, width)
        assert [len(s) for s in decoded.segments] == [125]


# ------------------------------------------------------------------------------------ sources and files


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder with Range support; ``cut_after`` bytes stops the first answer short (a dropped link)."""

    cut_after: int | None = None
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 (http.server's name)
        path = Path(self.translate_path(self.path))
        type(self).requests.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_after is not None:
            body, type(self).cut_after = body[: type(self).cut_after], None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)


@pytest.fixture
def mirror(tmp_path):
    """Five short videos of five scenes laid out as a mirror (<owner>+<name>/<path>), their Sources, and a server."""
    root = tmp_path / "mirror"
    sources = []
    for k in range(5):
        path = f"videos/clip{k}.mp4"
        file = write_mp4v(root / "someone+exercises" / path, scene(60, 10 + k), 25.0)
        data = file.read_bytes()
        sources.append(Source("someone/exercises", "0" * 40, path, hashlib.sha256(data).hexdigest(), len(data),
                              "push-ups"))
    RangeHandler.requests, RangeHandler.cut_after = [], None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: RangeHandler(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, sources, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def config(tmp_path, **changes) -> DataConfig:
    return DataConfig(source="exercise", cache_dir=str(tmp_path / "cache"), n_context=10, n_future=5,
                      window_stride=5, **changes)


def test_the_package_lists_every_source_pinned():
    sources = exercise.load_sources()
    assert len(sources) == 301 and len({s.sha256 for s in sources}) == 301 and len({s.name for s in sources}) == 301
    assert {s.label for s in sources} == set(exercise.EXERCISE_CLASSES)
    assert all(len(s.commit) == 40 and len(s.sha256) == 64 for s in sources)
    url = sources[0].urls()[0]
    assert url.startswith("https://raw.githubusercontent.com/") and sources[0].commit in url


def test_the_shared_mirror_holds_every_pinned_file():
    files, fetched = exercise.locate(DataConfig(source="exercise", data_dir=str(need(EXERCISE))), exercise.load_sources())
    assert len(files) == 301 and not fetched


def test_prepare_downloads_from_a_mirror_over_http_then_reuses_the_cache(mirror, tmp_path, monkeypatch):
    root, sources, url = mirror
    monkeypatch.setenv(exercise.MIRROR_URL_ENV, url)
    monkeypatch.delenv(exercise.MIRROR_DIR_ENV, raising=False)
    report = exercise.prepare(config(tmp_path), sources=sources)
    assert len(report.downloaded) == 5 and report.decoded == 5 and report.reused == 0 and report.groups == 5
    assert {split: len(clips) for split, clips in report.clips.items()} == {"train": 3, "val": 1, "test": 1}
    for source in sources:  # the downloaded bytes are the pinned ones
        got = tmp_path / "cache" / "exercise-videos" / source.mirror_path
        assert hashlib.sha256(got.read_bytes()).hexdigest() == source.sha256
    again = exercise.prepare(config(tmp_path), sources=sources)
    assert not again.downloaded and again.decoded == 0 and again.reused == 5
    assert {k: [c.name for c in v] for k, v in again.clips.items()} == {k: [c.name for c in v] for k, v in report.clips.items()}
    clip = report.clips["train"][0]
    assert np.array_equal(clip.frames, next(c for c in again.clips["train"] if c.name == clip.name).frames)
    # the same files from a mirror folder give the same clips
    local = exercise.prepare(config(tmp_path, data_dir=str(root)), sources=sources)
    assert local.reused == 5 and not local.downloaded


def test_an_interrupted_download_resumes_where_it_stopped(mirror, tmp_path, monkeypatch):
    root, sources, url = mirror
    monkeypatch.setenv(exercise.MIRROR_URL_ENV, url)
    RangeHandler.cut_after = 1000  # the first answer stops after 1000 bytes
    with pytest.raises(SourceError, match=r"someone\+exercises/videos/clip0.mp4 could not be downloaded \(.*the transfer "
                                          r"stopped at 1000 of \d+ bytes\); run the same command again to resume"):
        exercise.prepare(config(tmp_path), sources=sources)
    part = tmp_path / "cache" / "exercise-videos" / "someone+exercises" / "videos" / "clip0.mp4.part"
    assert part.stat().st_size == 1000 and not part.with_suffix("").exists()  # nothing half-written as the file
    report = exercise.prepare(config(tmp_path), sources=sources)
    assert report.decoded == 5
    assert ("/someone%2Bexercises/videos/clip0.mp4", "bytes=1000-") in RangeHandler.requests  # resumed, not restarted


def test_download_failures_name_the_file_the_url_and_the_fix(mirror, tmp_path, monkeypatch):
    root, sources, url = mirror
    monkeypatch.setenv(exercise.MIRROR_URL_ENV, url)
    gone = dataclasses.replace(sources[0], path="videos/moved.mp4")
    with pytest.raises(SourceError) as error:
        exercise.prepare(config(tmp_path), sources=[gone, *sources[1:]])
    message = str(error.value)
    assert "\n" not in message and "videos/moved.mp4 has moved or is gone" in message and "HTTP 404" in message
    assert "--data-dir <mirror>" in message and "someone/exercises at commit 0000000000" in message
    changed = dataclasses.replace(sources[1], sha256="f" * 64)  # the server now holds other bytes under that name
    with pytest.raises(SourceError, match=r"clip1.mp4: the file at http://127.0.0.1:\d+/\S+ is not the pinned one "
                                          r"\(sha256 \w+… where the source has ffffffffffff…\); the source has changed"):
        exercise.prepare(config(tmp_path), sources=[changed])
    assert not list((tmp_path / "cache" / "exercise-videos").rglob("clip1.mp4*"))  # the wrong bytes are not kept
    monkeypatch.setenv(exercise.MIRROR_URL_ENV, "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(SourceError, match=r"clip2.mp4 could not be downloaded \(http://127.0.0.1:9/\S+: .*\); run the same"):
        exercise.prepare(config(tmp_path), sources=[sources[2]])


def test_a_mirror_folder_with_a_missing_or_changed_file(mirror, tmp_path):
    root, sources, _ = mirror
    (root / sources[0].mirror_path).unlink()
    with pytest.raises(SourceError, match=r"clip0.mp4: missing; the mirror must hold the pinned files"):
        exercise.prepare(config(tmp_path, data_dir=str(root)), sources=sources)
    changed = root / sources[1].mirror_path
    changed.write_bytes(changed.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(SourceError, match=r"clip1.mp4: sha256 \w+… where the source has \w+…; the mirror must hold"):
        exercise.prepare(config(tmp_path, data_dir=str(root)), sources=sources[1:])
    with pytest.raises(FileNotFoundError, match=r"the exercise mirror .*nowhere does not exist; pass --data-dir"):
        exercise.prepare(config(tmp_path, data_dir=str(tmp_path / "nowhere")), sources=sources)


def test_unreadable_and_short_videos_are_skipped_and_reported(mirror, tmp_path):
    root, sources, _ = mirror
    extra = []
    for name, data in (("broken.mp4", b"\x00\x00\x00\x18ftypmp42" + b"junk" * 500),
                       ("short.mp4", write_mp4v(tmp_path / "s.mp4", scene(12, 99), 25.0).read_bytes())):
        (root / "someone+exercises" / "videos" / name).write_bytes(data)
        extra.append(Source("someone/exercises", "0" * 40, f"videos/{name}", hashlib.sha256(data).hexdigest(),
                            len(data), "push-ups"))
    report = exercise.prepare(config(tmp_path, data_dir=str(root)), sources=[*sources, *extra])
    assert set(report.skipped) == {s.mirror_path for s in extra}
    assert "no frame could be decoded" in report.skipped["someone+exercises/videos/broken.mp4"] or \
        "cannot open" in report.skipped["someone+exercises/videos/broken.mp4"]
    assert report.skipped["someone+exercises/videos/short.mp4"].startswith("no piece as long as one window (15 frames")
    assert sum(len(v) for v in report.clips.values()) == 5
    cached = next((tmp_path / "cache").glob("exercise-*/frames/exercises.videos.clip0.npy"))
    cached.write_bytes(b"truncated")  # a damaged cache file is decoded again and said so
    again = exercise.prepare(config(tmp_path, data_dir=str(root)), sources=[*sources, *extra])
    assert again.decoded == 1 and again.reused == 4 and str(cached) in again.rebuilt
    assert set(again.skipped) == set(report.skipped)


def test_scene_groups_and_the_split_are_deterministic():
    rng = np.random.default_rng(0)
    base = [rng.normal(size=(3, 256)).astype(np.float32) for _ in range(4)]
    same = base[0] + 0.05 * rng.normal(size=(3, 256)).astype(np.float32)  # the first scene again, re-encoded
    signatures = [s / np.linalg.norm(s, axis=1, keepdims=True) for s in (*base, same)]
    groups = exercise.scene_groups(signatures)
    assert groups[0] == groups[4] and len(set(groups)) == 4
    split = exercise.assign_groups(groups, ["A"] * 5, [100] * 5, ["e", "d", "c", "b", "a"])
    assert split == exercise.assign_groups(groups, ["A"] * 5, [100] * 5, ["e", "d", "c", "b", "a"])
    assert split[groups[0]] == "train"  # the group of the smallest key ("a", the fifth clip) comes first


# ---------------------------------------------------------------------------------------- the CLI


def test_cli_prepare_data_exercise_prints_the_split(mirror, tmp_path, monkeypatch, capsys):
    root, sources, _ = mirror
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(exercise, "load_sources", lambda path=None: sources)
    assert main(["prepare", "--profile", "smoke", "--data", "exercise", "--data-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "decoded 5, reused 0" in out and "every video at 25 fps" in out and "5 groups of look-alike clips" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["train"], ["val"], ["test"])}
    assert {k: int(v[1]) for k, v in rows.items()} == {"train": 3, "val": 1, "test": 1}
    assert "windows per class: train PushUps" in out
    assert main(["prepare", "--profile", "smoke", "--data", "exercise", "--classes", "Lunges", "--data-dir", str(root)]) == 2
    assert "the real exercise set has no class Lunges; its classes are PushUps, PullUps, Squats, Dips" in capsys.readouterr().err


def test_evaluate_clips_on_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "mine"
    write_mp4v(folder / "a holiday (1).mp4", scene(60, 3), 30.0)
    write_mp4v(folder / "sub" / "squats.avi", scene(70, 4, size=(160, 90)), 24.0)  # portrait, 24 fps
    write_mp4v(folder / "tiny.mp4", scene(20, 5), 25.0)
    (folder / "notes.mp4").write_bytes(b"not a video")
    assert main(["evaluate", "--profile", "smoke", "--clips", str(folder), "--runs", str(tmp_path / "none"),
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "a holiday (1).mp4" in out and "sub/squats.avi" in out and "all windows" in out
    assert "skipped tiny.mp4: too short" in out and "skipped notes.mp4:" in out
    payload = json.loads((tmp_path / "out" / "clips.json").read_text())
    assert set(payload["clips"]) == {"a holiday (1).mp4", "sub/squats.avi"}
    assert set(payload["pooled"]) >= {"copy_last", "context_mean", "blend", "analogue"}
    pooled = payload["pooled"]
    assert pooled["copy_last"]["mse_vs_copy_last"] == 1.0
    assert pooled["blend"]["windows"] == sum(c["windows"] for c in payload["clips"].values())
    lines = (tmp_path / "out" / "clips.csv").read_text().splitlines()
    assert lines[0] == "clip,model,windows,mse,mse_vs_copy_last,moving_mse,psnr,ssim" and len(lines) == 1 + 3 * len(pooled)


def test_evaluate_clips_bad_folders(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--profile", "smoke", "--clips", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vidpred evaluate: --clips") and "holds no video" in err and "\n" not in err
    write_mp4v(tmp_path / "short" / "a.mp4", scene(20, 1), 25.0)
    assert main(["evaluate", "--profile", "smoke", "--clips", str(tmp_path / "short")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no video gives one window (1 skipped; a.mp4: too short" in err and "use clips of at least 1.8 s" in err
    assert main(["evaluate", "--profile", "smoke", "--clips", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_evaluate_clips_on_real_unseen_footage(tmp_path, monkeypatch, capsys):
    """Two of ../shared/realclips: an XviD AVI at 25 fps and H.264 at 1080p, 30 fps."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "real"
    folder.mkdir()
    for name in ("v_ApplyEyeMakeup_g01_c01.avi", "ntu_S001C001P001R001A001_rgb.avi"):
        (folder / name).symlink_to(need(REALCLIPS) / name)
    assert main(["evaluate", "--profile", "smoke", "--clips", str(folder), "--out", str(tmp_path / "out")]) == 0
    payload = json.loads((tmp_path / "out" / "clips.json").read_text())
    assert payload["clips"]["v_ApplyEyeMakeup_g01_c01.avi"]["windows"] == 8  # 164 frames at 25 fps, stride 15
    assert payload["clips"]["ntu_S001C001P001R001A001_rgb.avi"]["windows"] >= 1
    assert all(0 < r["mse"] < 0.2 for r in payload["pooled"].values())
