"""Data-pipeline epochs per CPU-minute with and without the decoded-frame cache (``data.cache``).

Not a test. Builds the pretraining dataset of a preset exactly as ``videocontrast pretrain`` does and iterates
its DataLoader for whole epochs in this process (``num_workers=0``, so all CPU time is this process's), once with
``data.cache=none`` and once with ``data.cache=memory``; the model is left out, so this is the data side of an
epoch (decode + temporal sampling; the demo presets augment on the training device)::

    PYTHONPATH=. python bench/bench_cache.py --config demo --epochs 3
    PYTHONPATH=. python bench/bench_cache.py --config demo-real --epochs 2 --dataset ucf101 \\
        --root ../shared/data/ucf101-mini/videos --splits ../shared/data/ucf101-mini/ucfTrainTestlist
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import torch
from torch.utils.data import DataLoader

from videocontrast.build.components import dataset_from_config
from videocontrast.config import load_config


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="demo")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--dataset")
    p.add_argument("--root")
    p.add_argument("--splits")
    args = p.parse_args()
    torch.set_num_threads(1)
    over = [f"data.{k}={v}" for k in ("dataset", "root", "splits") if (v := getattr(args, k))]
    print(f"{args.config}: data side of a pretraining epoch (DataLoader, 0 workers, batch of the preset), "
          f"{args.epochs} epochs each, one process")
    rates = {}
    for mode in ("none", "memory"):
        cfg = load_config(args.config, over + [f"data.cache={mode}"])
        c0, w0 = cpu_s(), time.perf_counter()
        with tempfile.TemporaryDirectory() as run_dir:
            ds = dataset_from_config(cfg, "train", "pretrain", run_dir=run_dir)
            fill = cpu_s() - c0
            loader = DataLoader(ds, batch_size=min(cfg.optim.batch_size, len(ds)), shuffle=True, num_workers=0)
            c1 = cpu_s()
            for epoch in range(args.epochs):
                ds.set_epoch(epoch)
                for _ in loader:
                    pass
            per_epoch = (cpu_s() - c1) / args.epochs
        rates[mode] = 60 / per_epoch
        print(f"data.cache={mode:<6}  setup+fill {fill:6.1f} CPU-s   epoch {per_epoch:6.2f} CPU-s   "
              f"{60 / per_epoch:7.1f} epochs/CPU-minute   (wall {time.perf_counter() - w0:.0f} s)")
    print(f"cache speed-up of the data side: {rates['memory'] / rates['none']:.1f}x")


if __name__ == "__main__":
    main()
