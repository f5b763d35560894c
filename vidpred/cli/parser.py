"""The argument parser of ``vidpred``: its subcommands and options, and the types that check each value.

:func:`make_parser` builds it around the command functions it is given (``vidpred.cli`` passes its
``cmd_*`` functions), so this module imports nothing of the CLI back; a usage error is one line that
names the flag, the value and the fix.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path

from ..config import PROFILES

MODEL_BENCHES = ("models", "curves", "quality", "compile", "stillness")  # the benchmarks that take --models


class Parser(argparse.ArgumentParser):
    """Usage errors in one line that names the flag, the value and the fix (no usage dump)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give 1 or more") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; give 1 or more")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a number above 0") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not allowed; give a number above 0")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number; give one from 1 to 65535, e.g. --port 7860")
    return value


def data_folder(text: str) -> str:
    if Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder; give the UCF101 folder (original or Kaggle "
                                         "layout) that holds the videos")
    return text


def clips_folder(text: str) -> str:
    if Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder; put the video in a folder and pass that")
    return text


def device_name(text: str) -> str:
    import re

    if text in ("auto", "cpu"):
        return text
    if text == "mps" or re.fullmatch(r"cuda(:\d+)?", text):
        import torch

        if text == "mps" and not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError("mps: Apple's GPU is not available on this machine; use --device cpu")
        if text.startswith("cuda") and not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: CUDA is not available on this machine (torch "
                                             f"{torch.__version__}); use --device cpu")
        if text.startswith("cuda:") and int(text[5:]) >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} GPU(s); "
                                             f"use --device cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not a device; use auto, cpu, cuda, cuda:N or mps")


def learned_models(text: str) -> tuple[str, ...]:
    """``--models convlstm,transformer``: learned models by name, comma-separated (each once, in that order)."""
    from ..models import BASELINES, LEARNED

    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    for name in names:
        if name in BASELINES:
            raise argparse.ArgumentTypeError(f"{name} is a baseline (bench models times it anyway); "
                                             f"give learned models: {', '.join(LEARNED)}")
        if name not in LEARNED:
            raise argparse.ArgumentTypeError(f"{name!r} is not a model; give some of {', '.join(LEARNED)}, "
                                             "comma-separated")
    if not names:
        raise argparse.ArgumentTypeError(f"no model named; give some of {', '.join(LEARNED)}, comma-separated")
    return names


def trainable_model(text: str) -> str:
    if text == "all":
        return text
    from ..models import BASELINES, LEARNED

    if text in LEARNED:
        return text
    if text in BASELINES:
        raise argparse.ArgumentTypeError(f"{text} is a baseline and needs no training (evaluate and the app run it "
                                         f"as it is); train one of {', '.join(LEARNED)} or all")
    raise argparse.ArgumentTypeError(f"{text!r} is not a model; train one of {', '.join(LEARNED)} or all")


def make_parser(commands: Mapping[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """The ``vidpred`` parser; each subcommand's ``func`` default is ``commands[<its name>]``."""
    parser = Parser(prog="vidpred", description="Video frame prediction: 30 frames in, 15 out.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, data: bool = True, runs: bool = True):
        p.add_argument("--profile", choices=PROFILES, default=None, help="default: $VIDPRED_PROFILE or book")
        if data:
            p.add_argument("--data", choices=("synthetic", "exercise", "ucf101"),
                           help="dataset (default: the profile's); exercise: the real exercise videos")
            p.add_argument("--data-dir", type=data_folder,
                           help="UCF101 folder, original or Kaggle layout (implies --data ucf101); with --data "
                                "exercise or --profile real, a local mirror of the real exercise videos (default: download them)")
            p.add_argument("--download", action="store_true", help="download UCF101 from Kaggle with kagglehub")
            p.add_argument("--frame-step", type=positive_int, help="keep every k-th frame")
            p.add_argument("--split", choices=("group", "kaggle"), help="group: no actor in two splits (default)")
            p.add_argument("--classes", help="UCF101 classes, comma-separated (default: the five exercises)")
            p.add_argument("--crop", choices=("center", "none"),
                           help="center: the centred square of each frame (default); none: squash it")
        if runs:
            p.add_argument("--runs", help="folder of runs (default runs/<profile>)")
            p.add_argument("--device", type=device_name, default="auto", help="auto | cpu | cuda[:N] | mps")
            p.add_argument("--allow-mixed", action="store_true",
                           help="use checkpoints trained on other data than the data asked for")

    p = sub.add_parser("prepare", help="find, decode and cache the data; print a summary")
    common(p, runs=False)
    p.set_defaults(func=commands["prepare"])
    p = sub.add_parser("train", help="train a model (or all) in a profile; resumes by default",
                       description="Ctrl+C (SIGINT) or SIGTERM finishes the current step, saves last.pt and exits "
                                   "with 130 or 143; the same command resumes. One training per run folder.")
    common(p)
    p.add_argument("--model", type=trainable_model, default="all", help="convlstm | predrnn | transformer | all")
    p.add_argument("--steps", type=positive_int, help="override the profile's step count")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    p.set_defaults(func=commands["train"])
    p = sub.add_parser("evaluate", help="evaluate every trained model and the baselines on the test split")
    common(p)
    p.add_argument("--out", help="where results.json/csv (clips.json/csv with --clips) go (default: the runs folder)")
    p.add_argument("--clips", type=clips_folder, help="evaluate on any folder of videos instead of the test split: "
                   "per clip and pooled, every baseline (the blend fitted on the data's training split)")
    p.set_defaults(func=commands["evaluate"])
    p = sub.add_parser("generate", help="side-by-side videos of test clips")
    common(p)
    p.add_argument("--clips", type=positive_int, default=4)
    p.add_argument("--format", default="mp4,gif")
    p.add_argument("--fps", type=positive_float, default=6.0)
    p.add_argument("--out")
    p.set_defaults(func=commands["generate"])
    p = sub.add_parser("app", help="the Gradio comparison app on 127.0.0.1",
                       description="Without data options the app loads every checkpoint under --checkpoints (else "
                                   "the shipped ones) and shows what each was trained on. With --data-dir/--classes "
                                   "it loads only those trained on that data, and offers its test clips as samples.")
    common(p, runs=False)
    p.add_argument("--allow-mixed", action="store_true",
                   help="with data options: also load checkpoints trained on other data")
    p.add_argument("--checkpoints", help="runs folder (default runs/<profile>)")
    p.add_argument("--port", type=port_number, default=7860)
    p.add_argument("--share", action="store_true", help="ask Gradio for a public link (off by default)")
    p.set_defaults(func=commands["app"])
    p = sub.add_parser("bench", help="benchmarks; write JSON")
    p.add_argument("what", choices=("data", "models", "train", "quality", "analogue", "curves", "compile", "stillness",
                                    "app"))
    p.add_argument("--profile", choices=PROFILES, default=None)
    p.add_argument("--out", help="JSON path (default bench/<what>.json)")
    p.add_argument("--clients", type=positive_int, default=20, help="app: concurrent gradio_client callers")
    p.add_argument("--requests", type=positive_int, default=3, help="app: predictions per caller")
    p.add_argument("--checkpoints", help="app: runs folder (default runs/<profile>)")
    p.add_argument("--models", type=learned_models, default=None,
                   help="models, curves, quality, compile, stillness: only these learned models, comma-separated "
                        "(default: all)")
    p.set_defaults(func=commands["bench"])
    return parser
