"""The Gradio app: upload or pick a clip, run every model, compare frames, metrics and runtimes.

``vidpred app`` serves it on 127.0.0.1 with analytics off; ``share`` must be asked for. The app only
opens files uploaded to it through Gradio's upload endpoint and decodes them with OpenCV (never executes
them), with a bounded amount of decoding per request: an upload that would take too much decoding is
refused before decoding, and large ones are decoded one at a time beside the other requests
(:class:`DecodePool`), so they cannot hold the slots that normal requests are served in. Each session keeps
only its latest outputs and the app at most ``MAX_KEPT_OUTPUTS``; the app's folder is removed when it closes
or exits, the folders of apps that were killed are removed when the next one starts, and Gradio deletes
uploads after an hour.

Its parts, each importing the ones it needs directly (never this package):

- :mod:`.settings`: its limits and fixed numbers;
- :mod:`.uploads`: reading an upload, bounded (and :class:`AppError`, a problem to show the user);
- :mod:`.predict`: loading the models, what they were trained on, timing and predicting;
- :mod:`.samples`: the sample clips;
- :mod:`.display`: the pictures, video, table and plot of a prediction;
- :mod:`.folders`: the output folders and the clean-up after killed apps;
- :mod:`.startup`: what the app serves, prepared when it starts;
- :mod:`.handlers`: the event handlers;
- :mod:`.layout`: the page, its widgets and their wiring;
- :mod:`.server`: putting it together (:func:`build_app`) and serving it (:func:`launch`).

The names code outside the app uses are all here (``from vidpred.app import read_clip``). A test that patches a
name the app reads patches it where it is read (``vidpred.app.uploads.MAX_UPLOAD_BYTES``), not here.
"""

from __future__ import annotations

import os

import cv2 as cv2  # tests patch ``app.cv2.VideoCapture`` (OpenCV's own, which the reader opens uploads with)

from .display import METRIC_COLUMNS, metrics_table, prediction_sheet, video_models
from .folders import OutputFolders, clean_leftovers, make_workdir
from .folders import _process_start as _process_start  # tests read it
from .predict import (
    Prediction,
    default_profile,
    load_models,
    predict_all,
    real_warning,
    runnable,
    shipped_blend,
    synthetic_warning,
    timed_forward,
    trained_on_footage,
    upload_crop,
)
from .samples import real_splits, sample_clips, spread_over_classes
from .server import build_app, launch, serving_threads
from .settings import (
    CONCURRENCY,
    HEAVY_DECODE_PIXELS,
    HEAVY_DECODES,
    HEAVY_WAITING,
    MARKER,
    MAX_DECODE_PIXELS,
    MAX_DECODE_S,
    MAX_DURATION_S,
    MAX_KEPT_OUTPUTS,
    MAX_SIDE,
    MAX_UPLOAD_BYTES,
    QUEUE_SIZE,
    SERVING_SLOTS,
    TIMING_REPEATS,
    VIDEO_MODELS,
    VIDEO_SUFFIXES,
    WORKDIR_PREFIX,
)
from .uploads import AppError, DecodePool, checked_upload, not_uploaded, read_clip, too_short, upload_folder

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # Gradio is imported later, when the app is built

__all__ = [
    "AppError", "CONCURRENCY", "DecodePool", "HEAVY_DECODES", "HEAVY_DECODE_PIXELS", "HEAVY_WAITING", "MARKER",
    "MAX_DECODE_PIXELS", "MAX_DECODE_S", "MAX_DURATION_S", "MAX_KEPT_OUTPUTS", "MAX_SIDE", "MAX_UPLOAD_BYTES",
    "METRIC_COLUMNS", "OutputFolders", "Prediction", "QUEUE_SIZE", "SERVING_SLOTS", "TIMING_REPEATS", "VIDEO_MODELS",
    "VIDEO_SUFFIXES", "WORKDIR_PREFIX", "build_app", "checked_upload", "clean_leftovers",
    "default_profile", "launch", "load_models", "make_workdir", "metrics_table", "not_uploaded", "predict_all",
    "prediction_sheet", "read_clip", "real_splits", "real_warning", "runnable", "sample_clips", "serving_threads",
    "shipped_blend", "spread_over_classes", "synthetic_warning", "timed_forward", "too_short", "trained_on_footage",
    "upload_crop", "upload_folder", "video_models",
]
