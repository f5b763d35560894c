"""``vidpred bench app``: the app under load. Many gradio_client callers at once against ``vidpred app`` served in
a subprocess (latency, failures, throughput, CPU per request), then one normal request beside two crafted uploads
that decode to the app's cap."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ..config import get_profile
from .data import write_test_avi
from .timing import machine, stopwatch


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, server, timeout: float, log: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited with status {server.returncode} before serving: "
                               f"{log.read_text().strip().splitlines()[-1:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the app did not answer on {url} within {timeout:.0f} s")


def _cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its finished children (ffmpeg), from /proc (NaN where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


HEAVY_UPLOAD = {"side": 4096, "frames": 3000, "frame_step": 60}  # 2641 blank 4096² frames to decode: past the cap


def write_heavy_upload(path: Path, side: int = 4096, frames: int = 3000, fps: float = 25.0,
                       segment_frames: int = 250) -> Path:
    """A crafted upload, small to send and slow to decode: ``frames`` blank ``side``×``side`` H.264 frames
    (0.65 MB for 3000 frames of 4096²), within every limit the app checks (size, side, duration). Encoded as
    one segment repeated with ffmpeg's concat (a few seconds instead of a minute)."""
    import math
    import subprocess

    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    segment, listing = path.with_name(f"{path.stem}-segment.mp4"), path.with_name(f"{path.stem}-segments.txt")
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"color=c=black:s={side}x{side}:r={fps}",
                    "-frames:v", str(segment_frames), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                    str(segment)], check=True)
    listing.write_text(f"file '{segment.name}'\n" * math.ceil(frames / segment_frames))
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy",
                    str(path)], check=True)
    segment.unlink()
    listing.unlink()
    return path


def beside_heavy(url: str, clip: Path, heavy: Path, folder: Path, frame_step: int, repeats: int = 3,
                 timeout: float = 300.0) -> dict:
    """The latency of a normal request (``clip``, as the load test sends it) alone, then beside two heavy ones
    (``heavy`` from :func:`write_heavy_upload`, with ``frame_step``) that the server is already serving. The
    normal requests are sent one after the other; only those that start while both heavy ones are unfinished
    count. Target: within 2x the time alone."""
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    def timed(client: Client) -> tuple[float, str]:
        with stopwatch() as watch:
            status = client.predict(handle_file(str(clip)), None, 0, 1, api_name="/predict")[0]
        return watch.seconds, status.splitlines()[0][:200]

    normal = Client(url, verbose=False, download_files=str(folder / "normal"))
    timed(normal)  # warm-up: the first request of a client pays for its connection
    alone = [timed(normal) for _ in range(repeats)]
    heavy_clients = [Client(url, verbose=False, download_files=False) for _ in range(2)]
    tic = time.perf_counter()  # each heavy request's seconds count from here, when both were sent
    jobs = [c.submit(handle_file(str(heavy)), None, 0, frame_step, api_name="/predict") for c in heavy_clients]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(j.done() or j.status().code == Status.PROCESSING for j in jobs):
        time.sleep(0.05)
    time.sleep(0.5)  # the heavy requests are past their upload and decoding (or waiting to decode)
    beside = []
    while not any(j.done() for j in jobs) and len(beside) < repeats:
        beside.append(timed(normal))
    heavy_results = []
    for job in jobs:
        status = job.result(timeout=timeout)[0]
        heavy_results.append({"status": status.splitlines()[0][:200], "seconds": time.perf_counter() - tic})
    alone_s = float(np.median([s for s, _ in alone]))
    beside_s = float(np.median([s for s, _ in beside])) if beside else None
    heavy_upload = (f"{HEAVY_UPLOAD['side']}x{HEAVY_UPLOAD['side']} blank H.264, {HEAVY_UPLOAD['frames']} frames, "
                    f"{heavy.stat().st_size / 2**20:.2f} MB, frame step {frame_step}")
    return {"normal": "the load test's upload, start 0, step 1", "heavy_upload": heavy_upload,
            "alone_s": alone_s, "beside_two_heavy_s": beside_s, "ratio": beside_s / alone_s if beside else None,
            "alone_runs_s": [s for s, _ in alone], "beside_runs_s": [s for s, _ in beside],
            "normal_statuses": sorted({m for _, m in alone + beside}), "heavy_requests": heavy_results,
            "target_ratio": 2.0}


def bench_app(profile: str | None = None, clients: int = 20, requests: int = 3, checkpoints: str | None = None,
              startup_timeout: float = 300.0, heavy: bool = True) -> dict:
    """Serve the app as ``vidpred app`` does (a subprocess on 127.0.0.1, a free port), then ``clients``
    gradio_client callers at once each upload a 320×240 clip and predict ``requests`` times, one after the
    other. Latency of each prediction (upload included), failures, and predictions per second. With
    ``heavy``, then the latency of one such request beside two crafted uploads that decode to the app's cap
    (``beside_heavy``, :func:`beside_heavy`)."""
    import re
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from gradio_client import Client, handle_file

    from .. import app

    prof = get_profile(profile)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-c", "import sys; from vidpred.cli import main; sys.exit(main(sys.argv[1:]))",
               "app", "--profile", prof.name, "--port", str(port)]
    if checkpoints:
        command += ["--checkpoints", str(checkpoints)]
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "server.log"
        clip = write_test_avi(Path(tmp) / "upload.avi", n_frames=60)
        with open(log_path, "w") as log:
            server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                      env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
        try:
            with stopwatch() as startup:
                _wait_for_server(url, server, startup_timeout, log_path)
            barrier = Barrier(clients)

            def caller(index: int) -> list[tuple[float, str | None]]:
                client = Client(url, verbose=False, download_files=str(Path(tmp) / f"client{index}"))
                barrier.wait(timeout=startup_timeout)
                results = []
                for _ in range(requests):
                    with stopwatch() as watch:
                        try:
                            status = client.predict(handle_file(str(clip)), None, 0, 1, api_name="/predict")[0]
                            error = None if status.startswith("**upload.avi**") else status.splitlines()[0]
                        except Exception as err:  # a failed request is a result to count, not a crash
                            error = f"{type(err).__name__}: {err}"
                    results.append((watch.seconds, error))
                return results

            server_cpu, client_cpu = _cpu_seconds(server.pid), _cpu_seconds(os.getpid())
            with stopwatch() as load, ThreadPoolExecutor(clients) as pool:
                results = [r for rs in pool.map(caller, range(clients)) for r in rs]
            server_cpu, client_cpu = _cpu_seconds(server.pid) - server_cpu, _cpu_seconds(os.getpid()) - client_cpu
            slow = None
            if heavy:
                heavy_path = write_heavy_upload(Path(tmp) / "heavy.mp4", HEAVY_UPLOAD["side"], HEAVY_UPLOAD["frames"])
                slow = beside_heavy(url, clip, heavy_path, Path(tmp), HEAVY_UPLOAD["frame_step"],
                                    timeout=startup_timeout)
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        banner = next((line for line in log_path.read_text().splitlines() if line.startswith("vidpred app:")), "")
    latencies = [seconds for seconds, error in results if error is None]
    errors = [error for _, error in results if error is not None]
    threads = re.search(r"(\d+) torch thread", banner)
    wall = load.seconds
    return {"machine": {**machine(), "cpu_count": os.cpu_count()}, "profile": prof.name,
            "server": "vidpred " + " ".join(command[3:]), "banner": banner,
            "threads": int(threads.group(1)) if threads else None, "concurrency_limit": app.CONCURRENCY,
            "serving_slots": app.SERVING_SLOTS, "large_decodes": app.HEAVY_DECODES, "large_waiting": app.HEAVY_WAITING,
            "queue_size": app.QUEUE_SIZE, "clients": clients, "requests_per_client": requests,
            "requests": len(results), "failures": len(errors), "failure_examples": sorted(set(errors))[:3],
            "upload": "320x240 XviD .avi, 60 frames", "startup_s": startup.seconds, "wall_s": wall,
            "requests_per_s": len(latencies) / wall, "server_cpu_s_per_request": server_cpu / len(results),
            "client_cpu_s_per_request": client_cpu / len(results),  # the callers share the machine with the app
            "p50_s": float(np.percentile(latencies, 50)) if latencies else None,
            "p95_s": float(np.percentile(latencies, 95)) if latencies else None,
            "max_s": max(latencies) if latencies else None, "target_p95_s": 8.0, "beside_heavy": slow}
