"""Helpers the chapters share: the setup cell, showing package source, and where runs live."""

from __future__ import annotations

import inspect
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import Profile, get_profile
from .train import pick_device
from .utils import display_path, seed_everything


@dataclass
class BookEnv:
    profile: Profile
    device: torch.device
    root: Path  # the project root (or the working folder in Colab)

    @property
    def runs(self) -> Path:
        """Where this profile's checkpoints go, shared by every chapter (load-or-train)."""
        return self.root / "runs" / self.profile.name


def project_root(start: Path | None = None) -> Path:
    """``VIDPRED_HOME`` when set; else the project folder (holding ``_config.yml`` and ``vidpred/``) at or
    above ``start`` (the working folder by default); else the working folder itself, as in a fresh Colab
    runtime, where a chapter's runs and data go next to the notebook."""
    if "VIDPRED_HOME" in os.environ:
        return Path(os.environ["VIDPRED_HOME"])
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").exists() and (folder / "vidpred").is_dir():
            return folder
    return here


def setup(seed: int = 0, profile: str | None = None, quiet: bool = False) -> BookEnv:
    """Seed everything, pick the device and the profile, and say which were picked."""
    seed_everything(seed)
    prof = get_profile(profile)
    device = pick_device()
    env = BookEnv(prof, device, project_root())
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if not quiet:
        print(f"vidpred profile: {prof.name} (set VIDPRED_PROFILE=smoke|book|full to change)")
        print(f"device: {device}  |  torch {torch.__version__}  |  {torch.get_num_threads()} CPU threads  |  "
              f"Python {platform.python_version()}")
        print(f"data: {prof.data.source}  |  runs: {display_path(env.runs)}")
    return env


def show_source(obj) -> object:
    """The source of a package function or class, highlighted: the book shows the code it runs."""
    from IPython.display import Code

    return Code(inspect.getsource(obj), language="python")


# ------------------------------------------------------------------------------ model chapters
@dataclass
class ModelChapter:
    """What a model chapter shows: the profile's full run (shipped or trained), a short live run,
    the data, and the baselines with their validation MSE (the lines to beat)."""

    name: str
    model: torch.nn.Module  # the full run's weights, eval mode, on the CPU
    full: object  # TrainResult of the profile's run (reused from the shipped checkpoint when it matches)
    live: object  # TrainResult of this build's short run
    datasets: dict
    baselines: dict  # name -> fitted baseline predictor
    baseline_val: dict  # name -> validation MSE, measured like the runs' validation


def model_chapter(env: BookEnv, name: str, live_steps: int | None = None, **model_overrides) -> ModelChapter:
    """Load (or train) the profile's run of ``name`` and train a short live run of it in this build.

    The full run is what ``load_or_train`` finds: the package ships one for the book profile, so the
    build does not spend half an hour training. The live run repeats the recipe for ``live_steps``
    steps (the profile's ``live_steps``, half a minute or less on a 2-core CPU) so the chapter still shows
    training happen, and its curve is drawn beside the full run's. ``model_overrides`` change the
    live run's model config only (the exercises use them), never the profile's run.
    """
    import dataclasses

    from .config import config_hash
    from .models import build
    from .train import load_or_train, validation_mse

    datasets = chapter_data(env)
    cfg = env.profile.train_config(name)
    model, full = _profile_run(env, name)
    config = {**env.profile.model_config(name), **model_overrides}  # what the live run tries
    steps = live_steps or env.profile.live_steps.get(name, max(1, cfg.steps // 10))
    # validated at the end, and half-way too from 50 steps on (the exercises' longer runs draw a curve; a
    # validation of 200 windows costs a PredRNN live run of 14 steps as much as 8 of its steps)
    every = steps if steps < 50 else -(-steps // 2)  # one that does not divide the steps adds one at the end
    live_cfg = dataclasses.replace(cfg, steps=steps, eval_every=max(1, every), checkpoint_every=steps,
                                   warmup_steps=min(cfg.warmup_steps, max(1, steps // 10)))
    torch.manual_seed(cfg.seed)
    live = load_or_train(build(name, **config), datasets, live_cfg, env.profile.data, root=env.runs / "live",
                         progress=False)
    baselines = chapter_baselines(env)
    key = ("baseline-val", config_hash(env.profile.data), cfg.batch_size, cfg.eval_batches)
    if key not in _DATA_CACHE:  # measured like the runs' validation, once per kernel (chapter 5 has two models)
        _DATA_CACHE[key] = {b: validation_mse(m, datasets["val"], cfg.batch_size, cfg.eval_batches,
                                              torch.device("cpu")) for b, m in baselines.items()}
    return ModelChapter(name, model, full, live, datasets, baselines, dict(_DATA_CACHE[key]))


def _profile_run(env: BookEnv, name: str):
    """The profile's run of ``name`` (shipped, or trained here by ``load_or_train``): the model on the CPU
    in eval mode, and the TrainResult."""
    from .models import build
    from .train import load_or_train

    cfg = env.profile.train_config(name)
    torch.manual_seed(cfg.seed)
    model = build(name, **env.profile.model_config(name))
    result = load_or_train(model, chapter_data(env), cfg, env.profile.data, root=env.runs, progress=False)
    return model.cpu().eval(), result


def profile_run(env: BookEnv, name: str):
    """The profile's run of ``name`` (shipped, or trained here by ``load_or_train``), without a live run."""
    return _profile_run(env, name)[0]


def chapter_baselines(env: BookEnv) -> dict:
    """The reference baselines (copy-last, context-mean, blend fitted on the training split, analogue), once per kernel."""
    from .config import config_hash
    from .evaluate import baseline_models
    from .models import REFERENCE_BASELINES

    key = ("baselines", config_hash(env.profile.data))
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = baseline_models(chapter_data(env)["train"], REFERENCE_BASELINES)
    return _DATA_CACHE[key]


_DATA_CACHE: dict = {}


def chapter_data(env: BookEnv) -> dict:
    """The profile's windows by split (made once per kernel)."""
    from .config import config_hash
    from .data import windows

    key = config_hash(env.profile.data)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = windows(env.profile.data)
    return _DATA_CACHE[key]


def chapter_identity(env: BookEnv) -> dict:
    """The identity of the profile's training data (:func:`vidpred.runs.data_identity`; hashed once per kernel)."""
    from .config import config_hash
    from .runs import data_identity

    key = ("identity", config_hash(env.profile.data))
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = data_identity(env.profile.data, chapter_data(env)["train"].clips)
    return _DATA_CACHE[key]


def moving_windows(dataset, n: int = 2) -> list[int]:
    """Indices of the ``n`` windows whose future moves most (the most pixels past the motion threshold),
    spread over different clips: the windows where a frozen prediction is most visibly wrong."""
    from .metrics import motion_mask

    scores = []
    for i in range(len(dataset)):
        context, future = dataset[i]
        scores.append((float(motion_mask(future[None], context[None, -1:]).float().mean()), i))
    picked, clips = [], set()
    for _, i in sorted(scores, reverse=True):
        clip = dataset.index[i][0]
        if clip not in clips:
            picked.append(i)
            clips.add(clip)
        if len(picked) == n:
            break
    return picked


def trained_runs(env: BookEnv):
    """The profile's run of every learned model on the profile's data, as a RunSet: trained in this
    folder (``env.runs``), else shipped with the package; a model that has neither is trained now with
    the recipe of its chapter (load-or-train), so that a chapter also runs on its own, e.g. in a fresh
    Colab runtime where chapters 4–6 have not run."""
    from .models import LEARNED
    from .runs import runs_for

    data = chapter_identity(env)
    found = runs_for(env.runs, env.profile.name, data)
    missing = [name for name in LEARNED if name not in found.runs]
    if missing:
        print(f"No {env.profile.name}-profile run of {', '.join(missing)} here yet: training "
              f"{'it' if len(missing) == 1 else 'them'} now, as chapters 4–6 would, into {display_path(env.runs)}.")
        for name in missing:
            profile_run(env, name)
        found = runs_for(env.runs, env.profile.name, data)
    return found


def results(env: BookEnv) -> dict:
    """This profile's ``results.json`` (written by chapter 8 or ``vidpred evaluate``); when there is none,
    e.g. when this chapter runs alone in a fresh Colab runtime, evaluate the profile's runs now
    (:func:`trained_runs`: training those that are missing)."""
    from .evaluate import evaluate_all, load_results

    try:
        return load_results(env.runs)
    except FileNotFoundError:
        datasets = chapter_data(env)
        evaluate_all(trained_runs(env).runs, datasets["test"], env.runs, device="cpu", train=datasets["train"],
                     data=chapter_identity(env))
        return load_results(env.runs)


# ------------------------------------------------------------------------------ real footage
SMOKE_REAL_BATCHES = 2  # the smoke profile (tests, nbval) evaluates the real test split's first 2 batches only
REAL_BATCH = 16  # windows per evaluation batch on the real test split
RESULTS_FORMAT = 2  # of real-results.json: 2 added each window's MSE (results by exercise); an older file is redone


def real_env(env: BookEnv) -> BookEnv | None:
    """The ``real`` profile on the real exercise set, where a copy of the set is on this machine (a mirror:
    ``$VIDPRED_EXERCISE_DIR`` or ``shared/exercise`` beside the project); None where it is not."""
    import dataclasses

    from .data.exercise import find_mirror

    mirror = find_mirror(env.root)
    if mirror is None or not mirror.is_dir():
        return None
    prof = get_profile("real")
    prof.data = dataclasses.replace(prof.data, data_dir=str(mirror), cache_dir=str(env.root / "data" / "cache"))
    return BookEnv(prof, env.device, env.root)


@dataclass
class RealResults:
    """The real-trained models and the four reference baselines on the real test split."""

    rows: list[dict]  # one per model, the keys of evaluate_all's rows (mse, moving_mse, ssim, *_per_horizon, ...)
    computed: bool  # True: measured on this machine; False: the test metrics recorded in the shipped manifest
    windows: int  # test windows the numbers are over
    total_windows: int  # test windows of the split
    env: BookEnv | None = None  # the real profile, where the data is here
    runs: object = None  # the RunSet of the real-trained models, where the data is here
    synthetic_rows: list[dict] | None = None  # the book's synthetic-trained checkpoints on the same windows (data here)
    # each real-trained model's test MSE with its hold-still read-out off (models.stillness), on the same windows
    without_hold: dict[str, float] | None = None

    @property
    def label(self) -> str:
        """Where the numbers come from, for captions."""
        if not self.computed:
            return (f"real test split ({self.total_windows} windows): the test metrics recorded in the shipped "
                    "manifest when the checkpoints were made, not measured in this build (the real set is not on "
                    "this machine)")
        part = ("" if self.windows == self.total_windows
                else f", the first {self.windows} of its {self.total_windows} windows (smoke build)")
        return f"real test split{part}, measured on this machine"

    def by_name(self) -> dict[str, dict]:
        return {r["model"]: r for r in self.rows}


def real_results(env: BookEnv) -> RealResults:
    """The shipped real-trained models (or runs trained into ``runs/real``) and the reference baselines (the blend
    fitted on the real train split) on the real test split, beside the book's synthetic-trained checkpoints on the
    same windows (what carries over without real training), measured now where the real set is on this machine
    (``results.json`` in ``runs/real``; the smoke profile evaluates the first batches only), else read from the
    manifest shipped with the checkpoints. Measured once per machine for the same data and checkpoints
    (``real-results.json`` in the profile's runs folder), and kept per kernel."""
    key = ("real-results", env.profile.name)
    if key in _DATA_CACHE:
        return _DATA_CACHE[key]
    real = real_env(env)
    if real is None:
        result = _manifest_results()
    else:
        from .evaluate import baseline_models, evaluate_all, evaluate_model
        from .models import REFERENCE_BASELINES
        from .runs import runs_for, shipped_runs

        datasets = chapter_data(real)
        identity = chapter_identity(real)
        found = runs_for(real.runs, "real", identity)
        book_runs = shipped_runs("book")
        batches = SMOKE_REAL_BATCHES if env.profile.name == "smoke" else None
        total = len(datasets["test"])
        measured = _measured_before(env, identity, [*found.runs.values(), *book_runs.runs.values()], batches)
        if measured.get("rows") is None:
            baselines = baseline_models(datasets["train"], REFERENCE_BASELINES)
            out = real.runs if batches is None else env.runs / "real-first-batches"  # never a partial runs/real
            measured["rows"] = evaluate_all(found.runs, datasets["test"], out, REAL_BATCH, "cpu", baselines,
                                            data=identity, max_batches=batches,
                                            latency_repeats=1 if batches else 5)
            measured["synthetic"] = [{"model": name, "kind": "trained on synthetic",
                                      **evaluate_model(run.model(), datasets["test"], REAL_BATCH, "cpu", batches)}
                                     for name, run in book_runs.runs.items()]
            measured["without_hold"] = {row["model"]: row["mse_without_hold_still"] for row in measured["rows"]
                                        if "mse_without_hold_still" in row}  # same forward pass
            _remember(measured)
        result = RealResults(measured["rows"], True, min(total, REAL_BATCH * batches) if batches else total, total, real,
                             found, measured["synthetic"], measured["without_hold"])
    _DATA_CACHE[key] = result
    return result


def _measured_before(env: BookEnv, identity: dict, runs: list, batches: int | None) -> dict:
    """The real results measured earlier on this machine for exactly these inputs (the real split's fingerprint,
    each checkpoint file's path, size and time, the number of batches), so the chapters of one build (each its own
    kernel) evaluate once: ``{"path", "key", "rows", "synthetic"}``, with ``rows`` None when not measured yet. A
    damaged file is measured again."""
    import hashlib
    import json

    parts = [identity.get("fingerprint"), batches, RESULTS_FORMAT]
    for run in runs:
        stat = Path(run.path).stat()
        parts += [run.name, str(Path(run.path).resolve()), stat.st_size, stat.st_mtime_ns]
    key = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]
    path = env.runs / "real-results.json"
    try:
        saved = json.loads(path.read_text())
        if saved.get("key") == key and isinstance(saved.get("rows"), list):
            return {"path": path, "key": key, "rows": saved["rows"], "synthetic": saved["synthetic"],
                    "without_hold": saved["without_hold"]}
    except (OSError, ValueError, KeyError, AttributeError):
        pass  # absent, damaged or from an older version: measured again
    return {"path": path, "key": key, "rows": None, "synthetic": None, "without_hold": None}


def _remember(measured: dict) -> None:
    """Keep ``measured`` for the next chapter (see :func:`_measured_before`); a folder that cannot be written only
    means the next chapter measures again."""
    from .utils import atomic_write, json_text

    try:
        measured["path"].parent.mkdir(parents=True, exist_ok=True)
        text = json_text({k: measured[k] for k in ("key", "rows", "synthetic", "without_hold")})
        atomic_write(measured["path"], lambda handle: handle.write(text.encode()))
    except OSError:
        pass


def _manifest_results() -> RealResults:
    """The real test split's numbers as the shipped manifest recorded them (the set is not on this machine)."""
    from .runs import shipped_manifest

    manifest = shipped_manifest("real") or {}
    rows = [{"model": name, "kind": "baseline", **{k: v for k, v in entry.items() if k != "config"}}
            for name, entry in (manifest.get("baselines") or {}).items()]
    for name, entry in (manifest.get("models") or {}).items():
        rows.append({"model": name, "kind": "learned", **entry["test"], "train_steps": entry["steps"],
                     "train_seconds": entry["train_seconds"]})
    total = manifest.get("test_windows", 0)
    without = {name: entry["test_without_hold_still"]["mse"] for name, entry in (manifest.get("models") or {}).items()
               if "test_without_hold_still" in entry}
    return RealResults(rows, False, total, total, without_hold=without or None)
