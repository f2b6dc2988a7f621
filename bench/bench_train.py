"""Training throughput: the whole pipeline vs the model step alone, side by side in one run.

    python bench/bench_train.py --config demo                       # synthetic, small 3D ResNet, 8x32x32
    python bench/bench_train.py --config cpu-small --dataset ucf101 --root ../shared/data/ucf101-mini \
        --splits ../shared/data/ucf101-mini/ucfTrainTestlist model.backbone=r3d_18 data.size=56 data.decode_size=64

Prints two-view clips/s of (a) the model step alone on random tensors of the training shape and (b) the
full pipeline (decode, temporal views, batched augmentation, model step), their ratio (goal >= 0.9), peak
RSS and the model step's achieved GFLOP/s next to this machine's fp32 matrix-multiply rate.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time

import torch


def matmul_gflops(n: int = 1024, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def model_step_rate(cfg, steps: int) -> tuple[float, float]:
    """Two-view clips/s and GFLOP/s of forward+backward+optimiser step on random input."""
    from torch.utils.flop_counter import FlopCounterMode

    from videocontrast.engine.optim import build_optimizer
    from videocontrast.build.components import method_from_config

    model = method_from_config(cfg)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    opt = build_optimizer(model, cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay)
    b, d = cfg.optim.batch_size, cfg.data
    x1 = torch.randn(b, 3, d.clip_len, d.size, d.size)
    x2 = torch.randn_like(x1)

    def step():
        loss, _ = model(x1, x2)
        opt.zero_grad()
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as fc:
        step()
    flops = fc.get_total_flops()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t) / steps
    return b / dt, flops / dt / 1e9


def main() -> None:
    from videocontrast.cli.commands import _build_config
    from videocontrast.cli.parser import _config_flags, _dataset_flags
    from videocontrast.engine.train import pretrain

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _dataset_flags(p)
    _config_flags(p)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    # Two short epochs: the second one runs with warm, persistent loader workers (steady state).
    cfg = _build_config(args, ["train.epochs=2", f"train.max_steps_per_epoch={args.steps}"])
    print(f"torch threads {torch.get_num_threads()}; config {args.config}; {cfg.model.backbone} "
          f"{cfg.data.clip_len}x{cfg.data.size}x{cfg.data.size}, batch {cfg.optim.batch_size}, "
          f"workers {cfg.data.num_workers}")
    mm = matmul_gflops()
    model_rate, gflops = model_step_rate(cfg, args.steps)
    out = tempfile.mkdtemp(prefix="vc-bench-")
    try:
        res = pretrain(cfg, out, quiet=True)
        pipe_rate = res["history"][-1]["clips_per_s"]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"fp32 matmul:            {mm:8.1f} GFLOP/s")
    print(f"model step alone:       {model_rate:8.1f} two-view clips/s  ({gflops:.1f} GFLOP/s achieved)")
    print(f"full pipeline:          {pipe_rate:8.1f} two-view clips/s (second epoch: warm loader workers)")
    print(f"pipeline / model ratio: {pipe_rate / model_rate:8.2f}   (goal >= 0.9)")
    print(f"peak RSS (main):        {rss:8.0f} MiB")


if __name__ == "__main__":
    main()
