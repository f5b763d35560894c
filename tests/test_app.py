"""The Gradio app: its functions, a gradio_client round trip, and a real browser (Chromium)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import write_avi

import vidpred.app as app
from vidpred.app import AppError, launch, load_models, metrics_table, predict_all, read_clip, too_short
from vidpred.config import get_profile
from vidpred.data import windows
from vidpred.models import BASELINES, LEARNED, build
from vidpred.train import fit, run_dir

SMOKE = get_profile("smoke")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = Path(__file__).resolve().parents[1] / "book" / "_static" / "app.png"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Tiny trained checkpoints of every learned model, laid out as `vidpred train` lays them out."""
    root = tmp_path_factory.mktemp("runs")
    data = windows(SMOKE.data)
    cfg = dataclasses.replace(SMOKE.train, steps=2, batch_size=2, eval_every=2, checkpoint_every=2)
    for name in LEARNED:
        torch.manual_seed(0)
        model = build(name, **SMOKE.model_config(name))
        fit(model, data["train"], data["val"], cfg, run_dir(root, model, SMOKE.data, cfg), SMOKE.data, progress=False)
    return root


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_avi(tmp_path_factory.mktemp("clips") / "upload.avi", 60, size=(320, 240))


def portrait_in_bars(path: Path, n_frames: int, fps: float) -> Path:
    """A phone's portrait video in a landscape frame (black bars), at ``fps``: the picture brightens by half a grey
    level a frame, so a frame's brightness says which source frame it is."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (160, 120), isColor=False)
    texture = np.random.default_rng(0).integers(0, 40, (120, 60))
    for i in range(n_frames):
        frame = np.zeros((120, 160), np.uint8)
        frame[:, 50:110] = (60 + 0.5 * i + texture).astype(np.uint8)
        writer.write(frame)
    writer.release()
    return path


def test_uploads_for_footage_models_are_read_as_the_training_footage(tmp_path):
    # models trained on the real exercise set see uploads as its decoding made them: 25 fps, bars cropped
    video = portrait_in_bars(tmp_path / "phone.avi", 200, fps=50.0)
    plain, _ = read_clip(video)
    footage, has_truth = read_clip(video, footage=True)
    assert footage.shape == plain.shape == (45, 64, 64) and has_truth
    slope = lambda frames: np.polyfit(np.arange(45), frames[:, :, 24:40].mean((1, 2)), 1)[0]  # noqa: E731
    assert slope(plain) == pytest.approx(0.5, abs=0.1)  # every source frame
    assert slope(footage) == pytest.approx(1.0, abs=0.1)  # every second one: 50 fps brought to 25
    assert plain.mean(0).min(0).min() < 10 < 50 < footage.mean(0).min(0).min()  # bars in the square, then cropped
    later, _ = read_clip(video, start=5, frame_step=2, footage=True)  # start and step count frames at 25 fps
    assert later[0].mean() == pytest.approx(footage[5].mean(), abs=1.5)  # frame 5 at 25 fps
    assert later[1].mean() == pytest.approx(footage[7].mean(), abs=1.5)
    with pytest.raises(AppError, match=r"only 15 of the 30 context frames are in the clip \(100 frames\)"):
        read_clip(video, start=85, footage=True)  # 100 frames at 25 fps: 15 left from frame 85


def test_read_clip_preprocesses_like_training(clip, tmp_path):
    frames, has_truth = read_clip(clip)
    assert frames.shape == (45, 64, 64) and frames.dtype.name == "uint8" and has_truth
    assert frames.max() > 150  # the bright square survives grayscale and INTER_AREA
    short = write_avi(tmp_path / "short.avi", 35)
    frames, has_truth = read_clip(short)  # enough context, not enough future: predictions without metrics
    assert frames.shape == (30, 64, 64) and not has_truth
    with pytest.raises(AppError, match=r"from frame 10 with step 2 only 25 of the 30 context frames are in the clip "
                                       r"\(60 frames\); use a start of at most 1$"):
        read_clip(clip, start=10, frame_step=2)


@pytest.mark.parametrize("n_frames, start, step, message", [
    (20, 0, 1, r"the clip is too short: 20 frames, and the models need 30 context frames; use a longer clip$"),
    (40, 0, 2, r"with frame step 2 the context covers 59 frames but the clip has 40; use a frame step of at most 1$"),
    (60, 40, 1, r"from frame 40 with step 1 only 20 of the 30 context frames are in the clip \(60 frames\); "
                r"use a start of at most 30$"),
])
def test_too_short_says_what_would_work(tmp_path, n_frames, start, step, message):
    """Never "try a smaller start or step" when the start is 0 and the step 1: say the clip is too short."""
    path = write_avi(tmp_path / "clip.avi", n_frames)
    with pytest.raises(AppError, match=message) as error:
        read_clip(path, start, step)
    assert "\n" not in str(error.value) and str(error.value).startswith("clip.avi: ")
    assert too_short("clip.avi", n_frames, start, step) == str(error.value)  # the samples get the same message


@pytest.mark.parametrize("name, content, message", [
    ("notes.txt", b"hello", "not a video file"),
    ("fake.avi", b"RIFF0000AVI nothing here" * 20, "cannot be read as a video|no frame could be decoded"),
    ("empty.mp4", b"", "cannot be read as a video|no frame could be decoded"),
])
def test_bad_uploads_get_clear_messages(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AppError, match=message):
        read_clip(path)


def test_too_large_upload(tmp_path, monkeypatch):
    import vidpred.app as app

    path = write_avi(tmp_path / "big.avi", 40)
    monkeypatch.setattr(app.uploads, "MAX_UPLOAD_BYTES", 1000)  # where read_clip reads it
    with pytest.raises(AppError, match="too large"):
        read_clip(path)


def runnable_models(checkpoints):
    """load_models' models that can predict (a blend baseline without fitted weights cannot)."""
    models, note = load_models(checkpoints)
    app.runnable(models, repeats=1)
    return models, note


def test_predict_all_runs_every_model(runs, clip):
    models, note = runnable_models(runs)
    assert set(LEARNED) <= set(models) and "No trained models" not in note
    frames, _ = read_clip(clip)
    result = predict_all(frames, models)
    assert {r["model"] for r in result.rows} == set(models)
    for row in result.rows:
        assert row["ms"] > 0 and 0 <= row["mse"] <= 1 and row["psnr"] > 0 and -1 <= row["ssim"] <= 1
        assert 0 <= row["moving_mse"] <= 1
    assert all(p.shape == (15, 64, 64) for p in result.predictions.values())
    copy_row = next(r for r in result.rows if r["model"] == "copy_last")
    expected = ((frames[29:30].astype(float) - frames[30:].astype(float)) / 255) ** 2
    assert copy_row["mse"] == pytest.approx(expected.mean(), rel=1e-4)


def test_no_checkpoints_says_how_to_train(tmp_path):
    models, note = load_models(tmp_path / "nothing")
    assert set(models) <= set(BASELINES) and {"copy_last", "context_mean", "linear"} <= set(models)
    assert "vidpred train --model all" in note


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(runs):
    demo = launch(runs, free_port(), profile="smoke", block=False, threads=torch.get_num_threads())
    yield demo.local_url
    demo.close()


def test_metrics_table_has_units_directions_and_the_best_marked():
    rows = [{"model": "a", "ms": 2.5, "mse": 0.0123456, "moving_mse": 0.2, "psnr": 20.0, "ssim": 0.5},
            {"model": "b", "ms": 1.25, "mse": 0.0123449, "moving_mse": 0.3, "psnr": 21.0, "ssim": 0.5}]
    headers, values = metrics_table(rows, threads=1, with_metrics=True)
    assert headers == ["model", "MSE (per pixel, lower is better)", "moving-pixel MSE (lower is better)", "PSNR dB ↑",
                       "SSIM ↑", "ms per clip ↓ (1 thread, median of 3)"]
    assert values == [["a", "0.012346", "0.2 ★", "20", "0.5 ★", "2.5"],  # 5 significant digits rank a and b
                      ["b", "0.012345 ★", "0.3", "21 ★", "0.5 ★", "1.25 ★"]]
    headers, values = metrics_table(rows, threads=2, with_metrics=False)
    assert headers == ["model", "ms per clip ↓ (2 threads, median of 3)"]


def test_gradio_client_round_trip(server, clip, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    status, context, sheet, video, table, _plot = client.predict(handle_file(str(clip)), None, 0, 1, api_name="/predict")
    assert "Metrics are against the next 15 real frames" in status
    video_path = Path(video["video"] if isinstance(video, dict) else video)
    assert video_path.stat().st_size > 0
    capture = cv2.VideoCapture(str(video_path))
    assert capture.get(cv2.CAP_PROP_FRAME_WIDTH) <= 1000  # truth + 4 models, legible at page width
    capture.release()
    shown = status.split("The video shows ")[1].split(" beside")[0].split(", ")
    assert len(shown) == 4 and set(shown[:3]) <= set(LEARNED) and shown[3] in BASELINES  # ... and the best baseline
    assert {row[0] for row in table["data"]} >= set(LEARNED) | {"copy_last"}
    assert "PSNR dB ↑" in table["headers"] and sum("★" in str(v) for row in table["data"] for v in row) >= 5
    import imageio.v3 as iio

    image = iio.imread(sheet["path"] if isinstance(sheet, dict) else sheet)
    assert image.shape[0] >= 66 * (1 + 3 + 2 * len(LEARNED))  # truth, baselines, models and their errors
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video at all")
    status, *rest = client.predict(handle_file(str(bad)), None, 0, 1, api_name="/predict")
    assert status.startswith("**Cannot use this clip.**") and "bad.avi" in status
    context, sheet, video, table, _plot = rest
    assert context is None and sheet is None and video is None and not table["data"]  # no stale results


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it where apt-get works)")
def test_in_a_real_browser(server, clip, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 1800})
        page.goto(server)
        page.locator("input[type=file]").first.set_input_files(str(clip))
        page.get_by_role("button", name="Run all models").click()
        status = page.locator("#status")
        expect(status).to_contain_text("Metrics are against the next 15 real frames", timeout=60_000)
        expect(page.locator("#metrics")).to_contain_text("transformer", timeout=10_000)
        expect(page.locator("video").first).to_be_attached(timeout=10_000)
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        bad = tmp_path / "broken.mp4"
        bad.write_bytes(b"\x00" * 100)
        page.reload()
        page.locator("input[type=file]").first.set_input_files(str(bad))
        page.get_by_role("button", name="Run all models").click()
        expect(page.locator("#status")).to_contain_text("Cannot use this clip", timeout=60_000)
        expect(page.locator("#status")).to_contain_text("broken.mp4")
        browser.close()
    assert (tmp_path / "app.png").stat().st_size > 10_000


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it where apt-get works)")
def test_screenshot_of_the_shipped_book_checkpoints(tmp_path):
    """Chapter 10's figure: the app as ``vidpred app --profile book`` starts where no run was trained, so with
    the book-profile checkpoints the package ships, after "Run all models" on the first sample clip, in
    Chromium at about the width of the book's text column. The screenshot is always taken and checked;
    with VIDPRED_SCREENSHOT=1 it is also written to book/_static/app.png (commit it from there)."""
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    from vidpred.runs import shipped_runs
    from vidpred.utils import display_path

    shipped = shipped_runs("book")
    assert set(shipped.runs) == set(LEARNED)  # the caption in chapter 10 names them
    demo = launch(tmp_path / "no-runs", free_port(), profile="book", block=False, threads=torch.get_num_threads())
    shot = tmp_path / "app.png"
    try:
        assert set(LEARNED) <= set(demo.vidpred_models)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 820, "height": 1000})
            page.goto(demo.local_url)
            page.get_by_label("or pick a sample clip").click()
            page.get_by_role("option", name=demo.vidpred_samples[0]).click()
            page.get_by_role("button", name="Run all models").click()
            status = page.locator("#status")
            expect(status).to_contain_text("Metrics are against the next 15 real frames", timeout=120_000)
            for name, run in shipped.runs.items():
                expect(status).to_contain_text(f"shipped checkpoint {display_path(run.path)}")
                expect(page.locator("#metrics")).to_contain_text(name)
            expect(page.locator("video").first).to_be_attached(timeout=20_000)
            page.wait_for_timeout(1500)  # the images and the video's first frame paint
            text = page.locator("body").inner_text()
            content = page.locator("#status").bounding_box()  # as wide as the app's column: crop the margins
            height = page.evaluate("document.documentElement.scrollHeight")
            page.screenshot(path=str(shot), full_page=True, clip={
                "x": content["x"] - 12, "y": 0, "width": content["width"] + 24, "height": height})
            browser.close()
    finally:
        demo.close()
    assert not re.search(r"(^|\s)/(work|tmp|home|root)/", text), "the app shows an absolute path of this machine"
    image = Image.open(shot).convert("RGB")
    assert 640 <= image.width <= 800, image.size  # shown in a text column of 620 to 690 px
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(shot, optimize=True)  # a palette PNG: a few 100 KB
    assert 20_000 < shot.stat().st_size < 500_000
    if os.environ.get("VIDPRED_SCREENSHOT"):
        shutil.copy(shot, SCREENSHOT)


def test_outputs_do_not_pile_up_and_closing_removes_them(clip):
    from gradio_client import Client, handle_file

    began = time.time()
    demo = launch(None, free_port(), profile="smoke", block=False, threads=torch.get_num_threads())
    try:
        client = Client(demo.local_url, verbose=False, download_files=False)  # leave the outputs on the server
        for start in range(4):
            status, *_ = client.predict(handle_file(str(clip)), None, start, 1, api_name="/predict")
            assert status.startswith("**upload.avi**")
        assert len(list(demo.vidpred_workdir.rglob("*.mp4"))) == 1  # the session's latest video only
        new = [p for p in app.upload_folder().rglob("*") if p.suffix in (".mp4", ".png", ".jpg") and p.stat().st_mtime >= began]
        assert all(p.is_relative_to(demo.vidpred_workdir) for p in new), new  # no copies in Gradio's cache
    finally:
        demo.close()
    assert not demo.vidpred_workdir.exists()


def test_bench_app_writes_the_load_figures(tmp_path):
    from vidpred.bench import bench_app

    result = json.loads(json.dumps(bench_app("smoke", clients=3, requests=1, checkpoints=str(tmp_path / "no-runs"),
                                             startup_timeout=1200)))  # a busy machine starts the app slowly
    assert {"p50_s", "p95_s", "max_s", "failures", "requests_per_s", "threads", "machine", "clients",
            "requests_per_client", "banner"} <= set(result)
    assert result["requests"] == 3 and result["failures"] == 0, result["failure_examples"]
    assert 0 < result["p50_s"] <= result["p95_s"] <= result["max_s"] and result["threads"] >= 1
    slow = result["beside_heavy"]  # a normal request alone, then beside two crafted uploads (timed, not judged here)
    assert slow["alone_s"] > 0 and len(slow["beside_runs_s"]) >= 1 and slow["ratio"] > 0 and slow["target_ratio"] == 2
    assert all(s.startswith("**upload.avi**") for s in slow["normal_statuses"]), slow["normal_statuses"]
    assert [h["status"].startswith("**Cannot use this clip.** heavy.mp4") for h in slow["heavy_requests"]] == [True] * 2


def test_a_served_app_stopped_with_sigterm_removes_its_folder(tmp_path):
    import re
    import subprocess
    import sys

    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", "import sys; from vidpred.cli import main; sys.exit(main(sys.argv[1:]))",
                               "app", "--profile", "smoke", "--port", str(port), "--checkpoints", str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = next(line for line in server.stdout if line.startswith("vidpred app:"))
        workdir = Path(re.search(r"outputs in (\S+)", banner).group(1))
        assert workdir.is_dir()
        deadline = time.time() + 300
        while time.time() < deadline:  # serving
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        server.terminate()
        server.wait(300)  # 0 once serving; a KeyboardInterrupt status when stopped during Gradio's start-up checks
    finally:
        server.kill()
        server.wait()
    assert not workdir.exists()


def test_the_app_keeps_a_bounded_number_of_outputs(monkeypatch):
    """Every request from a new session (a raw HTTP client, a new browser) leaves outputs until the session
    expires; the app keeps only the latest MAX_KEPT_OUTPUTS folders of them all."""
    from gradio_client import Client

    monkeypatch.setattr(app.server, "MAX_KEPT_OUTPUTS", 3)  # where build_app reads it
    demo = launch(None, free_port(), profile="smoke", block=False, threads=torch.get_num_threads())
    try:
        sample = demo.vidpred_samples[0]
        for _ in range(5):  # five sessions, one request each
            status, *_ = Client(demo.local_url, verbose=False, download_files=False).predict(
                None, sample, 0, 1, api_name="/predict")
            assert status.startswith(f"**{sample}**")
        folders = [p for p in demo.vidpred_workdir.iterdir() if p.is_dir()]
        assert len(folders) == len(demo.vidpred_outputs) == 3
        assert len(list(demo.vidpred_workdir.rglob("*.mp4"))) == 3
    finally:
        demo.close()


def test_leftovers_of_killed_apps_are_recognised_safely(tmp_path):
    import subprocess
    import sys

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    started = app._process_start(os.getpid())

    def folder(name: str, marker: dict | None) -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / "compare.mp4").write_bytes(b"output")
        if marker is not None:
            (path / app.MARKER).write_text(json.dumps(marker))
        return path

    parent = app._process_start(os.getppid())
    dead = folder("vidpred-app-0123456789ab", {"pid": ended.pid, "started": None})
    reused = folder("vidpred-app-0123456789ac", {"pid": os.getppid(), "started": parent + 1})  # its pid, now another's
    running = folder("vidpred-app-0123456789ad", {"pid": os.getppid(), "started": parent})
    unmarked = folder("vidpred-app-0123456789ae", None)  # an older app's, or not an app's: not sure, so kept
    other_name = folder("vidpred-app-mine", {"pid": ended.pid, "started": None})
    garbled = folder("vidpred-app-0123456789af", None)
    (garbled / app.MARKER).write_text("not json")
    linked = folder("vidpred-app-0123456789b0", None)
    (linked / app.MARKER).symlink_to(dead / app.MARKER)
    mine = app.make_workdir(tmp_path)  # this process's own folder
    assert json.loads((mine / app.MARKER).read_text()) == {"pid": os.getpid(), "started": started}
    assert sorted(app.clean_leftovers(tmp_path)) == [dead, reused] and not dead.exists() and not reused.exists()
    assert all(p.exists() for p in (running, unmarked, other_name, garbled, linked, mine))


def test_the_next_app_removes_the_folder_of_an_app_killed_with_sigkill(tmp_path):
    import subprocess
    import sys

    server = subprocess.Popen([sys.executable, "-c", "import sys; from vidpred.cli import main; sys.exit(main(sys.argv[1:]))",
                               "app", "--profile", "smoke", "--port", str(free_port()), "--checkpoints", str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = next(line for line in server.stdout if line.startswith("vidpred app:"))
        killed = Path(re.search(r"outputs in (\S+)", banner).group(1))
        assert killed.is_dir() and (killed / app.MARKER).exists()
    finally:
        server.kill()  # SIGKILL: no clean-up of its own
        server.wait()
    assert killed.is_dir()
    demo = launch(None, free_port(), profile="smoke", block=False, threads=torch.get_num_threads())
    try:
        assert killed in demo.vidpred_leftovers and not killed.exists()
        assert demo.vidpred_workdir.is_dir()
    finally:
        demo.close()


def test_the_app_serves_the_real_trained_checkpoints_by_default(monkeypatch):
    from vidpred.runs import RunSet, shipped_runs

    monkeypatch.setenv("VIDPRED_PROFILE", "smoke")
    assert app.default_profile() == "smoke"  # asked for: always
    monkeypatch.delenv("VIDPRED_PROFILE")
    shipped = shipped_runs("real")
    assert app.default_profile() == ("real" if shipped.runs else "book")
    monkeypatch.setattr("vidpred.runs.shipped_runs", lambda profile, models=None: RunSet({}, []))
    assert app.default_profile() == "book"  # no real checkpoints shipped: the synthetic ones


def test_without_the_real_data_the_blend_is_the_one_shipped_with_the_checkpoints(monkeypatch):
    from vidpred.runs import shipped_manifest

    manifest = shipped_manifest("book")
    blend = app.shipped_blend("book")
    assert list(blend.config.alphas) == manifest["baselines"]["blend"]["config"]["alphas"]
    models, _ = load_models(None, "smoke", None, blend=blend)
    assert list(models)[:3] == ["copy_last", "context_mean", "blend"] and models["blend"] is blend
