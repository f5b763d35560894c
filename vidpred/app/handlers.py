"""The app's event handlers (:class:`Handlers`): they take the widgets' values (an upload or a sample clip, the start
frame and frame step, the session's previous outputs) and return the widgets' updates (the status, the pictures,
the video, the metrics table, the runtime plot and the session's new outputs). A problem with the clip comes back as
a one-line message, a bug as one line for the user and a traceback in the log."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from .display import metrics_table, write_outputs
from .folders import OutputFolders
from .predict import Prediction, predict_all
from .settings import CONCURRENCY
from .startup import Served
from .uploads import AppError, DecodePool, checked_upload, read_clip, too_short

log = logging.getLogger(__name__)


class Handlers:
    """The event handlers of an app that serves ``served``, writing each answer's files to a new folder of
    ``outputs`` and showing ``runtime_plot`` with it.

    Large uploads are decoded in the handlers' ``pool`` (:class:`~vidpred.app.uploads.DecodePool`), and at most
    ``CONCURRENCY`` predictions run at once. ``blocks`` is the app's Blocks once built: Gradio's record of the uploads is on it.
    """

    def __init__(self, served: Served, outputs: OutputFolders, runtime_plot: Path):
        self.served, self.outputs, self.runtime_plot = served, outputs, runtime_plot
        self.pool = DecodePool()
        self.computing = threading.BoundedSemaphore(CONCURRENCY)  # predictions and their outputs, beside large decodes
        self.blocks = None

    def run(self, upload: str | None, sample: str | None, start: float | None, step: float | None,
            previous: str | None) -> tuple:
        # The click on "Run all models": (status, context image, prediction sheet, video, metrics table, runtime plot,
        # the session's outputs); on a problem, the message and the session's previous outputs. A comment, not a
        # docstring: Gradio would show a docstring as the description of the app's API endpoint.
        try:
            frames, source, start, step = self.clip_frames(upload, sample, start, step)  # large uploads: in the pool
            with self.computing:
                result = predict_all(frames, self.served.models, runtimes=self.served.runtimes)
                return self.respond(result, source, start, step, upload, previous)
        except AppError as err:
            return (f"**Cannot use this clip.** {err}", None, None, None, None, None, previous)
        except Exception as err:  # a bug: one line for the user, the traceback for the log
            log.exception("prediction failed")
            return (f"**The app failed on this clip** ({type(err).__name__}: {err}); the server log has the details.",
                    None, None, None, None, None, previous)

    def clip_frames(self, upload: str | None, sample: str | None, start: float | None,
                    step: float | None) -> tuple[np.ndarray, str, int, int]:
        """The frames of the upload (else of the sample clip), the name to show, the start frame and the step."""
        start, step = int(start or 0), int(step or 1)
        if upload:
            path = checked_upload(upload, getattr(self.blocks, "upload_file_set", None))
            frames, _ = read_clip(path, start, step, size=self.served.data.image_size, crop=self.served.crop,
                                  pool=self.pool, footage=self.served.footage)
            return frames, path.name, start, step
        if sample:
            return self.sample_frames(sample, start, step), sample, start, step
        raise AppError("upload a video or pick a sample clip first")

    def sample_frames(self, sample: str, start: int, step: int) -> np.ndarray:
        """Up to 45 frames of the sample clip from ``start``, ``step`` apart; an AppError when fewer than 30."""
        samples = self.served.samples
        if sample not in samples:
            raise AppError(f"unknown sample {sample!r}; pick one from the list")
        if start < 0 or step < 1:
            raise AppError(f"{sample}: start frame {start} and frame step {step}: the start must be ≥ 0 and the step ≥ 1")
        clip = samples[sample][start::step]
        if len(clip) < 30:
            raise AppError(too_short(sample, len(samples[sample]), start, step))
        return clip[:45]

    def respond(self, result: Prediction, source: str, start: int, step: int, upload: str | None,
                previous: str | None) -> tuple:
        """The widgets' updates for ``result``, its files in a new output folder (the session's ``previous`` one is
        removed: each session keeps only its latest outputs)."""
        import pandas as pd

        folder = self.outputs.new()  # this request's outputs; the session's previous ones go below
        context_path, sheet_path, video, shown = write_outputs(folder, result)
        headers, values = metrics_table(result.rows, self.served.threads, result.truth is not None)
        table = pd.DataFrame(values, columns=headers)
        status = self.status(result, source, start, step, shown, upload)
        self.outputs.remove(previous)  # keep only the latest outputs of each session
        return status, str(context_path), str(sheet_path), str(video), table, str(self.runtime_plot), str(folder)

    def status(self, result: Prediction, source: str, start: int, step: int, shown: list[str],
               upload: str | None) -> str:
        """The status line over an answer: what was predicted from what, and the notes that go with it."""
        status = f"**{source}**: 30 context frames from frame {start}, step {step}. " + (
            "Metrics are against the next 15 real frames; ★ marks the best of each column."
            if result.truth is not None
            else "The clip ends before 15 more frames, so there is no ground truth and no metrics.")
        status += f" The video shows {', '.join(shown)}" + (" beside the ground truth." if result.truth is not None
                                                            else " (no ground truth).")
        if upload:
            status += " " + self.served.crop_note
        if upload and self.served.real_video_warning:
            status += "\n\n" + self.served.real_video_warning
        if self.served.note:
            status += "\n\n" + self.served.note
        return status
