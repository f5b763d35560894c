"""The app opens only its uploads and bounds the work one request can cause."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
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

    def __init__(self, path: str, *args):
        CountingCapture.opened.append(path)
        self.capture = VideoCapture(path, *args)

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


def call_http(demo, payload, sample=None) -> tuple[str, object]:
    """POST /gradio_api/call/predict as a raw HTTP client would (a new session each time); the (event, data) of
    the answer."""
    base = demo.local_url.rstrip("/") + "/gradio_api"
    request = urllib.request.Request(f"{base}/call/predict", data=json.dumps({"data": [payload, sample, 0, 1]}).encode(),
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


def test_a_file_url_is_refused_without_naming_the_server_folder(server, secret, counting):
    """Gradio resolves ``file://x`` under the server's working folder and names that folder in its refusal;
    the client gets the app's one line instead, with the path as it was sent."""
    for sent in ("file:///etc/passwd", f"file://{secret}"):
        event, data = call_http(server, {"path": sent, "meta": {"_type": "gradio.FileData"}})
        assert event == "error"
        assert data["error"] == (f"{sent}: refused, it was not uploaded to this app (the app only reads its own "
                                 "uploads); upload the video instead")
        assert os.getcwd() not in data["error"]
    assert counting.opened == []


def test_another_users_output_named_by_its_path_is_refused(server, tmp_path, counting):
    """The app's outputs are inside Gradio's upload folder (Gradio serves them from there), so Gradio accepts
    their paths as input; the app reads only what Gradio's upload endpoint received."""
    from gradio_client import Client, handle_file

    clip = write_avi(tmp_path / "mine.avi", 60, size=(160, 120))
    status, _context, _sheet, video, *_ = Client(server.local_url, verbose=False, download_files=False).predict(
        handle_file(str(clip)), None, 0, 1, api_name="/predict")
    assert status.startswith("**mine.avi**")
    counting.opened.clear()
    output = video["path"]  # what the other user's browser was sent (Gradio refuses the .png and .jpg by type)
    assert Path(output).is_relative_to(server.vidpred_workdir)
    event, data = call_http(server, {"path": output, "meta": {"_type": "gradio.FileData"}})
    assert event == "complete", data
    assert data[0] == (f"**Cannot use this clip.** {output}: refused, it was not uploaded to this app (the app "
                       "only reads its own uploads); upload the video instead"), data[0]
    assert counting.opened == []  # never decoded


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
        server.upload_file_set.add(str(link))
        with pytest.raises(AppError, match="not uploaded"):
            checked_upload(link, server.upload_file_set)
        upload = inside / "upload.avi"
        upload.write_bytes(secret.read_bytes())
        status, *_ = run(str(upload), None, 0, 1, None)  # inside the upload folder, but no upload brought it
        assert status.startswith(f"**Cannot use this clip.** {upload}: refused, it was not uploaded to this app")
        server.upload_file_set.add(str(upload))  # as Gradio's upload endpoint records what it receives
        assert checked_upload(upload, server.upload_file_set) == upload.resolve()
        status, *_ = run(str(upload), None, 0, 1, None)
        assert status.startswith("**upload.avi**")
        output = server.vidpred_workdir / "elsewhere.avi"  # without the record: never the app's own outputs
        output.write_bytes(secret.read_bytes())
        with pytest.raises(AppError, match="not uploaded"):
            checked_upload(output)
        assert checked_upload(upload) == upload.resolve()
    finally:
        import shutil

        server.upload_file_set.discard(str(upload))
        server.upload_file_set.discard(str(link))
        (server.vidpred_workdir / "elsewhere.avi").unlink(missing_ok=True)
        shutil.rmtree(inside)


def test_requests_are_served_concurrently_from_a_bounded_queue(server):
    fn = next(f for f in server.fns.values() if f.api_name == "predict")
    assert fn.concurrency_limit == app.SERVING_SLOTS == app.CONCURRENCY + app.HEAVY_DECODES + app.HEAVY_WAITING
    assert app.CONCURRENCY >= 2 and server._queue.max_size == app.QUEUE_SIZE


def test_an_upload_that_would_decode_too_much_is_refused_before_decoding(tmp_path, counting):
    clip = write_avi(tmp_path / "clip.avi", 60, size=(320, 240))
    message = (r"clip.avi: with frame step 10 the 45 frames span 441 frames of 320×240, 0 gigapixels to decode "
               r"\(limit 0\); use a smaller frame step or a smaller video$")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app.uploads, "MAX_DECODE_PIXELS", 1e7)  # the limit is 5e10: a 4096² video from frame step 68
        with pytest.raises(AppError, match=message):
            read_clip(clip, frame_step=10)
    assert counting.grabs == 0
    frames, _ = read_clip(clip, frame_step=1)  # the same video within the limit
    assert len(frames) == 45


def test_large_uploads_are_decoded_in_their_own_pool(tmp_path, monkeypatch):
    """A large upload waits for its turn in the pool (one decoding, two waiting, more refused at once); a small
    one is decoded at once, whatever the pool holds."""
    monkeypatch.setattr(app.uploads, "HEAVY_DECODE_PIXELS", 1e6)
    large, small = write_avi(tmp_path / "large.avi", 60, size=(320, 240)), write_avi(tmp_path / "small.avi", 60)
    pool = app.DecodePool(decoding=1, waiting=1)
    read_clip(small, pool=pool)  # 45 × 80×60 pixels: not large
    assert pool.served == 0
    read_clip(large, pool=pool)  # 45 × 320×240 pixels
    assert pool.served == 1
    with pool.turn("first"):  # one decoding...
        waiting = threading.Thread(target=read_clip, args=(large,), kwargs={"pool": pool})
        waiting.start()
        while pool.admitted < 2:  # ... one waiting for its turn ...
            waiting.join(0.01)
        with pytest.raises(AppError, match=r"^large.avi: 2 large videos are already being decoded or waiting for "
                                           r"their turn; try again in a minute, or upload a shorter or smaller video$"):
            read_clip(large, pool=pool)  # ... and no more
        assert read_clip(small, pool=pool)[0].shape == (45, 64, 64)  # small ones do not queue behind them
        assert waiting.is_alive()
    waiting.join(60)
    assert not waiting.is_alive() and pool.served == 3 and pool.admitted == 0


def test_two_large_uploads_leave_a_normal_request_its_slot(server, tmp_path, monkeypatch):
    """Large uploads held while decoding (as the 10 s cap would hold them: one decoding, two waiting for their
    turn) do not keep a normal upload from being served, and one more is refused at once. The mechanism, not the
    timing: `vidpred bench app` times a normal request beside two of them."""
    from gradio_client import Client, handle_file

    monkeypatch.setattr(app.uploads, "HEAVY_DECODE_PIXELS", 1e6)  # the 320×240 uploads below are large, 80×60 is not
    entered, released = threading.Event(), threading.Event()

    class HeldCapture(CountingCapture):
        def __init__(self, path: str, *args):
            super().__init__(path, *args)
            self.held = "large" in Path(path).name

        def grab(self):
            if self.held and not released.is_set():
                entered.set()
                released.wait(600)
            return super().grab()

    monkeypatch.setattr(app.cv2, "VideoCapture", HeldCapture)
    pool = server.vidpred_pool
    large = [write_avi(tmp_path / f"large{i}.avi", 60, size=(320, 240), seed=i) for i in range(pool.decoding + pool.waiting + 1)]
    small = write_avi(tmp_path / "small.avi", 60)
    clients = [Client(server.local_url, verbose=False, download_files=False) for _ in range(len(large) + 1)]
    try:
        jobs = [clients[0].submit(handle_file(str(large[0])), None, 0, 1, api_name="/predict")]
        assert entered.wait(600)  # the first decodes (held), the next wait for their turn
        for client, clip in zip(clients[1:-2], large[1:-1]):
            jobs.append(client.submit(handle_file(str(clip)), None, 0, 1, api_name="/predict"))
        while pool.admitted < len(jobs):
            time.sleep(0.02)
        one_more = clients[-2].predict(handle_file(str(large[-1])), None, 0, 1, api_name="/predict")[0]
        assert one_more.startswith(f"**Cannot use this clip.** {large[-1].name}: {len(jobs)} large videos are already "
                                   "being decoded or waiting for their turn")
        normal = clients[-1].submit(handle_file(str(small)), None, 0, 1, api_name="/predict").result(timeout=600)[0]
        assert normal.startswith("**small.avi**") and not any(job.done() for job in jobs)
    finally:
        released.set()
    assert [job.result(timeout=600)[0].split(":")[0] for job in jobs] == [f"**{c.name}**" for c in large[:-1]]


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

    monkeypatch.setattr(app.handlers, "read_clip", slow_read_clip)
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
