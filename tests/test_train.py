"""The trainer: exact resume, safe checkpoints, divergence, load-or-train, DDP on CPU."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vidpred.config import get_profile
from vidpred.data import windows
from vidpred.models import build
from vidpred.train import (
    CheckpointMismatch,
    CheckpointNotFinite,
    CheckpointWriteError,
    RunInUse,
    StepBatchSampler,
    TrainingDiverged,
    fit,
    learning_rate,
    load_checkpoint,
    load_model,
    load_or_train,
    run_dir,
    run_lock,
)

SMOKE = get_profile("smoke")


@pytest.fixture(scope="module")
def data():
    return windows(SMOKE.data)


def cfg(**kw):
    return dataclasses.replace(SMOKE.train, **{"steps": 8, "batch_size": 2, "eval_every": 4, "checkpoint_every": 4, **kw})


def fresh(name="predrnn"):
    torch.manual_seed(0)
    # The V2 options use random sampling masks in training: resume must restore the RNG as well.
    extra = {"decouple_beta": 0.1, "reverse_scheduled_sampling": True} if name == "predrnn" else {}
    return build(name, **SMOKE.model_config(name), **extra)


@pytest.mark.parametrize("augment", [{}, {"augment": True},
                                     {"augment": True, "slow": 0.5, "pause": 0.5, "reverse": 0.5, "zoom_out": 0.5}],
                         ids=["plain", "augmented", "every-change"])
def test_resume_equals_uninterrupted(data, tmp_path, augment):
    full = fresh()
    fit(full, data["train"], data["val"], cfg(**augment), tmp_path / "full", SMOKE.data, progress=False)
    part = fresh()
    first = fit(part, data["train"], data["val"], cfg(**augment), tmp_path / "part", SMOKE.data, progress=False,
                stop_after=3)
    assert first.steps == 3 and load_checkpoint(tmp_path / "part" / "last.pt")["step"] == 3
    resumed = fresh()  # a new process would start from fresh weights and read the checkpoint
    second = fit(resumed, data["train"], data["val"], cfg(**augment), tmp_path / "part", SMOKE.data, progress=False)
    assert second.resumed_from == 3 and second.steps == 8
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5), name
    log = [json.loads(line) for line in (tmp_path / "part" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "train"] == list(range(8))  # no step twice, none missing


def test_checkpoint_is_safe_and_checked(data, tmp_path):
    model = fresh("convlstm")
    fit(model, data["train"], data["val"], cfg(), tmp_path, SMOKE.data, progress=False)
    state = load_checkpoint(tmp_path / "last.pt")  # weights_only=True inside
    assert state["model"] == "convlstm" and state["step"] == 8 and state["model_config"]["hidden"] == [8]
    assert (tmp_path / "best.pt").exists() and not list(tmp_path.glob("*.tmp"))
    loaded, _ = load_model(tmp_path / "last.pt")
    context = torch.rand(1, 30, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(context, 15), model.eval()(context, 15))
    with pytest.raises(CheckpointMismatch, match="train_config.steps: checkpoint 8 vs asked 9"):
        fit(fresh("convlstm"), data["train"], data["val"], cfg(steps=9), tmp_path, SMOKE.data, progress=False)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt is not a checkpoint this package can load safely") as err:
        load_checkpoint(tmp_path / "junk.pt")
    assert "weights_only=False" not in str(err.value)  # torch's advice to run the file's code is never passed on


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    model = fresh("convlstm")
    real = type(model).training_loss

    def poisoned(self, context, future, progress):
        loss, logs = real(self, context, future, progress)
        return (loss * float("nan") if progress >= 5 / 8 else loss), logs

    monkeypatch.setattr(type(model), "training_loss", poisoned)
    with pytest.raises(TrainingDiverged, match="loss is nan at step 5"):
        fit(model, data["train"], data["val"], cfg(), tmp_path, SMOKE.data, progress=False)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 4


def test_load_or_train_reuses_a_finished_run(data, tmp_path):
    model = fresh("transformer")
    first = load_or_train(model, data, cfg(), SMOKE.data, root=tmp_path, progress=False)
    assert not first.reused and first.steps == 8
    again = fresh("transformer")
    second = load_or_train(again, data, cfg(), SMOKE.data, root=tmp_path, progress=False)
    assert second.reused and second.out_dir == first.out_dir
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    other = run_dir(tmp_path, fresh("transformer"), SMOKE.data, cfg(lr=1e-4))
    assert other != first.out_dir  # another config trains into another folder


def test_batches_and_schedule():
    sampler = StepBatchSampler(10, 3, steps=7, seed=0)
    batches = list(sampler)
    assert len(batches) == 7 and all(len(b) == 3 for b in batches)
    assert sorted(sum(batches[:3], [])) == sorted(set(sum(batches[:3], [])))  # an epoch has no repeats
    assert list(StepBatchSampler(10, 3, steps=7, seed=0, start=4)) == batches[4:]
    ranks = [StepBatchSampler(10, 2, steps=3, seed=0, rank=r, world_size=2).batch(1) for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1])
    c = cfg(lr=1.0, warmup_steps=4, steps=104)
    assert learning_rate(0, c) == 0.25 and learning_rate(3, c) == 1.0
    assert learning_rate(104, c) == pytest.approx(0.05)


def test_ddp_two_processes_on_cpu(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    worker = Path(__file__).parent / "ddp_worker.py"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--standalone", str(worker), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for name in rank0:
        assert torch.allclose(rank0[name], rank1[name], atol=1e-6), name
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["best.pt", "last.pt", "log.jsonl"]
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["step"] == 6 and len(state["rng"]) == 2
    assert all(torch.equal(state["state_dict"][k], rank0[k]) for k in rank0)


# ------------------------------------------------------------- interruptions, locks, torn logs, full disks
def test_torn_last_log_line_is_ignored_on_resume(data, tmp_path, caplog):
    fit(fresh("convlstm"), data["train"], data["val"], cfg(), tmp_path, SMOKE.data, progress=False, stop_after=3)
    log_path = tmp_path / "log.jsonl"
    with open(log_path, "a") as handle:
        handle.write('{"kind": "train", "step": 3, "loss": 0.0')  # what a kill in the middle of a write leaves
    with caplog.at_level("WARNING"):
        resumed = fit(fresh("convlstm"), data["train"], data["val"], cfg(), tmp_path, SMOKE.data, progress=False)
    assert resumed.resumed_from == 3 and resumed.steps == 8
    assert f"{log_path}: ignored its torn last line" in caplog.text
    log = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "train"] == list(range(8))


def test_corrupt_log_line_in_the_middle_is_an_error_naming_it(data, tmp_path):
    fit(fresh("convlstm"), data["train"], data["val"], cfg(), tmp_path, SMOKE.data, progress=False, stop_after=3)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    lines[1] = lines[1][:20]
    (tmp_path / "log.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"log.jsonl, line 2: not a JSON record"):
        fit(fresh("convlstm"), data["train"], data["val"], cfg(), tmp_path, SMOKE.data, progress=False)


def test_ctrl_c_finishes_the_step_saves_and_exits_130(tmp_path, monkeypatch, capsys):
    from vidpred.cli import main
    from vidpred.models.convlstm import ConvLSTM

    real = ConvLSTM.training_loss

    def interrupted(self, context, future, progress):
        if progress == 5 / 8:  # step 5: Ctrl+C arrives in the middle of the step
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, context, future, progress)

    monkeypatch.setattr(ConvLSTM, "training_loss", interrupted)
    runs = tmp_path / "runs"
    args = ["train", "--model", "convlstm", "--profile", "smoke", "--steps", "8", "--runs", str(runs)]
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a `&` job ignores it)
    try:
        assert main(args) == 130
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored after training
    finally:
        signal.signal(signal.SIGINT, before)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    run = next(runs.iterdir())
    line = err.strip().splitlines()[-1]
    assert line == f"vidpred train: stopped at step 6 by SIGINT; {run / 'last.pt'} holds it; resume with the same command"
    assert load_checkpoint(run / "last.pt")["step"] == 6 and not (run / ".lock").exists()


def test_sigterm_stops_a_cli_training_that_resumes_exactly(data, tmp_path):
    steps = 16
    runs = tmp_path / "runs"
    args = ["train", "--model", "convlstm", "--profile", "smoke", "--steps", str(steps), "--runs", str(runs)]
    # The smoke profile trains in milliseconds per step: a sleep in each step leaves time to send the signal.
    script = ("import sys, time; from vidpred.models.convlstm import ConvLSTM; real = ConvLSTM.training_loss\n"
              "def slow(self, *a):\n    time.sleep(0.2)\n    return real(self, *a)\n"
              "ConvLSTM.training_loss = slow\nfrom vidpred.cli import main\nsys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    process = subprocess.Popen([sys.executable, "-c", script, *args], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        logs = list(runs.glob("*/log.jsonl"))
        if logs and logs[0].read_text().count('"kind": "train"') >= 3:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-3000:]
    assert "Traceback" not in err
    run = logs[0].parent
    stopped = load_checkpoint(run / "last.pt")["step"]
    assert 3 <= stopped < steps
    assert err.strip().splitlines()[-1].startswith(f"vidpred train: stopped at step {stopped} by SIGTERM; ")
    train_records = [json.loads(line) for line in logs[0].read_text().splitlines() if '"train"' in line]
    assert [r["step"] for r in train_records] == list(range(stopped))

    from vidpred.cli import main
    threads = torch.get_num_threads()
    # One thread, as the interrupted process had: a bf16 step (mixed precision on CPUs with bf16) rounds
    # differently with another thread count, and exact resume compares equal settings.
    torch.set_num_threads(1)
    try:
        assert main(args) == 0  # the same command resumes
        train_cfg = dataclasses.replace(SMOKE.train_config("convlstm"), steps=steps)
        torch.manual_seed(train_cfg.seed)
        model = build("convlstm", **SMOKE.model_config("convlstm"))
        fit(model, data["train"], data["val"], train_cfg, tmp_path / "uninterrupted", SMOKE.data, progress=False)
    finally:
        torch.set_num_threads(threads)
    resumed = load_checkpoint(run / "last.pt")
    assert resumed["step"] == steps
    for name, value in model.state_dict().items():
        assert torch.allclose(value, resumed["state_dict"][name], atol=1e-6, rtol=1e-5), name


def test_second_training_in_one_run_folder_is_refused(data, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from vidpred.train import run_lock\n"
         "with run_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunInUse, match=rf"^{tmp_path} is in use by another training \(pid {holder.pid}\); "):
            fit(fresh("convlstm"), data["train"], data["val"], cfg(), tmp_path, SMOKE.data, progress=False)
        assert not (tmp_path / "log.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    fit(fresh("convlstm"), data["train"], data["val"], cfg(), tmp_path, SMOKE.data, progress=False, stop_after=1)  # free again
    with run_lock(tmp_path), pytest.raises(RunInUse, match=rf"\(pid {os.getpid()}\)"):
        fit(fresh("convlstm"), data["train"], data["val"], cfg(), tmp_path, SMOKE.data, progress=False)


@pytest.mark.parametrize("failure", [
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 2752 vs 2640"),
    OSError(errno.ENOSPC, "No space left on device"),
], ids=["torch", "enospc"])
def test_full_disk_keeps_the_previous_checkpoint_and_says_so(data, tmp_path, monkeypatch, failure):
    from vidpred import train

    real_save, saves = torch.save, []

    def save(obj, handle):
        saves.append(obj["step"])
        if len(saves) > 1:  # the first checkpoint (best.pt at step 4) fits, then the disk is full
            handle.write(b"partial")
            raise failure
        real_save(obj, handle)

    monkeypatch.setattr(train.torch, "save", save)
    with pytest.raises(CheckpointWriteError) as caught:
        fit(fresh("convlstm"), data["train"], data["val"], cfg(), tmp_path, SMOKE.data, progress=False)
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and "inline_container" not in message
    assert message.startswith(f"could not write {tmp_path / 'last.pt'}: the disk is full")
    assert "no previous checkpoint there" in message and (tmp_path / "best.pt").exists()
    monkeypatch.setattr(train.torch, "save", real_save)
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 4 and not list(tmp_path.glob(".*.tmp"))


def test_the_optimizer_is_one_fused_adamw_with_the_step_by_step_update():
    from vidpred.train import make_optimizer

    torch.manual_seed(0)
    fused_model = build("predrnn", hidden=(8, 8), patch_size=4)
    plain_model = build("predrnn", hidden=(8, 8), patch_size=4)
    plain_model.load_state_dict(fused_model.state_dict())
    start = [p.detach().clone() for p in fused_model.parameters()]
    fused = make_optimizer(fused_model, lr=1e-2, weight_decay=0.01)
    plain = make_optimizer(plain_model, lr=1e-2, weight_decay=0.01, fused=False)
    assert fused.param_groups[0]["fused"] and not plain.param_groups[0]["fused"]
    context, future = torch.rand(2, 30, 1, 64, 64), torch.rand(2, 15, 1, 64, 64)
    for _ in range(3):  # the same gradients into both: the fused model's
        fused.zero_grad()
        fused_model.training_loss(context, future, 0.5)[0].backward()
        for a, b in zip(fused_model.parameters(), plain_model.parameters()):
            b.grad = None if a.grad is None else a.grad.clone()
        fused.step()
        plain.step()
    for (name, a), b in zip(fused_model.named_parameters(), plain_model.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), name
    assert any(not torch.equal(a, s) for a, s in zip(fused_model.parameters(), start))  # the steps moved it


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_checkpoint_with_non_finite_weights_is_refused_on_load(data, tmp_path, value):
    from vidpred.runs import find_runs

    run = tmp_path / "runs" / "convlstm-diverged"
    fit(fresh("convlstm"), data["train"], data["val"], cfg(), run, SMOKE.data, progress=False)
    state = load_checkpoint(run / "last.pt")
    name = next(iter(state["state_dict"]))
    state["state_dict"][name].view(-1)[0] = value  # one value, as a diverged step leaves
    torch.save(state, run / "last.pt")
    with pytest.raises(CheckpointNotFinite) as refused:
        load_checkpoint(run / "last.pt")
    message = str(refused.value)
    assert message == (f"{run / 'last.pt'}: its weights {name} hold 1 NaN or infinite value(s) of "
                       f"{state['state_dict'][name].numel()} (a diverged run); refused. Delete it and train again, "
                       "or copy an earlier checkpoint of the run (best.pt) over last.pt to resume from there")
    with pytest.raises(CheckpointNotFinite):
        load_model(run / "last.pt")  # what evaluate and the app load through
    with pytest.raises(CheckpointNotFinite):  # nor resumed from
        fit(fresh("convlstm"), data["train"], data["val"], cfg(), run, SMOKE.data, progress=False)
    with pytest.warns(UserWarning, match="skipped .*last.pt: .* NaN or infinite"):
        found = find_runs(tmp_path / "runs")
    assert set(found.runs) == {"convlstm"} and found.runs["convlstm"].path.name == "best.pt"  # the finite one serves
    (run / "last.pt").write_bytes((run / "best.pt").read_bytes())  # the advice: resume from the earlier checkpoint
    resumed = fit(fresh("convlstm"), data["train"], data["val"], cfg(), run, SMOKE.data, progress=False)
    assert resumed.resumed_from == load_checkpoint(run / "best.pt")["step"] and resumed.steps == 8


def test_the_shipped_checkpoints_pass_the_finite_check():
    """Each loads (the check inside load_checkpoint); it costs 0.3-1.1 ms against 10-80 ms of loading."""
    from vidpred.train import non_finite

    shipped = sorted((Path(__file__).parents[1] / "vidpred" / "pretrained").rglob("*.pt"))
    assert shipped
    for path in shipped:
        assert non_finite(load_checkpoint(path)["state_dict"]) is None, path


def test_weights_that_become_nan_are_never_checkpointed(data, tmp_path, monkeypatch):
    """A finite loss with a step that leaves NaN weights (a gradient overflow): the next checkpoint refuses
    to overwrite the last good one."""
    real_clip, calls = torch.nn.utils.clip_grad_norm_, []

    def overflowing(parameters, max_norm):
        parameters = list(parameters)
        calls.append(1)
        if len(calls) == 8:  # the last step before the checkpoint at step 8
            for p in parameters:
                if p.grad is not None:
                    p.grad.fill_(float("nan"))
        return real_clip(parameters, max_norm)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", overflowing)
    with pytest.raises(TrainingDiverged, match=r"^convlstm: its weights \S+ became NaN or infinite by step 8; "
                                                r"stopped, .*last.pt keeps the last good weights\."):
        fit(fresh("convlstm"), data["train"], data["val"], cfg(), tmp_path, SMOKE.data, progress=False)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 4 and load_checkpoint(tmp_path / "best.pt")["step"] == 4


def as_another_user() -> list[str]:
    """A prefix that runs a command as an unprivileged user (root writes anywhere), else [] where we are one."""
    if os.geteuid() != 0:
        return []
    import shutil

    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: no way to make a folder read-only for the trainer")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.parametrize("where", ["the runs folder", "a missing folder under it"])
def test_train_into_a_read_only_runs_folder_says_what_to_pass(where):
    import tempfile

    prefix = as_another_user()
    with tempfile.TemporaryDirectory() as home:  # in /tmp, which the other user can reach (pytest's tmp_path is 0700)
        os.chmod(home, 0o755)
        read_only = Path(home) / "read-only"
        read_only.mkdir()
        (read_only / "notes.txt").write_text("kept")
        read_only.chmod(0o555)
        runs = read_only if where == "the runs folder" else read_only / "new" / "runs"
        script = "import sys; from vidpred.cli import main; sys.exit(main(sys.argv[1:]))"
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "HOME": home, "OMP_NUM_THREADS": "1"}
        try:
            done = subprocess.run([*prefix, sys.executable, "-c", script, "train", "--model", "convlstm", "--profile",
                                   "smoke", "--steps", "1", "--runs", str(runs)],
                                  env=env, capture_output=True, text=True, timeout=300, cwd=home)
            left = sorted(p.name for p in read_only.rglob("*"))
        finally:
            read_only.chmod(0o755)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"vidpred train: cannot train into {runs}/convlstm-\w+: {read_only} is not writable "
                        r"\((Permission denied|Read-only file system)\); pass --runs <a writable folder> "
                        r"\(in Python: another out_dir\)", last), last
    assert left == ["notes.txt"]  # nothing half-written


def test_a_run_folder_that_cannot_be_written_leaves_nothing_behind(tmp_path, monkeypatch):
    """Folders created on the way are removed again when the first write fails (a full disk, a quota)."""
    from vidpred import run_folder
    from vidpred.train import RunFolderNotWritable, writable_run_folder

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_folder.tempfile, "mkstemp", full)
    with pytest.raises(RunFolderNotWritable, match=rf"^cannot train into {tmp_path}/runs/model-1: {tmp_path}/runs/model-1 "
                                                   r"is not writable \(No space left on device\); pass --runs"):
        writable_run_folder(tmp_path / "runs" / "model-1")
    assert list(tmp_path.iterdir()) == []
    assert isinstance(RunFolderNotWritable("x"), ValueError) and isinstance(RunFolderNotWritable("x"), OSError)
