"""Serving the app: :func:`build_app` puts it together (what it serves, its output folder, its handlers and page) and
:func:`launch` serves it on 127.0.0.1. The app's output folder is removed when it closes or the process exits
(SIGTERM included), and the folders of apps that were killed are removed when the next one starts."""

from __future__ import annotations

import atexit
import os
from pathlib import Path

import torch

from ..config import DataConfig
from .display import runtime_plot
from .folders import OutputFolders, _remove, clean_leftovers, make_workdir
from .handlers import Handlers
from .layout import build_blocks
from .settings import CONCURRENCY, HEAVY_DECODES, HEAVY_WAITING, MAX_KEPT_OUTPUTS, QUEUE_SIZE
from .startup import prepare
from .uploads import not_uploaded, upload_folder


def build_app(checkpoints: str | Path | None = None, profile: str | None = None, data: DataConfig | None = None,
              allow_mixed: bool = True, crop: str | None = None):
    """The Gradio Blocks of the app.

    Without ``data`` every checkpoint under ``checkpoints`` (else the shipped ones) is loaded and shown
    with the data it was trained on. With ``data`` (``vidpred app --data-dir … --classes …``) only the
    checkpoints trained on that data are loaded (others are refused unless ``allow_mixed``), the blend
    is fitted on its training split and the samples are its test clips. Uploads are cropped with
    ``crop``, by default as the loaded models' training videos were (:func:`~vidpred.app.predict.upload_crop`).
    """
    served = prepare(checkpoints, profile, data, allow_mixed, crop)
    # Outputs go inside Gradio's upload folder, so Gradio serves them without copying them into its cache.
    leftovers = clean_leftovers(upload_folder())
    workdir = make_workdir(upload_folder())
    atexit.register(_remove, workdir)
    plot = runtime_plot(workdir / "runtimes.png", served.runtimes, served.threads, served.models)
    handlers = Handlers(served, OutputFolders(workdir, MAX_KEPT_OUTPUTS), plot)
    demo = build_blocks(handlers)
    handlers.blocks = demo  # Gradio's record of the uploads is on it
    _refuse_in_a_line(demo)
    _remove_on_close(demo, workdir)
    demo.vidpred_workdir = workdir
    demo.vidpred_outputs = handlers.outputs
    demo.vidpred_pool = handlers.pool
    demo.vidpred_leftovers = leftovers
    demo.vidpred_models = list(served.models)
    demo.vidpred_samples = list(served.samples)
    demo.vidpred_crop = served.crop
    return demo


def _refuse_in_a_line(demo) -> None:
    """Gradio's refusal of a path that was not uploaded names the server's working folder (``file://x`` is
    resolved under it): the client gets the app's line instead, with the path as it was sent."""
    import gradio as gr

    preprocess = demo.preprocess_data

    async def refuse_in_a_line(block_fn, inputs, *args, **kwargs):
        from gradio.exceptions import InvalidPathError

        try:
            return await preprocess(block_fn, inputs, *args, **kwargs)
        except InvalidPathError:
            sent = next((v["path"] for v in inputs or () if isinstance(v, dict) and "path" in v), "the file")
            raise gr.Error(not_uploaded(sent), print_exception=False) from None

    demo.preprocess_data = refuse_in_a_line


def _remove_on_close(demo, workdir: Path) -> None:
    """``demo.close()`` removes the app's output folder ``workdir`` as well."""
    close = demo.close

    def close_and_clean(*args, **kwargs):
        try:
            return close(*args, **kwargs)
        finally:
            _remove(workdir)

    demo.close = close_and_clean


def serving_threads(concurrency: int = CONCURRENCY) -> int:
    """torch threads per request so that ``concurrency`` requests at once use the cores without oversubscribing."""
    return max(1, (os.cpu_count() or 1) // concurrency)


def _exit(signum, frame) -> None:
    raise KeyboardInterrupt  # Gradio then closes the server as after Ctrl-C, and the atexit clean-up runs


def launch(checkpoints: str | Path | None = None, port: int = 7860, share: bool = False,
           profile: str | None = None, block: bool = True, threads: int | None = None,
           data: DataConfig | None = None, allow_mixed: bool = True, crop: str | None = None):
    """Serve the app on 127.0.0.1:``port`` (``block=False`` returns the running app, for tests and benchmarks).

    ``threads`` sets torch's thread count for the process (default: the cores shared by the requests
    served at once); errors are shown to the client (Gradio's refusals included) as one-line messages.
    ``data``, ``allow_mixed`` and ``crop`` are :func:`build_app`'s. A blocking server stopped with SIGTERM
    (``kill``, a service manager) exits normally, so its output folder is removed as after Ctrl-C.
    """
    import signal
    import threading

    torch.set_num_threads(threads or serving_threads())
    demo = build_app(checkpoints, profile, data=data, allow_mixed=allow_mixed, crop=crop)
    if block and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit)
    print(f"vidpred app: {len(demo.vidpred_models)} models ({', '.join(demo.vidpred_models)}), "
          f"{torch.get_num_threads()} torch thread(s) per request, {CONCURRENCY} requests at once and "
          f"{HEAVY_DECODES} large upload decoding beside them ({HEAVY_WAITING} more may wait), queue of {QUEUE_SIZE}; "
          f"outputs in {demo.vidpred_workdir} (the latest {MAX_KEPT_OUTPUTS})"
          + (f"; removed {len(demo.vidpred_leftovers)} folder(s) left by apps that were killed"
             if demo.vidpred_leftovers else ""), flush=True)
    demo.launch(server_name="127.0.0.1", server_port=port, share=share, show_error=True,
                prevent_thread_lock=not block, quiet=not block)
    return demo
