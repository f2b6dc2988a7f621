"""Fine-tuning's and the supervised baseline's training augmentation (``eval.finetune_augment``): the same runs with
each choice, same seed and epochs, on frames decoded once and shared by every run and evaluation.

Not a test. Two measurements on a labeled dataset, each run what the commands run (``eval.finetune.finetune`` on
the training engine), only the decoding shared:

* ``supervised``: the demo's supervised baseline (``--supervised-config``'s backbone at random init, cross-entropy
  on the training labels, backbone at the classifier's lr, as ``eval.run.train_supervised``), scored as the demo
  scores it: the linear probe on its frozen backbone features (``videocontrast linear --checkpoint supervised``).
* ``finetune``: ``videocontrast finetune --checkpoint CHECKPOINT`` (backbone lr = classifier lr x
  ``eval.finetune_backbone_lr_ratio``) on ``--finetune-config``, scored by the fine-tuned classifier on the test
  split (clip and video top-1).

``pretrain`` is the augmentation every such run used before ``eval.finetune_augment`` existed (pretraining's
``aug.*``). The test split only scores; nothing is chosen by it::

    D=../shared/data/ucf101-mini; A="--dataset ucf101 --root $D/videos --splits $D/ucfTrainTestlist --split 1"
    PYTHONPATH=. python bench/finetune_augment.py $A --out runs/ft-augment --epochs 8
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from torch.utils.data import DataLoader

from videocontrast.build.components import (backbone_from_config, build_eval_transform, describe_augment, finetune_aug,
                                 labeled_dataset)
from videocontrast.config import FINETUNE_AUGMENTS, load_config
from videocontrast.data.cache import attach_cache
from videocontrast.engine.device import resolve_device
from videocontrast.eval.features import extract_features
from videocontrast.eval.finetune import finetune
from videocontrast.eval.linear import linear_probe
from videocontrast.build.encoder import load_weights
from videocontrast.eval.run import class_names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ucf101")
    ap.add_argument("--root", required=True)
    ap.add_argument("--splits", default=None)
    ap.add_argument("--split", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True, help="run folders and results.json (a new folder)")
    ap.add_argument("--epochs", type=int, default=8, help="eval.finetune_epochs of every run")
    ap.add_argument("--augments", nargs="+", default=["pretrain", "crop"], choices=FINETUNE_AUGMENTS)
    ap.add_argument("--supervised-config", default="demo-real")
    ap.add_argument("--finetune-config", default="cpu-small")
    ap.add_argument("--checkpoint", default="random", help="what --finetune-config fine-tunes (default: random init)")
    ap.add_argument("--only", nargs="+", default=["supervised", "finetune"], choices=["supervised", "finetune"])
    ap.add_argument("overrides", nargs="*", help="key=value settings for both configs (e.g. train.seed=1)")
    args = ap.parse_args()
    flags = [f"data.dataset={args.dataset}", f"data.root={args.root}", f"data.split={args.split}",
             f"eval.finetune_epochs={args.epochs}", *([f"data.splits={args.splits}"] if args.splits else []),
             *args.overrides]
    presets = {"supervised": args.supervised_config, "finetune": args.finetune_config}
    base = {kind: load_config(presets[kind], flags) for kind in args.only}
    sizes = {c.data.decode_size for c in base.values()}
    if len(sizes) != 1:
        raise SystemExit(f"the two configs decode at different sizes ({sorted(sizes)}): they cannot share frames")
    device = resolve_device(next(iter(base.values())).train.device)
    args.out.mkdir(parents=True, exist_ok=False)

    # Every frame decoded once: one cache per subset, shared by every dataset built below (the cache holds whole
    # videos at the decode box, so any clip setting indexes it).
    t0 = time.perf_counter()
    any_cfg = next(iter(base.values()))
    caches = {}
    for subset in ("train", "test"):
        ds = labeled_dataset(any_cfg, subset, "eval")
        ds.drop_unreadable(f"in the '{subset}' subset")
        attach_cache(ds, "memory")
        caches[subset] = ds.frame_cache
    decode_s = time.perf_counter() - t0

    def eval_loader(cfg, subset):
        ds = labeled_dataset(cfg, subset, "eval")
        ds.on_bad = "mark"
        ds.drop_unreadable(f"in the '{subset}' subset")
        ds.frame_cache = caches[subset]
        return DataLoader(ds, batch_size=min(cfg.eval.batch_size, len(ds)), shuffle=False,
                          num_workers=cfg.data.num_workers)

    results = {"decode_s": decode_s, "epochs": args.epochs, "runs": []}
    for kind in args.only:
        for augment in args.augments:
            cfg = load_config(presets[kind], [*flags, f"eval.finetune_augment={augment}"])
            cfg.train.knn_every = 0
            train_set = labeled_dataset(cfg, "train", "finetune")
            train_set.frame_cache = caches["train"]
            t = time.perf_counter()
            if kind == "supervised":
                backbone = backbone_from_config(cfg, seed=cfg.train.seed).to(device)
                res = finetune(backbone, cfg, args.out / f"{kind}-{augment}", train_set, None, backbone_lr_ratio=1.0,
                               kind="supervised", quiet=True)
                transform = build_eval_transform(cfg).to(device)
                feats = {s: extract_features(backbone, eval_loader(cfg, s), transform, device)
                         for s in ("train", "test")}
                lin = linear_probe(feats["train"], feats["test"], class_names(cfg), Cs=cfg.eval.linear_cs,
                                   cv_folds=cfg.eval.cv_folds, seed=cfg.train.seed)
                scores = {"linear_top1": lin["top1"], "linear_video_top1": lin["video_top1"], "C": lin["protocol"]["C"]}
            else:
                backbone = load_weights(args.checkpoint, cfg, device).module
                res = finetune(backbone, cfg, args.out / f"{kind}-{augment}", train_set, eval_loader(cfg, "test"),
                               quiet=True)
                scores = {"top1": res["top1"], "video_top1": res["video_top1"]}
            row = {"measurement": kind, "config": presets[kind], "augment": augment,
                   "augment_spatial": describe_augment(dataclasses.replace(cfg, aug=finetune_aug(cfg))),
                   **scores, "final_train_loss": res["history"][-1]["loss"], "seconds": time.perf_counter() - t}
            results["runs"].append(row)
            (args.out / "results.json").write_text(json.dumps(results, indent=2))
            print(json.dumps(row), flush=True)
    print("| measurement | config | eval.finetune_augment | top-1 (clip) | top-1 (video) | final train loss |")
    print("|---|---|---|---|---|---|")
    for r in results["runs"]:
        clip, video = (r["linear_top1"], r["linear_video_top1"]) if r["measurement"] == "supervised" else \
            (r["top1"], r["video_top1"])
        print(f"| {r['measurement']} | {r['config']} | {r['augment']} | {100 * clip:.1f} | {100 * video:.1f} | "
              f"{r['final_train_loss']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
