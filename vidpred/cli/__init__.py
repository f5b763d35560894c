"""``vidpred prepare | train | evaluate | generate | app | bench``: the commands, and :func:`main`.

Each ``cmd_*`` function runs one subcommand; the parser that picks it (options, value checks, help)
is built in :mod:`vidpred.cli.parser`, whose names are importable from here too.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..config import CLASSES, Profile, get_profile
from ..utils import json_text, write_files
from .parser import (
    MODEL_BENCHES,
    Parser,
    clips_folder,
    data_folder,
    device_name,
    learned_models,
    make_parser,
    port_number,
    positive_float,
    positive_int,
    trainable_model,
)

__all__ = ["MODEL_BENCHES", "Parser", "build_parser", "check_port_free", "check_runs_writable", "clips_folder",
           "cmd_app", "cmd_bench", "cmd_evaluate", "cmd_generate", "cmd_prepare", "cmd_train", "data_folder",
           "device_name", "evaluate_folder", "learned_models", "main", "make_parser", "port_number", "positive_float",
           "positive_int", "runs_root", "trainable_model", "writable_folder"]


def _profile(args) -> Profile:
    profile = get_profile(args.profile)
    data = profile.data
    if getattr(args, "data", None):
        data = dataclasses.replace(data, source=args.data)
    if getattr(args, "data_dir", None):  # UCF101's folder, or with --data exercise (or the real profile) a mirror
        source = getattr(args, "data", None) or ("exercise" if data.source == "exercise" else "ucf101")
        data = dataclasses.replace(data, source=source, data_dir=args.data_dir)
    if getattr(args, "frame_step", None):
        data = dataclasses.replace(data, frame_step=args.frame_step)
    if getattr(args, "split", None):
        data = dataclasses.replace(data, split=args.split)
    if getattr(args, "classes", None):
        classes = tuple(dict.fromkeys(c.strip() for c in args.classes.split(",") if c.strip()))
        if not classes:
            raise ValueError(f"--classes {args.classes!r} names no class; give UCF101 names, comma-separated")
        data = dataclasses.replace(data, classes=classes)
    if getattr(args, "crop", None):
        data = dataclasses.replace(data, crop=args.crop)
    if getattr(args, "download", False):
        if data.source == "exercise":
            raise ValueError("--download fetches UCF101 from Kaggle; the real exercise set downloads itself: "
                             "vidpred prepare --data exercise")
        from ..data.ucf101 import download_kaggle

        data = dataclasses.replace(data, source="ucf101", data_dir=str(download_kaggle()))
    if data.source == "exercise":
        from ..data.exercise import selected_classes

        data = dataclasses.replace(data, classes=selected_classes(data))
    if data.source == "synthetic" and set(data.classes) - set(CLASSES):
        raise ValueError(f"the synthetic data has only {', '.join(CLASSES)}; "
                         f"{', '.join(sorted(set(data.classes) - set(CLASSES)))} needs UCF101: add --data-dir")
    profile.data = data
    return profile


def runs_root(args, profile: Profile) -> Path:
    return Path(args.runs) if args.runs else Path("runs") / profile.name


def cmd_prepare(args) -> int:
    from collections import Counter

    from ..data import WindowDataset, load_splits

    profile = _profile(args)
    cfg = profile.data
    skipped: dict[str, str] = {}
    if cfg.source == "ucf101":
        from ..data.ucf101 import few, not_cached_line, prepare

        report = prepare(cfg, progress=True)
        splits, skipped = report.clips, report.skipped
        print(f"cache: {report.cache_dir}  (decoded {report.decoded}, reused {report.reused})")
        for path, why in report.rebuilt.items():
            print(f"rebuilt {path}: {why}")
        if report.cleaned:
            print(f"cleaned {len(report.cleaned)} leftover(s): {few(report.cleaned, 3)}")
        if report.not_cached:
            print(not_cached_line(report.not_cached, cfg.cache_dir))
    elif cfg.source == "exercise":
        from ..data.exercise import prepare_and_describe

        report, lines = prepare_and_describe(cfg, progress=True)
        splits, skipped = report.clips, report.skipped
        print("\n".join(lines))
    else:
        splits = load_splits(cfg)
    print(f"{'split':<7}{'clips':>7}{'frames':>9}{'windows':>9}   classes")
    for split, clips in splits.items():
        windows = WindowDataset.from_config(clips, cfg)
        classes = sorted({c.label for c in clips})
        print(f"{split:<7}{len(clips):>7}{sum(len(c) for c in clips):>9}{len(windows):>9}   {', '.join(classes)}")
    if cfg.source == "exercise":  # the real set is mostly push-ups: say how much of each exercise each split has
        print("\nwindows per class: " + "; ".join(
            f"{split} " + ", ".join(f"{label} {n}" for label, n in sorted(
                Counter(clips[c].label for c, _ in WindowDataset.from_config(clips, cfg).index).items()))
            for split, clips in splits.items()))
    if skipped:
        print(f"\nskipped {len(skipped)} video(s):")
        for path, reason in skipped.items():
            print(f"  {path}: {reason}")
    if cfg.source == "ucf101" and report.missing_classes:
        print(f"\nno clip of {', '.join(report.missing_classes)} in {cfg.data_dir} (check --classes)")
    if cfg.source == "ucf101" and (report.other_classes or report.ignored):
        print("\nnot used:")
        if report.other_classes:
            counts = [f"{c} {n}" for c, n in sorted(report.other_classes.items())]
            print(f"  {sum(report.other_classes.values())} clip(s) of {len(counts)} unselected class(es) "
                  f"(select with --classes): {few(counts, 8)}")
        for reason, paths in report.ignored.items():
            print(f"  {len(paths)} file(s) {reason}: {few(paths, 5)}")
    return 0


def cmd_train(args) -> int:
    import torch

    from ..data import windows
    from ..models import LEARNED, build
    from ..train import fit, run_dir

    profile = _profile(args)
    names = LEARNED if args.model == "all" else [args.model]

    def train_config(name: str):
        cfg = profile.train_config(name)
        if args.steps:
            cfg = dataclasses.replace(cfg, steps=args.steps)
        if args.no_amp:
            cfg = dataclasses.replace(cfg, amp=False)
        if args.compile is not None:
            cfg = dataclasses.replace(cfg, compile=args.compile)
        return cfg

    # A read-only --runs is refused now, in fit's words, not after the data was decoded (each build below is seeded)
    first = build(names[0], **profile.model_config(names[0]))
    check_runs_writable(run_dir(runs_root(args, profile), first, profile.data, train_config(names[0])))
    datasets = windows(profile.data, progress=True)
    for name in names:
        cfg = train_config(name)
        torch.manual_seed(cfg.seed)
        model = build(name, **profile.model_config(name))
        out_dir = run_dir(runs_root(args, profile), model, profile.data, cfg)
        result = fit(model, datasets["train"], datasets["val"], cfg, out_dir, profile.data,
                     resume=args.resume, device=args.device)
        if result.steps == result.resumed_from:
            print(f"{name}: already trained ({result.steps} steps) in {out_dir}")
        else:
            print(f"{name}: {result.steps} steps in {result.train_seconds:.0f} s "
                  f"(resumed from {result.resumed_from}), best val MSE {result.best_val_mse:.5f} -> {out_dir}")
    return 0


def _runs_and_data(args, profile: Profile):
    """The data of the profile by split, its identity, and the runs trained on it (trained or shipped)."""
    from ..data import windows
    from ..runs import data_identity, runs_for

    datasets = windows(profile.data)
    data = data_identity(profile.data, datasets["train"].clips)
    found = runs_for(runs_root(args, profile), profile.name, data, allow_mixed=args.allow_mixed)
    for message in found.skipped:
        print(message, file=sys.stderr)
    return datasets, data, found


def cmd_evaluate(args) -> int:
    from ..evaluate import by_label, evaluate_all, format_by_label, format_table

    if args.out:
        writable_folder(args.out, "--out")  # before the long work, not after it
    profile = _profile(args)
    root = runs_root(args, profile)
    if args.clips:
        return evaluate_folder(args, profile, root)
    datasets, data, found = _runs_and_data(args, profile)
    if not found.runs:
        print(f"no checkpoints under {root}; train first: vidpred train --model all --profile {profile.name}",
              file=sys.stderr)
        return 2
    for run in found.runs.values():
        print(run.describe())
    rows = evaluate_all(found.runs, datasets["test"], args.out or root, device=args.device,
                        train=datasets["train"], data=data)
    print(format_table(rows))
    labels = format_by_label(by_label(rows, datasets["test"]), rows)
    if labels:
        print(f"\n{labels}")
    print(f"\nwrote {Path(args.out or root) / 'results.json'} and results.csv ({len(datasets['test'])} test windows "
          f"of {data['source']} data)")
    return 0


def evaluate_folder(args, profile: Profile, root: Path) -> int:
    """`vidpred evaluate --clips DIR`: every model and baseline on any folder of videos, per clip and pooled."""
    from ..evaluate import baseline_models, evaluate_clips, format_clips_table, read_clips_folder

    clips, skipped = read_clips_folder(args.clips, profile.data, progress=True)  # a bad folder fails before the rest
    datasets, data, found = _runs_and_data(args, profile)
    for run in found.runs.values():
        print(run.describe())
    if not found.runs:
        print(f"no trained model for this data under {root} (nor shipped): the baselines only")
    models = {**baseline_models(datasets["train"]), **found.models(device="cpu")}
    out = Path(args.out or root)
    payload = evaluate_clips(models, clips, out, profile.data, device=args.device, skipped=skipped,
                             trained_on={name: run.describe() for name, run in found.runs.items()})
    print(format_clips_table(payload))
    print(f"\nwrote {out / 'clips.json'} and clips.csv ({sum(c['windows'] for c in payload['clips'].values())} windows "
          f"of {len(payload['clips'])} clip(s) in {args.clips}; blend fitted on the {data['source']} training split)")
    return 0


def cmd_generate(args) -> int:
    import torch

    from ..data.windows import fixed_batch
    from ..evaluate import baseline_models
    from ..video import comparison_grid, to_uint8, write_video

    if args.out:
        writable_folder(args.out, "--out")  # before the long work, not after it
    profile = _profile(args)
    root = runs_root(args, profile)
    datasets, _, found = _runs_and_data(args, profile)
    if not found.runs:
        print(f"no checkpoints under {root}, so the videos would show baselines only; train first: "
              f"vidpred train --model all --profile {profile.name}", file=sys.stderr)
        return 2
    context, future = fixed_batch(datasets["test"], args.clips)
    models = {**baseline_models(datasets["train"], ("analogue", "blend")), **found.models()}
    out = Path(args.out or root / "videos")
    with torch.no_grad():
        predictions = {name: m(context, future.shape[1]) for name, m in models.items()}
    for i in range(len(context)):
        grid = comparison_grid(to_uint8(future[i]), {n: to_uint8(p[i]) for n, p in predictions.items()},
                               context=to_uint8(context[i]), scale=3)
        for fmt in args.format.split(","):
            path = write_video(out / f"clip{i:02d}.{fmt}", grid, fps=args.fps)
            print(path)
    return 0


def cmd_app(args) -> int:
    from ..app import launch

    check_port_free(args.port)  # before loading the models, and in one line rather than Gradio's traceback
    if args.profile is None:  # $VIDPRED_PROFILE, else the real-trained checkpoints where they ship, else book
        from ..app import default_profile

        args.profile = default_profile()
    profile = _profile(args)
    # Data options select the checkpoints trained on that data (and its samples); without any, the app
    # loads every checkpoint it finds and shows what each was trained on.
    asked = any(getattr(args, k, None) for k in ("data", "data_dir", "download", "frame_step", "split", "classes"))
    try:
        launch(checkpoints=args.checkpoints or Path("runs") / profile.name, port=args.port, share=args.share,
               profile=profile.name, data=profile.data if asked else None, allow_mixed=args.allow_mixed or not asked,
               crop=args.crop)
    except OSError as err:
        raise RuntimeError(f"127.0.0.1:{args.port}: {err}; if the port is taken, pick another with --port") from None
    return 0


def cmd_bench(args) -> int:
    from .. import bench

    options = {"clients": args.clients, "requests": args.requests, "checkpoints": args.checkpoints} if args.what == "app" else {}
    if args.models is not None:
        if args.what not in MODEL_BENCHES:
            raise ValueError(f"--models applies to bench {', '.join(MODEL_BENCHES)}, not bench {args.what}; leave it out")
        options["models"] = args.models
    result = bench.run(args.what, profile=args.profile, **options)
    out = Path(args.out or f"bench/{args.what}.json")
    text = json_text(result, indent=1)  # standard JSON: a NaN timing is null, never a bare NaN
    print(text)  # first, so a failed write (a full disk: one line below) loses no measurement
    write_files({out: lambda handle: handle.write(text.encode())}, instead="a path", python=None)
    print(f"wrote {out}")
    return 0


def writable_folder(folder: str | Path, flag: str) -> Path:
    """``folder``, created if needed, once a file could be written in it; else a one-line ValueError."""
    import tempfile

    folder = Path(folder)
    if folder.is_file():
        raise ValueError(f"{flag} {folder} is a file, not a folder; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ValueError(f"{flag} {folder}: cannot write there ({err.strerror}); give a writable folder") from None
    return folder


def check_runs_writable(out_dir: Path) -> None:
    """A run could be written in ``out_dir``; else fit's own one line (RunFolderNotWritable) naming the folder that
    refused and saying to pass --runs <a writable folder>. Folders made for the check are removed again: fit
    makes them when it writes."""
    from ..train import writable_run_folder

    missing = [folder for folder in (out_dir, *out_dir.parents) if not folder.exists()]  # innermost first
    writable_run_folder(out_dir)
    for folder in missing:
        try:
            folder.rmdir()
        except OSError:
            break


def check_port_free(port: int) -> None:
    """A ValueError naming the port and a free one when something already listens on 127.0.0.1:``port``."""
    import socket

    def free(candidate: int) -> bool:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds, so TIME_WAIT is no reason
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                return False
            return True

    if not free(port):
        spare = next((p for p in range(port + 1, min(port + 50, 65536)) if free(p)), None)
        hint = f", e.g. --port {spare}" if spare else ""
        raise ValueError(f"port {port} on 127.0.0.1 is already in use; pick a free one with --port{hint}")


def build_parser() -> argparse.ArgumentParser:
    """The ``vidpred`` parser, each subcommand bound to its ``cmd_*`` function."""
    return make_parser({"prepare": cmd_prepare, "train": cmd_train, "evaluate": cmd_evaluate,
                        "generate": cmd_generate, "app": cmd_app, "bench": cmd_bench})


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # a usage error (one line on stderr) or --help: the status, for callers of main()
        return int(stop.code or 0)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"vidpred {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # train stops cleanly on SIGINT/SIGTERM and says where (TrainingStopped)
        print(f"vidpred {args.command}: {str(err) or 'interrupted'}", file=sys.stderr)
        return 128 + getattr(err, "signum", 2)  # 130 for SIGINT (Ctrl+C), 143 for SIGTERM, as shells report
