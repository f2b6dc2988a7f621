"""The training engine under two gloo processes (what torchrun runs) against one process, through `finetune`.

Fine-tuning's backbone learns at ``eval.finetune_backbone_lr_ratio`` of the classifier's rate (the thesis's lr/10
rule). Under DistributedDataParallel the parameters are named ``module.backbone...``; the optimiser must still
find the backbone. With the augmentation off and a BatchNorm-free backbone, two processes with half the batch
each see the same clips per step as one process with the whole batch, so they must end at the same weights.
Each process loads with a DataLoader worker, and the frames those workers read are recorded: every epoch must
draw its own clip of each video, on every rank, the same clips as one process draws.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from videocontrast import dist
from videocontrast.build.components import ensure_synthetic, labeled_dataset
from videocontrast.config import load_config
from videocontrast.engine import loop as engine
from videocontrast.engine.checkpoint import load_checkpoint
from videocontrast.eval.finetune import finetune

WORLD = 2
RATIO = 0.1


class FlatLinear(nn.Module):
    """A BatchNorm-free backbone: its features do not depend on how the batch is split over processes."""

    feature_dim = 6

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.fc = nn.Linear(3 * 4 * 16 * 16, self.feature_dim)

    def forward(self, x):  # (B, 3, 4, 16, 16) -> (B, 6)
        return self.fc(x.flatten(1))


def _cfg(root):
    # every spatial transform off: the clips a sample gives do not depend on the rank that draws them
    return load_config("demo", [
        f"data.root={root}", "data.synthetic_videos_per_class=2", "data.synthetic_frames=12",
        "data.synthetic_size=20", "data.input=rgb", "data.clip_len=4", "data.decode_size=16", "data.size=16",
        "data.num_workers=1", "data.cache=none", "aug.crop=false", "aug.flip=false", "aug.jitter=false",
        "aug.gray=false", "aug.blur=false", "eval.finetune_augment=resize", "optim.batch_size=8", "train.deterministic=true", "train.log_every=1",
        "eval.finetune_epochs=2", "eval.finetune_lr=0.5", "eval.finetune_optimizer=sgd",
        f"eval.finetune_backbone_lr_ratio={RATIO}", "eval.finetune_warmup_epochs=0"])


def _finetune(root, out, reads: Path):
    """Fine-tune into ``out``; the clips of every batch the loop receives (decoded by the loader workers, which a
    spawned process starts with spawn, so a patch in the workers would not survive) are appended to ``reads``, as
    one JSON line per clip: its video and a digest of its uint8 frames."""
    real = engine._model_inputs

    def recorded(state, batch, micro_step):
        with open(reads, "a") as f:
            for path, clip in zip(batch["path"], batch["video"]):
                digest = hashlib.sha1(clip.numpy().tobytes()).hexdigest()
                f.write(json.dumps({"video": Path(path).name, "frames": digest}) + "\n")
        return real(state, batch, micro_step)

    engine._model_inputs = recorded
    try:
        cfg = _cfg(root)
        train = labeled_dataset(cfg, "train", "finetune")
        return finetune(FlatLinear(), cfg, out, train, quiet=True)
    finally:
        engine._model_inputs = real


def _worker(rank, tmp, root):
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    dist.init_distributed(backend="gloo", init_method=f"file://{tmp}/rendezvous")
    _finetune(root, f"{tmp}/ddp", Path(tmp) / f"reads-ddp-{rank}.jsonl")
    torch.distributed.destroy_process_group()


def _reads(*files: Path) -> dict[str, list[str]]:
    """video -> the frame sets read for it, sorted (which rank read which epoch's clip does not matter here)."""
    out: dict[str, list[str]] = defaultdict(list)
    for f in files:
        for line in f.read_text().splitlines():
            r = json.loads(line)
            out[r["video"]].append(r["frames"])
    return {k: sorted(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp-finetune")
    root = ensure_synthetic(_cfg(tmp / "synthetic"))  # generated once, before the processes start
    mp.spawn(_worker, args=(str(tmp), str(root)), nprocs=WORLD, join=True)
    _finetune(root, tmp / "single", tmp / "reads-single.jsonl")
    out = {name: load_checkpoint(tmp / name / "checkpoints" / "last.pt") for name in ("single", "ddp")}
    out["reads"] = {"single": _reads(tmp / "reads-single.jsonl"),
                    "ddp": _reads(*(tmp / f"reads-ddp-{r}.jsonl" for r in range(WORLD)))}
    return out


def _group_scales(ckpt) -> list[float]:
    return sorted({g["lr_scale"] for g in ckpt["optimizer"]["param_groups"]})


def test_two_processes_keep_the_backbone_at_its_share_of_the_learning_rate(runs):
    assert _group_scales(runs["single"]) == [RATIO, 1.0]
    # before the fix: [1.0], every group at the head's rate
    assert _group_scales(runs["ddp"]) == [RATIO, 1.0]
    groups = runs["ddp"]["optimizer"]["param_groups"]
    backbone = [g for g in groups if g["lr_scale"] == RATIO]
    assert sum(len(g["params"]) for g in backbone) == 2  # the backbone's weight and bias


def test_two_processes_fine_tune_to_the_weights_of_one_with_the_same_global_batch(runs):
    single, ddp = runs["single"]["model"], runs["ddp"]["model"]
    assert single.keys() == ddp.keys()
    start = FlatLinear().state_dict()
    assert not torch.allclose(single["backbone.fc.weight"], start["fc.weight"]), "the backbone did not move"
    for k in single:
        torch.testing.assert_close(ddp[k], single[k], rtol=1e-4, atol=1e-6, msg=f"{k} differs")


def test_every_rank_draws_each_epochs_own_clip_in_its_loader_workers(runs):
    single, ddp = runs["reads"]["single"], runs["reads"]["ddp"]
    assert len(single) == 8 and all(len(v) == 2 for v in single.values())  # 2 epochs, every video in each
    assert sum(v[0] != v[1] for v in single.values()) >= 6, "the epochs drew the same clips"
    # (the DataLoader workers of a spawned process are spawned too: the epoch reaches them through shared memory)
    # Before the fix the workers of both ranks drew epoch 0's clip in epoch 1 too.
    assert ddp == single
