"""Two streams, fused at the features: the linear probe on an RGB-pretrained and a residual-pretrained encoder's
features of the same clips, concatenated, next to each stream alone (README "Real clips", issue 11).

Not a test. Both checkpoints must come from the same dataset and clip settings (``data.clip_len``, ``stride``,
``eval_clips``), so that row i of both feature sets is the same clip; the script checks that. Each stream's
features are standardised by the probe's scaler, so neither dominates by scale::

    D=../shared/data/ucf101-mini; A="--dataset ucf101 --root $D/videos --splits $D/ucfTrainTestlist --split 1"
    videocontrast pretrain --config demo-real $A --out runs/rgb train.epochs=15
    videocontrast pretrain --config demo-real $A --out runs/res train.epochs=15 data.input=residual
    PYTHONPATH=. python bench/two_stream_probe.py runs/rgb/checkpoints/last.pt runs/res/checkpoints/last.pt \\
        --cache runs/two-stream-cache
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from videocontrast.engine.device import resolve_device
from videocontrast.eval.features import same_clips
from videocontrast.eval.linear import linear_probe
from videocontrast.build.encoder import load_weights
from videocontrast.eval.run import class_names, features


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rgb", help="checkpoint of the RGB stream")
    ap.add_argument("residual", help="checkpoint of the residual (frame-difference) stream")
    ap.add_argument("--cache", type=Path, default=Path("runs/two-stream-cache"), help="feature cache folder")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    encoders = {"rgb": load_weights(args.rgb, None, device), "residual": load_weights(args.residual, None, device)}
    feats = {name: {sub: features(enc, sub, device, args.cache) for sub in ("train", "test")}
             for name, enc in encoders.items()}
    for sub in ("train", "test"):
        if not same_clips(feats["rgb"][sub], feats["residual"][sub]):
            raise SystemExit(f"the two checkpoints' {sub} clips differ: pretrain both on the same dataset and clip "
                             "settings")
    feats["two streams"] = {sub: {**feats["rgb"][sub], "feats": np.concatenate(
        [feats["rgb"][sub]["feats"], feats["residual"][sub]["feats"]], axis=1)} for sub in ("train", "test")}
    cfg = encoders["rgb"].cfg
    names = class_names(cfg)
    print("| features | linear top-1 (clip) | video top-1 |\n|---|---|---|")
    for name, f in feats.items():
        r = linear_probe(f["train"], f["test"], names, Cs=cfg.eval.linear_cs, cv_folds=cfg.eval.cv_folds,
                         seed=cfg.train.seed)
        print(f"| {name} | {100 * r['top1']:.1f} | {100 * r['video_top1']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
