"""The app opens only its uploads and bounds the work one request can cause."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import write_avi

import vidpred.app as app
from vidpred.app import AppError, checked_upload, read_clip, upload_folder
from vidpred.bench import write_test_avi
from vidpred.data.ucf101 import square_crop
from vidpred.video import write_video


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """The app as `vidpred app` serves it (baselines only), on a free port of 127.0.0.1."""
    demo = app.launch(None, free_port(), profile="smoke", block=False, threads=torch.get_num_threads())
    yield demo
    demo.close()


@pytest.fixture
def secret(tmp_path) -> Path:
    """A video on the server that nobody uploaded."""
    return write_avi(tmp_path / "secret.avi", 60, size=(320, 240))


VideoCapture = cv2.VideoCapture


class CountingCapture:
    """cv2.VideoCapture that records the paths it opens and counts the frames it decodes."""

    opened: list[str] = []
    grabs = 0

    def __init__(self, path: str):
        CountingCapture.opened.append(path)
        self.capture = VideoCapture(path)

    def grab(self):
        CountingCapture.grabs += 1
        return self.capture.grab()

    def read(self):
        CountingCapture.grabs += 1
        return self.capture.read()

    def __getattr__(self, name):
        return getattr(self.capture, name)


@pytest.fixture
def counting(monkeypatch):
    CountingCapture.opened, CountingCapture.grabs = [], 0
    monkeypatch.setattr(app.cv2, "VideoCapture", CountingCapture)
    return CountingCapture


def call_http(demo, payload) -> tuple[str, object]:
    """POST /gradio_api/call/predict as a raw HTTP client would; the (event, data) of the answer."""
    base = demo.local_url.rstrip("/") + "/gradio_api"
    request = urllib.request.Request(f"{base}/call/predict", data=json.dumps({"data": [payload, None, 0, 1]}).encode(),
                                     headers={"Content-Type": "application/json"})
    event_id = json.load(urllib.request.urlopen(request, timeout=30))["event_id"]
    answer = urllib.request.urlopen(f"{base}/call/predict/{event_id}", timeout=120).read().decode()
    events = [line.split(":", 1)[1].strip() for line in answer.splitlines() if line.startswith("event:")]
    data = [json.loads(line.split(":", 1)[1]) for line in answer.splitlines() if line.startswith("data:")]
    return events[-1], data[-1]


@pytest.mark.parametrize("where", ["tmp_path", "var_tmp"])
def test_http_api_refuses_a_server_file_never_uploaded(server, secret, counting, where, tmp_path):
    path = secret
    if where == "var_tmp":
        path = Path("/var/tmp") / f"vidpred-secret-{tmp_path.name}.avi"
        path.write_bytes(secret.read_bytes())
    try:
        for payload in ({"path": str(path), "meta": {"_type": "gradio.FileData"}},
                        {"path": str(path), "meta": {"_type": "gradio.FileData"}, "orig_name": "upload.avi"}):
            event, data = call_http(server, payload)
            assert event == "error", data
            message = data["error"]  # one clear line, not a bare failure
            assert message and str(path) in message and "not uploaded" in message and "\n" not in message
        assert not any(str(path) in opened for opened in counting.opened)  # never decoded
    finally:
        if where == "var_tmp":
            path.unlink()


def test_the_app_itself_refuses_paths_outside_its_uploads(server, secret, tmp_path):
    """Gradio 6 refuses such paths first; the app does not rely on it (a direct call bypasses Gradio)."""
    run = next(f.fn for f in server.fns.values() if f.api_name == "predict")
    status, *outputs, _ = run(str(secret), None, 0, 1, None)
    assert status.startswith("**Cannot use this clip.**") and "not uploaded to this app" in status
    assert str(secret) in status and "upload the video instead" in status and all(o is None for o in outputs)
    with pytest.raises(AppError, match="not uploaded"):
        checked_upload(secret)
    inside = upload_folder() / f"vidpred-test-{tmp_path.name}"
    inside.mkdir(parents=True)
    try:
        link = inside / "looks-uploaded.avi"
        link.symlink_to(secret)  # a link inside the upload folder to a file outside it
        with pytest.raises(AppError, match="not uploaded"):
            checked_upload(link)
        upload = inside / "upload.avi"
        upload.write_bytes(secret.read_bytes())
        assert checked_upload(upload) == upload.resolve()
        status, *_ = run(str(upload), None, 0, 1, None)
        assert status.startswith("**upload.avi**")
    finally:
        import shutil

        shutil.rmtree(inside)


def test_requests_are_served_concurrently_from_a_bounded_queue(server):
    fn = next(f for f in server.fns.values() if f.api_name == "predict")
    assert fn.concurrency_limit == app.CONCURRENCY >= 2 and server._queue.max_size == app.QUEUE_SIZE


def test_a_start_past_the_end_is_refused_before_decoding(tmp_path, counting):
    clip = write_avi(tmp_path / "clip.avi", 60)
    with pytest.raises(AppError, match=r"start frame 1000000000 is past the end of the clip \(60 frames\); "
                                       r"use a start of at most 30"):
        read_clip(clip, start=10**9)
    assert counting.grabs == 0


def decode_all(path: Path) -> np.ndarray:
    """Every frame, preprocessed as the app's default (the centred square, grey, 64×64 with INTER_AREA)."""
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        gray = square_crop(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), "center")
        frames.append(cv2.resize(gray, (64, 64), interpolation=cv2.INTER_AREA))
    return np.stack(frames)


@pytest.mark.parametrize("kind", ["mjpg", "xvid", "h264"])
def test_seeking_gives_the_frames_decoding_gives(tmp_path, kind, counting):
    if kind == "mjpg":
        path = write_avi(tmp_path / "clip.avi", 160, size=(160, 120))
    elif kind == "xvid":
        path = write_test_avi(tmp_path / "clip.avi", 160)  # keyframes far apart: seeking must decode forward
    else:
        rng = np.random.default_rng(0)
        noise = rng.integers(0, 255, (96, 128), dtype=np.uint8)
        path = write_video(tmp_path / "clip.mp4", np.stack([np.roll(noise, 3 * t, axis=1) for t in range(160)]), fps=25)
    every = decode_all(path)
    counting.grabs = 0
    frames, has_truth = read_clip(path, start=60, frame_step=2)
    assert has_truth and np.array_equal(frames, every[60::2][:45])
    assert counting.grabs <= 89  # the 89 frames the window spans, not the 60 before it
    frames, _ = read_clip(path, start=37)
    assert np.array_equal(frames, every[37:82])


def test_decoding_time_is_capped(tmp_path):
    clip = write_avi(tmp_path / "long.avi", 400, size=(320, 240))
    with pytest.raises(AppError, match=r"long.avi: decoding stopped after 0.01 s at frame \d+ \(the limit per request\)"):
        read_clip(clip, frame_step=9, max_seconds=0.01)


def test_a_slow_request_does_not_hold_the_others(server, tmp_path, monkeypatch):
    """While one upload is still decoding, a request for a sample clip is served beside it (no timing
    thresholds: the slow request is held until the fast one is back, so a busy machine cannot fail it)."""
    import threading

    from gradio_client import Client, handle_file

    read_clip_now, entered, released = app.read_clip, threading.Event(), threading.Event()

    def slow_read_clip(path, *args, **kwargs):
        if Path(path).name == "slow.avi":  # as a long, large upload decoding up to the time limit would
            entered.set()
            released.wait(600)
        return read_clip_now(path, *args, **kwargs)

    monkeypatch.setattr(app, "read_clip", slow_read_clip)
    slow = write_avi(tmp_path / "slow.avi", 50)
    sample = next(iter(app.sample_clips("smoke")))
    slow_client, fast_client = Client(server.local_url, verbose=False), Client(server.local_url, verbose=False)
    try:
        slow_job = slow_client.submit(handle_file(str(slow)), None, 0, 1, api_name="/predict")
        assert entered.wait(600)  # the slow request holds a worker
        fast_status = fast_client.submit(None, sample, 0, 1, api_name="/predict").result(timeout=600)[0]
        assert fast_status.startswith(f"**{sample}**") and not slow_job.done()
    finally:
        released.set()
    assert slow_job.result(timeout=600)[0].startswith("**slow.avi**")
