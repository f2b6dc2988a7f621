"""Throughput of the batched spatial augmentation vs a per-clip torchvision.transforms.v2 loop.

Both sides do the same job: uint8 ``(B, T, 3, H, W)`` clips -> random resized crop to ``size``, flip (p=0.5),
colour jitter (0.8, 0.8, 0.8, 0.2; p=0.8), grayscale (p=0.2), Gaussian blur (kernel ~10% of size, sigma in
[0.1, 2]; p=0.5), float + Kinetics normalisation, model layout ``(B, C, T, size, size)``.

- ``ClipAugment`` chunk / frame: one call for the whole batch (videocontrast.transforms.spatial); ``u8``: with
  ``uint8_resize=True`` (crop + resize on uint8 first, then colour on the small float crop; CPU only).
- ``tv-loop``: ``torchvision.transforms.v2.Compose`` called on each ``(T, C, H, W)`` clip (a ``tv_tensors.Video``,
  so one parameter draw per clip = chunk mode), on uint8 until the final ``ToDtype``, as a loader would.

Usage::

    PYTHONPATH=. python bench/bench_augment.py                      # CPU, 1 and 2 threads, B=32
    PYTHONPATH=. python bench/bench_augment.py --device cuda        # ClipAugment on the GPU (tv-loop on CPU)
    PYTHONPATH=. python bench/bench_augment.py --batch 1 --repeats 20

Timings on a shared machine are noisy: the methods are interleaved within each repeat and the median is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from videocontrast.transforms.functional import KINETICS_MEAN, KINETICS_STD, blur_kernel_size

from videocontrast.transforms.spatial import ClipAugment


def torchvision_loop(size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Per-clip torchvision v2 pipeline with the SimCLR parameters; ``(B, T, C, H, W)`` -> ``(B, C, T, s, s)``."""
    k = blur_kernel_size(size)
    pipeline = v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
        v2.RandomHorizontalFlip(0.5),
        v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        v2.RandomGrayscale(0.2),
        v2.RandomApply([v2.GaussianBlur(k, sigma=(0.1, 2.0))], p=0.5),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(KINETICS_MEAN, KINETICS_STD),
    ])

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([pipeline(tv_tensors.Video(clip)).permute(1, 0, 2, 3) for clip in x])

    return run


def time_once(fn: Callable[[], torch.Tensor], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=171)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="device for ClipAugment; the torchvision loop stays on CPU")
    args = parser.parse_args()

    device = torch.device(args.device)
    cpu_x = torch.randint(0, 256, (args.batch, args.frames, 3, args.height, args.width), dtype=torch.uint8)
    dev_x = cpu_x.to(device)
    methods = {
        "ClipAugment chunk": (lambda aug=ClipAugment(args.size, mode="chunk"): aug(dev_x), device),
        "ClipAugment frame": (lambda aug=ClipAugment(args.size, mode="frame"): aug(dev_x), device),
        "ClipAugment chunk u8": (lambda aug=ClipAugment(args.size, mode="chunk", uint8_resize=True): aug(dev_x),
                                 device),
        "ClipAugment frame u8": (lambda aug=ClipAugment(args.size, mode="frame", uint8_resize=True): aug(dev_x),
                                 device),
        "tv-loop (chunk)": (lambda run=torchvision_loop(args.size): run(cpu_x), torch.device("cpu")),
    }
    print(f"batch {tuple(cpu_x.shape)} uint8 -> {args.size}x{args.size}; ClipAugment on {device}; "
          f"torch {torch.__version__}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for fn, dev in methods.values():  # warm-up (allocator, kernels)
            time_once(fn, dev)
        times: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(args.repeats):
            for name, (fn, dev) in methods.items():
                times[name].append(time_once(fn, dev))
        base = args.batch / statistics.median(times["tv-loop (chunk)"])
        for name, ts in times.items():
            rate = args.batch / statistics.median(ts)
            print(f"threads={threads}  {name:20s} {rate:8.1f} clips/s  "
                  f"(median {statistics.median(ts) * 1e3:7.1f} ms/batch)  x{rate / base:.2f} vs tv-loop")


if __name__ == "__main__":
    main()
