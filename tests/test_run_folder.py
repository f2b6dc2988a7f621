"""The run folder (engine.run): a run never silently changes, mixes or loses work.

Resume compares the requested settings with the stored ones; a second process cannot write into a folder in
use; leftovers of a killed run (duplicate metrics, temporary checkpoint files) are cleaned on resume; a full or
read-only output fails before the work; Ctrl-C keeps the last checkpoint and says how to continue; a command
that fails on its arguments leaves no folder behind."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from test_engine import TINY, tiny
from videocontrast.cli import main
from videocontrast.config import ConfigError
from videocontrast.engine.checkpoint import load_checkpoint
from videocontrast.engine.train import pretrain

REPO = Path(__file__).resolve().parents[1]


def _epochs(run: Path) -> list[int]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [x["epoch"] for x in lines if x["kind"] == "epoch"]


def _cli(tmp_path, run, *extra):
    return ["pretrain", "--out", str(run), "--config", "demo", f"data.root={tmp_path / 'synthetic'}", *TINY, *extra]


# -- resume with other settings -------------------------------------------------------------------------------

def test_resume_with_other_settings_is_refused_naming_each_field(tmp_path):
    run = tmp_path / "run"
    pretrain(tiny(tmp_path, "train.epochs=1"), run, quiet=True)
    stamp = (run / "checkpoints" / "last.pt").stat().st_mtime_ns
    with pytest.raises(ConfigError) as e:
        pretrain(tiny(tmp_path, "train.epochs=1", "method.name=moco-v2", "optim.lr=0.01"), run, resume=True,
                 quiet=True)
    msg = str(e.value)
    assert "method.name: stored simclr, requested moco-v2" in msg
    assert "optim.lr: stored 0.003, requested 0.01" in msg
    assert "--out" in msg and "\n" not in msg
    assert (run / "checkpoints" / "last.pt").stat().st_mtime_ns == stamp  # nothing was trained or written


def test_resume_with_more_epochs_continues_and_fewer_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    pretrain(tiny(tmp_path, "train.epochs=1"), run, quiet=True)
    # more epochs and another logging interval are safe; the new total is what the run trains to
    # (data.cache only says where decoded frames are kept: the frames, and so the run, are the same)
    res = pretrain(tiny(tmp_path, "train.epochs=2", "train.log_every=2", "data.cache=memory"), run, resume=True)
    assert res["epochs"] == 2 and _epochs(run) == [1, 2]
    out = capsys.readouterr().out
    assert "train.epochs: stored 1, requested 2" in out and "schedule" in out
    assert f"resuming '{run}' (epoch 1 done, continuing with epoch 2 of 2) with changed settings" in out
    assert load_checkpoint(run / "checkpoints" / "last.pt")["config"]["train"]["epochs"] == 2
    with pytest.raises(ConfigError, match="train.epochs: stored 2, requested 1"):
        pretrain(tiny(tmp_path, "train.epochs=1"), run, resume=True, quiet=True)
    # a finished run asked for the same settings again: nothing to do, nothing refused
    assert pretrain(tiny(tmp_path, "train.epochs=2", "train.log_every=2"), run, resume=True, quiet=True)["epochs"] == 2


def test_cli_resume_takes_the_stored_settings_and_checks_the_flags(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_cli(tmp_path, run, "train.epochs=1")) == 0
    capsys.readouterr()
    # flags that differ from the stored run are refused, one line each named
    assert main(["pretrain", "--resume", "--out", str(run), "--method", "moco-v2", "optim.lr=0.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("videocontrast pretrain: error:") and err.count("\n") == 1
    assert "method.name: stored simclr, requested moco-v2" in err and "optim.lr: stored 0.003, requested 0.1" in err
    # `--resume --out RUN` alone continues the stored run; --epochs N extends it
    assert main(["pretrain", "--resume", "--out", str(run), "--epochs", "2"]) == 0
    assert "done: 2 epochs" in capsys.readouterr().out
    assert _epochs(run) == [1, 2]


@pytest.mark.parametrize("args, expect", [
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "-3"], "--epochs"),
    (["train.save_every=0"], "train.save_every=0 must be >= 1"),
    (["train.log_every=0"], "train.log_every=0 must be >= 1"),
    (["train.max_steps_per_epoch=-1"], "train.max_steps_per_epoch=-1 must be >= 0"),
])
def test_impossible_values_are_errors_not_defaults(tmp_path, capsys, args, expect):
    run = tmp_path / "run"
    try:
        code = main(_cli(tmp_path, run, *args))
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    assert expect in capsys.readouterr().err
    assert not run.exists()


# -- one writer per folder ------------------------------------------------------------------------------------

def _start(tmp_path, run, *extra):
    cmd = [sys.executable, "-m", "videocontrast", *_cli(tmp_path, run, "train.epochs=500", *extra)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # SIGINT back to its default in the child, as in a terminal: a test session started in the background
    # (`.ci/run &`) ignores SIGINT, the child inherits that, and Python then installs no Ctrl-C handler at all
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ckpt = run / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    if not ckpt.exists():
        proc.kill()
        pytest.fail(f"the run wrote no checkpoint: {proc.communicate()[1][-2000:]}")
    return proc


def test_a_second_process_cannot_write_into_a_run_in_use_and_ctrl_c_keeps_the_last_checkpoint(tmp_path, capsys):
    """Two bullets, one training subprocess (they cost seconds each): a second writer is refused while the first
    runs; SIGINT then stops the first at a safe point with exit 130, no traceback, the last checkpoint kept and
    the resume command printed; the resume works (the lock went with the process; that a SIGKILLed run does not
    leave its folder locked either is shown by test_engine's kill-and-resume test)."""
    run = tmp_path / "run"
    first = _start(tmp_path, run)
    try:
        same = ["train.epochs=500", "train.time_limit_s=1"]  # (without the lock it would train along for 1 s)
        for args in (_cli(tmp_path, run, *same), _cli(tmp_path, run, *same, "--resume")):
            assert main(args) == 2
            err = capsys.readouterr().err
            assert "in use by another videocontrast process" in err and f"pid {first.pid}" in err, err
        assert first.poll() is None  # the first run goes on
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 130, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    ckpt = run / "checkpoints" / "last.pt"
    assert str(ckpt) in err and f"videocontrast pretrain --resume --out {run}" in err
    done = load_checkpoint(ckpt)["epoch"]
    assert done >= 1 and f"(epoch {done}) is kept" in err
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["last.pt"]
    assert _epochs(run) == list(range(1, done + 1))  # nothing of the interrupted epoch is left in the metrics
    # the printed command continues the run (here for one more epoch: the time limit may change on resume)
    assert main(["pretrain", "--resume", "--out", str(run), "train.time_limit_s=0.01"]) == 0
    saved = load_checkpoint(ckpt)
    assert saved["epoch"] == done + 1
    # the checkpoint says its time limit stopped it (what a demo's rerun reads to know the budget is spent)
    assert saved["history"][-1].get("time_limit_reached") is True


# -- leftovers of a killed run, full disk -----------------------------------------------------------------------

def test_resume_drops_metrics_past_the_checkpoint_and_stale_temp_files(tmp_path, capsys):
    run = tmp_path / "run"
    pretrain(tiny(tmp_path, "train.epochs=2"), run, quiet=True)
    # what a SIGKILL during epoch 3 leaves: its first records, half a line, a temporary checkpoint
    lines = (run / "metrics.jsonl").read_text().splitlines()
    epoch2 = [json.loads(x) for x in lines if json.loads(x)["epoch"] == 2]
    with open(run / "metrics.jsonl", "a") as f:
        for rec in epoch2:
            f.write(json.dumps({**rec, "epoch": 3}) + "\n")
        f.write('{"kind": "train", "epo')
    tmp = run / "checkpoints" / ".last.pt.tmp999999"
    tmp.write_bytes(b"\0" * 1000)
    capsys.readouterr()
    pretrain(tiny(tmp_path, "train.epochs=3"), run, resume=True)
    assert not tmp.exists()
    err_out = "".join(capsys.readouterr())
    assert "metrics.jsonl" in err_out and ".last.pt.tmp999999" in err_out
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2, 3]
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == sorted(set(steps)), "duplicate step records"


Usage = namedtuple("Usage", "total used free")


def test_a_full_disk_fails_before_the_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("videocontrast.engine.run.shutil.disk_usage",
                        lambda p: Usage(10 << 30, (10 << 30) - (1 << 20), 1 << 20))
    run = tmp_path / "run"
    assert main(_cli(tmp_path, run, "train.epochs=1")) == 2
    err = capsys.readouterr().err
    assert "not enough free space" in err and "MiB free" in err and err.count("\n") == 1
    assert not (run / "checkpoints").exists()


def test_a_failed_checkpoint_write_keeps_the_previous_one_and_no_temp_file(tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_save = torch.save
    calls = []

    def save_fails_the_second_time(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save_fails_the_second_time)
    with pytest.raises(ValueError, match="checkpoint of epoch 1 is kept"):  # RunFolderError: exit 2 in the CLI
        pretrain(tiny(tmp_path, "train.epochs=3"), run, quiet=True)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"]


# -- read-only output, folders created only when the work starts ----------------------------------------------

def test_an_output_under_a_file_fails_before_the_work(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    for args in (_cli(tmp_path, blocker / "run"),
                 ["knn", "--checkpoint", "random", "--out", str(blocker / "ev"), "--config", "demo",
                  f"data.root={tmp_path / 'synthetic'}", *TINY]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "file.txt" in err and "not a folder" in err and err.count("\n") == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_fails_before_the_work(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(_cli(tmp_path, ro / "run")) == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        ro.chmod(0o755)


def test_check_writable_for_other_commands(tmp_path, monkeypatch):
    """The helper `embed` (and any command writing a file) calls before computing anything."""
    from videocontrast.engine import run as runs

    runs.check_writable(tmp_path / "new" / "index.npz", need_bytes=1 << 20)
    assert not (tmp_path / "new").exists()  # checking creates nothing
    monkeypatch.setattr(runs.shutil, "disk_usage", lambda p: Usage(1 << 30, (1 << 30) - (1 << 20), 1 << 20))
    with pytest.raises(runs.RunFolderError, match=r"not enough free space.*1 MiB free.*needs about 100 MiB"):
        runs.check_writable(tmp_path / "index.npz", need_bytes=100 << 20)


def test_an_eval_command_failing_on_its_arguments_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "ev"
    assert main(["linear", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(out), "--config", "demo",
                 f"data.root={tmp_path / 'synthetic'}", *TINY]) == 2
    assert "nope.pt" in capsys.readouterr().err
    assert not out.exists()


def test_pretrain_failing_on_its_data_leaves_no_folder(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", "--out", str(run), "--dataset", "folder", "--root", str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err
    assert not run.exists()


# ----------------------------------------------------------------------------- a demo continued by a rerun

DEMO_TINY = ["data.synthetic_videos_per_class=6", "data.synthetic_frames=12", "data.synthetic_size=32",
             "data.clip_len=4", "data.decode_size=24", "data.size=16", "model.width=8", "model.head_hidden=32",
             "optim.batch_size=8", "data.num_workers=0", "eval.cv_folds=2"]


def test_a_continued_demo_says_which_epochs_were_done_and_reports_its_time_per_run(tmp_path, capsys):
    out = tmp_path / "demo"
    # the time limit stops every run after one epoch: three runs for three epochs
    args = ["demo", "--out", str(out), f"data.root={tmp_path / 'synthetic'}", *DEMO_TINY, "train.epochs=3",
            "train.time_limit_s=0.01"]
    assert main(args) == 0
    first = json.loads((out / "results.json").read_text())["pretrain"]
    assert first["epochs"] == 1 and first["cut_by_time_limit"] is True
    # as if the first demo had been stopped before its report: its pretraining is there, its results.json is not
    (out / "results.json").unlink()
    capsys.readouterr()
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "epoch 1 done, continuing with epoch 2 of 3" in said and "from epoch 1 of 3" not in said
    res = json.loads((out / "results.json").read_text())
    p = res["pretrain"]
    assert p["epochs"] == 2 and p["runs"] == 2 and p["time_limit_stops"] == 2
    assert p["time_s"] == pytest.approx(sum(h["time_s"] for h in p["history"]))
    assert p["time_s_this_run"] == pytest.approx(p["history"][-1]["time_s"])
    assert "each run" in p["time_limit_counts"]
    assert len(res["reruns"]) == 1 and "pretraining continued to epoch 2" in res["reruns"][0]["said"]

    assert main(args) == 0
    said = capsys.readouterr().out
    assert "epochs 1-2 done, continuing with epoch 3 of 3" in said
    res = json.loads((out / "results.json").read_text())
    p = res["pretrain"]
    # finished: not cut now, though the epochs of its three runs add up past the per-run limit
    assert p["epochs"] == 3 and p["cut_by_time_limit"] is False and p["runs"] == 3 and p["time_limit_stops"] == 2
    assert p["time_s"] > p["time_limit_s"] and p["time_s"] == pytest.approx(sum(h["time_s"] for h in p["history"]))
    assert len(res["reruns"]) == 2 and "pretraining continued to epoch 3" in res["reruns"][1]["said"]
    assert res["timings"]["pretrain"] >= p["time_s"]  # every run's seconds, the first's from its epochs
