"""Pretraining engine: a short run lowers the loss; a run killed with SIGKILL and resumed ends with the
same weights as an uninterrupted one (bitwise on CPU in deterministic mode); non-finite loss stops cleanly."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from videocontrast.config import load_config
from videocontrast.engine.checkpoint import load_checkpoint
from videocontrast.engine.train import NonFiniteLossError, pretrain
from videocontrast.eval.run import knn_monitor

REPO = Path(__file__).resolve().parents[1]

# A tiny but real setup: synthetic videos on disk, r3d_small, 4 frames at 16x16.
TINY = ["data.synthetic_videos_per_class=3", "data.synthetic_frames=12", "data.synthetic_size=24",
        "data.clip_len=4", "data.decode_size=20", "data.size=16", "data.num_workers=0", "data.eval_clips=2",
        "aug.max_shift=2", "model.width=8", "model.head_hidden=32", "optim.batch_size=8", "optim.lr=0.003",
        "train.deterministic=true", "train.log_every=1", "optim.warmup_epochs=0"]


def tiny(tmp_path, *extra):
    return load_config("demo", [f"data.root={tmp_path / 'synthetic'}", *TINY, *extra])


def _weights(path):
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("method", ["simclr", "moco-v2"])
def test_kill_and_resume_gives_identical_weights(tmp_path, method):
    extra = [f"method.name={method}", "method.queue_size=16", "train.epochs=4"]
    ref = pretrain(tiny(tmp_path, *extra), tmp_path / "ref", quiet=True)
    # Same run in a subprocess, SIGKILLed as soon as its first checkpoint exists, then resumed here.
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "videocontrast", "pretrain", "--out", str(run), "--config", "demo",
           f"data.root={tmp_path / 'synthetic'}", *TINY, *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = run / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert ckpt.exists(), err.decode()[-2000:]
    killed_at = load_checkpoint(ckpt)["epoch"]
    assert killed_at < 4, "the run finished before it could be killed; the test proves nothing"
    resumed = pretrain(tiny(tmp_path, *extra), run, resume=True, quiet=True)
    assert resumed["epochs"] == 4
    a, b = _weights(ref["checkpoint"]), _weights(resumed["checkpoint"])
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after kill-and-resume (killed after epoch {killed_at})"


def test_short_run_lowers_the_loss(tmp_path):
    cfg = tiny(tmp_path, "train.epochs=6", "data.synthetic_videos_per_class=4", "train.knn_every=3")
    res = pretrain(cfg, tmp_path / "run", quiet=True, monitor=knn_monitor(cfg, torch.device("cpu")))
    losses = [h["loss"] for h in res["history"]]
    # The trend, not one epoch: with no warm-up, Adam's first sign-like steps make epoch 2 jump, and on this
    # 24-video set the per-epoch loss moves by about 0.1 from run to run in a full test session.
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses
    out = tmp_path / "run"
    assert (out / "config.yaml").exists() and (out / "metrics.jsonl").exists()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert any('"kind": "epoch"' in line for line in lines) and any('"clips_per_s"' in line for line in lines)
    knn = [json.loads(line) for line in lines if '"kind": "knn"' in line]
    assert [k["epoch"] for k in knn] == [3, 6] and all(0 <= k["knn_top1"] <= 1 for k in knn)


def test_existing_run_needs_resume(tmp_path):
    cfg = tiny(tmp_path, "train.epochs=1")
    pretrain(cfg, tmp_path / "run", quiet=True)
    with pytest.raises(FileExistsError, match="--resume"):
        pretrain(cfg, tmp_path / "run", quiet=True)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from videocontrast.methods.simclr import SimCLR

    real_forward = SimCLR.forward
    calls = []

    def forward_nan_in_epoch_2(self, v1, v2):  # 2 steps per epoch: the 3rd call is epoch 2's first step
        calls.append(1)
        loss, stats = real_forward(self, v1, v2)
        return (loss * float("nan") if len(calls) > 2 else loss), stats

    monkeypatch.setattr(SimCLR, "forward", forward_nan_in_epoch_2)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match="the checkpoint of epoch 1 is kept"):
        pretrain(tiny(tmp_path, "train.epochs=3"), run, quiet=True)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 1  # epoch 1's checkpoint survives, nothing of the failed epoch was written
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_gradient_accumulation_runs_and_counts_optimizer_steps(tmp_path):
    res = pretrain(tiny(tmp_path, "train.epochs=1", "optim.accum_steps=2"), tmp_path / "acc", quiet=True)
    # global batch 8 = 2 micro-batches of 4 per optimiser step
    lines = [json.loads(x) for x in (tmp_path / "acc" / "metrics.jsonl").read_text().splitlines()]
    epoch = [x for x in lines if x["kind"] == "epoch"][0]
    assert res["steps"] == epoch["step"] >= 1
    n_train = len(list((tmp_path / "synthetic" / "train").rglob("*.mp4")))
    assert res["steps"] == n_train // 8


def _fit_tiny(tmp_path, name, epochs, plan=None):
    from videocontrast.build.components import dataset_from_config, method_from_config
    from videocontrast.engine.train import fit, seed_everything

    cfg = tiny(tmp_path, f"train.epochs={epochs}", "optim.warmup_epochs=1")
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    ds = dataset_from_config(cfg, "train", "pretrain")
    return fit(cfg, tmp_path / name, method_from_config(cfg, num_train_clips=len(ds)), ds, kind="pretrain",
               quiet=True, plan_epochs=plan)


def test_epochs_planned_after_the_first_epoch_train_what_that_plan_would_have_from_the_start(tmp_path):
    # The demo's supervised baseline plans its epochs from the first epoch's time. With a 1-epoch warm-up the
    # first epoch does not depend on the total, so re-planning 2 -> 3 epochs must give the 3-epoch run bit for bit.
    seen = []
    planned = _fit_tiny(tmp_path, "planned", 2, plan=lambda s: seen.append(s) or 3)
    ref = _fit_tiny(tmp_path, "ref", 3)
    assert len(seen) == 1 and seen[0] > 0  # called once, with the first epoch's seconds
    assert planned["epochs"] == 3 and len(planned["history"]) == 3
    a, b = _weights(ref["checkpoint"]), _weights(planned["checkpoint"])
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs between the re-planned and the 3-epoch run"
    # the plan is what the folder says: config.yaml and a final checkpoint of 3 epochs (a rerun resumes nothing)
    assert load_config(str(tmp_path / "planned" / "config.yaml")).train.epochs == 3
    state = load_checkpoint(planned["checkpoint"])
    assert state["config"]["train"]["epochs"] == 3 and state["final"] and state["epoch"] == 3


def test_planning_epochs_needs_a_warm_up_that_spans_the_first_epoch(tmp_path):
    from videocontrast.build.components import dataset_from_config, method_from_config
    from videocontrast.engine.train import fit

    cfg = tiny(tmp_path, "train.epochs=2", "optim.warmup_epochs=0.5")
    ds = dataset_from_config(cfg, "train", "pretrain")
    with pytest.raises(ValueError, match="warmup_epochs >= 1"):
        fit(cfg, tmp_path / "run", method_from_config(cfg, num_train_clips=len(ds)), ds, kind="pretrain",
            quiet=True, plan_epochs=lambda s: 3)
    assert not (tmp_path / "run" / "checkpoints").exists()


# -- resuming where another number of GPUs is visible


def _gpu_rng_states(n):
    return [torch.full((16,), i, dtype=torch.uint8) for i in range(n)]


@pytest.mark.parametrize("saved,visible,restored", [(2, 1, [0]), (4, 2, [0, 1]), (1, 1, [0]), (1, 2, [0]),
                                                    (2, 0, [])])
def test_rng_restore_takes_the_gpus_there_are_and_says_what_it_could_not(monkeypatch, saved, visible, restored):
    from videocontrast.engine.checkpoint import rng_state, set_rng_state

    state = {**rng_state(), "cuda": _gpu_rng_states(saved)}  # (this machine's own state has no "cuda")
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: visible > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append((int(state[0]), device)))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: (_ for _ in ()).throw(
        RuntimeError("set_rng_state_all fails when a saved GPU is missing")))
    expect_cpu = torch.get_rng_state()
    notes = set_rng_state(state)
    assert calls == [(i, i) for i in restored]
    assert torch.equal(torch.get_rng_state(), expect_cpu)
    if saved > visible:
        assert len(notes) == 1 and f"CUDA random state of {saved} GPU(s)" in notes[0]
        assert f"this process sees {visible}" in notes[0]
    else:
        assert notes == []


def test_a_checkpoint_from_a_gpu_machine_resumes_on_the_cpu(tmp_path, capsys):
    import shutil

    from videocontrast.engine.checkpoint import save_checkpoint

    pretrain(tiny(tmp_path, "train.epochs=1"), tmp_path / "cpu", quiet=True)
    shutil.copytree(tmp_path / "cpu", tmp_path / "gpu")
    ckpt = tmp_path / "gpu" / "checkpoints" / "last.pt"
    state = load_checkpoint(ckpt)
    state["rng"]["cuda"] = _gpu_rng_states(8)  # as written on an 8-GPU machine
    save_checkpoint(ckpt, state)
    ref = pretrain(tiny(tmp_path, "train.epochs=2"), tmp_path / "cpu", resume=True, quiet=True)
    capsys.readouterr()
    res = pretrain(tiny(tmp_path, "train.epochs=2"), tmp_path / "gpu", resume=True)
    out = capsys.readouterr().out
    assert res["epochs"] == 2
    assert out.count("CUDA random state of 8 GPU(s)") == 1, out
    a, b = _weights(ref["checkpoint"]), _weights(res["checkpoint"])
    for k in a:  # the same as resuming the CPU's own checkpoint: nothing here draws from the GPUs' generators
        assert torch.equal(a[k], b[k]), k


# -- host-device syncs on the hot path


class _MemLoader:
    """The same in-memory uint8 batch ``(B, 2, T, C, H, W)``, ``steps`` times."""

    batch_size = 4

    def __init__(self, steps):
        self.steps = steps
        self.clips = torch.randint(0, 255, (4, 2, 4, 3, 20, 20), dtype=torch.uint8,
                                   generator=torch.Generator().manual_seed(0))

    def __iter__(self):
        for _ in range(self.steps):
            yield {"video": self.clips}


@pytest.mark.parametrize("method", ["simclr", "moco-v2"])
def test_the_loop_reads_the_loss_back_once_per_log_line_not_every_step(tmp_path, monkeypatch, method):
    """Reading a device tensor on the host (item, tolist, float, bool) waits for the device's queue to drain.
    Counted here where the engine and the methods call them: 12 steps with train.log_every=4 may read 3 log lines
    and the epoch's mean, not 12 losses (before: one .item() per step in the loop and one .tolist() per step in
    every method's stats)."""
    from videocontrast.build.components import build_augment, method_from_config
    from videocontrast.engine import train as engine

    cfg = tiny(tmp_path, f"method.name={method}", "method.queue_size=16", "train.log_every=4")
    model = method_from_config(cfg, num_train_clips=100)
    state = engine.TrainState(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        scaler=torch.amp.GradScaler("cpu", enabled=False), augment=build_augment(cfg), device=torch.device("cpu"),
        amp=None, lr_schedule=np.full(12, 0.01), momentum_schedule=np.full(12, 0.99) if "moco" in method else None,
        steps_per_epoch=12, accum_steps=1, labels=False, seed=0, channels_last=False, log_every=4,
        log=engine.MetricsLog(tmp_path, enabled=True, tensorboard=False))
    reads = []
    for name in ("item", "tolist", "__float__", "__bool__", "__int__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, **kwargs):
            caller = Path(sys._getframe(1).f_code.co_filename)
            if caller.parent.name in ("engine", "methods") or caller.name == "losses.py":
                reads.append(f"{caller.parent.name}/{caller.name}:{sys._getframe(1).f_lineno}")
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    res = engine.train_one_epoch(state, _MemLoader(12))
    monkeypatch.undo()
    assert len(reads) <= 4, reads
    logged = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [4, 8, 12]
    assert all(np.isfinite(r["loss"]) and "pos_sim" in r for r in logged)
    # the epoch's loss is the mean of the three 4-step windows logged
    assert res["loss"] == pytest.approx(np.mean([r["loss"] for r in logged]), rel=1e-5)


def test_cudnn_autotuning_is_on_while_training_unless_deterministic(tmp_path, monkeypatch):
    from videocontrast.engine import train as engine

    seen = []
    real = engine.train_one_epoch
    monkeypatch.setattr(engine, "train_one_epoch",
                        lambda *a: (seen.append(torch.backends.cudnn.benchmark), real(*a))[1])
    torch.backends.cudnn.benchmark = False
    pretrain(tiny(tmp_path, "train.epochs=1", "train.deterministic=false"), tmp_path / "fast", quiet=True)
    pretrain(tiny(tmp_path, "train.epochs=1", "train.deterministic=true"), tmp_path / "exact", quiet=True)
    assert seen == [True, False]
    assert torch.backends.cudnn.benchmark is False  # restored after the run


# ----------------------------------------------------------------------------- a batch larger than the training set


def test_a_training_set_smaller_than_the_batch_trains_with_a_smaller_batch(tmp_path, capsys):
    from videocontrast.cli import main

    run = tmp_path / "run"
    # 3 videos per class x 4 classes, 70% train: fewer training videos than optim.batch_size=32
    args = ["pretrain", "--config", "demo", "--out", str(run), f"data.root={tmp_path / 'synthetic'}", *TINY,
            "optim.batch_size=32", "train.epochs=1"]
    assert main(args) == 0
    said = capsys.readouterr().out
    n = load_checkpoint(run / "checkpoints" / "last.pt")["config"]
    warned = [line for line in said.splitlines() if "optim.batch_size=32" in line]
    assert len(warned) == 1 and "training with batches of" in warned[0], said
    count = int(warned[0].split("the training set has ")[1].split()[0])
    assert count < 32 and f"batches of {count}" in warned[0]
    assert n["optim"]["batch_size"] == 32  # the setting is kept (a rerun compares equal); the batch is lowered
    assert main(["pretrain", "--resume", "--out", str(run), "train.epochs=2"]) == 0


def test_a_batch_no_training_set_can_fill_is_refused_in_one_line(tmp_path, capsys):
    from videocontrast.cli import main

    code = main(["pretrain", "--config", "demo", "--out", str(tmp_path / "run"), f"data.root={tmp_path / 's'}",
                 *TINY, "optim.batch_size=32", "optim.accum_steps=32", "train.epochs=1"])
    err = capsys.readouterr().err
    assert code == 2 and "optim.accum_steps=32" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "checkpoints").exists()


# ----------------------------------------------------------------------------- the start line under a time limit


def _start_line(capsys) -> str:
    return next(line for line in capsys.readouterr().out.splitlines() if "steps/epoch" in line)


def test_the_start_line_says_a_time_limit_and_a_plan(tmp_path, capsys):
    from videocontrast.build.components import dataset_from_config, method_from_config
    from videocontrast.engine.train import fit

    pretrain(tiny(tmp_path, "train.epochs=1"), tmp_path / "plain")
    line = _start_line(capsys)
    assert line.endswith("x 1 epochs | start at epoch 1") and "time limit" not in line
    pretrain(tiny(tmp_path, "train.epochs=2", "train.time_limit_s=900"), tmp_path / "limited")
    assert "x up to 2 epochs, time limit 900 s | start at epoch 1" in _start_line(capsys)
    # the supervised baseline's way: planned again from the first epoch's time, under its budget
    cfg = tiny(tmp_path, "train.epochs=2", "optim.warmup_epochs=1", "train.time_limit_s=900")
    ds = dataset_from_config(cfg, "train", "pretrain")
    fit(cfg, tmp_path / "planned", method_from_config(cfg, num_train_clips=len(ds)), ds, kind="pretrain",
        plan_epochs=lambda s: 1)
    assert "x 2 epochs for now (planned again from the first epoch's time), time limit 900 s" in _start_line(capsys)
