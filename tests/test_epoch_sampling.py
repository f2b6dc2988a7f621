"""Every epoch draws new temporal views, in every DataLoader worker, through the engine itself.

The frames each item reads are recorded where they are read (the decoder call, or the frame cache's lookup), in
whatever process reads them, so the test sees what the workers really drew rather than what the main process
believes they drew. Per-item randomness is a function of (seed, epoch, index) only: the same frames must come
back with 0, 1 or 2 workers, and a run killed and resumed with workers must draw what an uninterrupted one draws.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from videocontrast.config import load_config
from videocontrast.data import cache as cache_mod
from videocontrast.data import datasets as datasets_mod
from videocontrast.engine.checkpoint import load_checkpoint
from videocontrast.engine.train import TrainingInterrupted, pretrain

EPOCHS = 3
# 16 training videos (8 classes x 2) of 40 frames: a Random-m window of 4 frames plus shifts of up to 4 has ~30
# places to go, so two epochs drawing the same frames for a video by chance is rare; batch 8 uses every video
# every epoch.
VIDEOS = 16
SETUP = ["data.synthetic_videos_per_class=3", "data.synthetic_frames=40", "data.synthetic_size=24",
         "data.clip_len=4", "data.decode_size=20", "data.size=16", "aug.max_shift=4", "model.width=8",
         "model.head_hidden=32", "optim.batch_size=8", "optim.warmup_epochs=0", "train.deterministic=true",
         "train.log_every=1", f"train.epochs={EPOCHS}"]


@pytest.fixture
def recorded(monkeypatch, tmp_path):
    """Every frame read, from any process, appended to a file as ``{"path", "frames"}`` lines (fork start: the
    workers inherit the patched functions)."""
    log = tmp_path / "reads.jsonl"
    real_read, real_lookup = datasets_mod.read_frames, cache_mod.FrameCache.frames

    def note(path, indices):
        with open(log, "a") as f:  # one short write per line: lines from several processes do not interleave
            f.write(json.dumps({"path": str(path), "frames": np.asarray(indices).tolist(), "pid": os.getpid()})
                    + "\n")

    def read_frames(path, indices, *args, **kwargs):
        note(path, indices)
        return real_read(path, indices, *args, **kwargs)

    def lookup(self, path, indices):
        note(path, indices)
        return real_lookup(self, path, indices)

    monkeypatch.setattr(datasets_mod, "read_frames", read_frames)
    monkeypatch.setattr(cache_mod.FrameCache, "frames", lookup)

    def reads() -> dict[str, list[tuple[int, ...]]]:
        """path -> the frame sets read for it, in order (one per epoch); the log is emptied."""
        out: dict[str, list[tuple[int, ...]]] = defaultdict(list)
        if log.exists():
            for line in log.read_text().splitlines():
                r = json.loads(line)
                out[f"{Path(r['path']).parent.name}/{Path(r['path']).name}"].append(tuple(r["frames"]))
            log.unlink()
        return dict(out)

    return reads


def run(tmp_path, name, *extra, resume=False, monitor=None):
    cfg = load_config("demo", [f"data.root={tmp_path / 'synthetic'}", *SETUP, *extra])
    return pretrain(cfg, tmp_path / name, resume=resume, quiet=True, monitor=monitor)


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_workers_draw_new_frames_every_epoch_and_the_same_as_without_workers(tmp_path, recorded, cache):
    draws = {}
    for workers in (0, 1, 2):
        run(tmp_path, f"w{workers}", f"data.num_workers={workers}", f"data.cache={cache}")
        draws[workers] = recorded()
    for workers, per_video in draws.items():
        assert len(per_video) == VIDEOS and all(len(v) == EPOCHS for v in per_video.values()), (workers, per_video)
        changed = sum(len(set(sets)) > 1 for sets in per_video.values())
        # Before the fix: 0 of 16 with workers (every epoch read epoch 0's frames), 16 of 16 without.
        assert changed >= VIDEOS - 2, f"{workers} workers: {changed} of {VIDEOS} videos got new frames in a later epoch"
    assert draws[1] == draws[0] and draws[2] == draws[0], "the frames drawn depend on the number of workers"


def test_two_runs_with_the_same_seed_draw_the_same_sequence_and_another_seed_does_not(tmp_path, recorded):
    run(tmp_path, "a", "data.num_workers=2")
    a = recorded()
    run(tmp_path, "b", "data.num_workers=2")
    b = recorded()
    run(tmp_path, "c", "data.num_workers=2", "train.seed=1")
    c = recorded()
    assert a == b
    assert sum(a[k] != c[k] for k in a) >= VIDEOS - 2


# aug.on_device=false: the spatial augmentation runs in the workers too, and must draw from (seed, epoch, index).
@pytest.mark.parametrize("on_device", ["true", "false"])
def test_resume_with_workers_draws_and_trains_what_an_uninterrupted_run_does(tmp_path, recorded, on_device):
    ref = run(tmp_path, "ref", "data.num_workers=2", f"aug.on_device={on_device}")
    full = recorded()
    # The same run killed (Ctrl-C) at the end of its second epoch, before that epoch's checkpoint, so that the
    # checkpoint of epoch 1 is kept; then continued with the same workers.
    def ctrl_c_after_epoch_2(_backbone, calls=[]):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return {}

    with pytest.raises(TrainingInterrupted):
        run(tmp_path, "cut", "data.num_workers=2", f"aug.on_device={on_device}", "train.knn_every=1",
            monitor=ctrl_c_after_epoch_2)
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["epoch"] == 1
    first = recorded()
    resumed = run(tmp_path, "cut", "data.num_workers=2", f"aug.on_device={on_device}", resume=True)
    rest = recorded()
    assert {k: v[:2] for k, v in first.items()} == {k: v[:2] for k, v in full.items()}
    assert {k: first[k][:1] + rest[k] for k in full} == full, "the resumed run drew other frames"
    a, b = load_checkpoint(ref["checkpoint"])["model"], load_checkpoint(resumed["checkpoint"])["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs between the resumed and the uninterrupted run"
