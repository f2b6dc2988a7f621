"""Data-pipeline throughput on real UCF101 AVIs (ucf101-mini): two-view 16x112x112 clips per second.

Not a test. Run from the repo root::

    PYTHONPATH=. python bench/bench_data.py [--seconds 4] [--data ../shared/data]

Rows (one core unless noted; torch uses one thread):
  naive        PyAV decodes the whole file and converts every frame to RGB, then picks 16 and resizes
               (the cost read_frames avoids)
  (a) decode   read_frames of one random 16-frame clip, short side resized to 128 on decode
  (b) two-view decode the union of two temporally shifted 16-frame views once (VideoDataset item),
               then per view a 112x112 random resized crop + colour augmentation (ClipAugment, CPU)
  (c) loader   the same VideoDataset items (no augmentation) through a DataLoader, batch 8,
               with 0, 1 and 2 worker processes
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader

from videocontrast.data.datasets import VideoDataset, VideoRecord
from videocontrast.data.decode import probe_video, read_frames

CLIP_LEN, DECODE_SIZE, CROP = 16, 128, 112


def _timed(fn, seconds: float) -> tuple[int, float]:
    """Call fn() until `seconds` pass; returns (calls, elapsed)."""
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        fn()
        n += 1
    return n, elapsed


def _two_views_fn():
    try:
        from videocontrast.transforms.temporal import temporal_views

        def views(num_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
            return list(temporal_views("shift", num_frames, CLIP_LEN, rng, max_shift=8))

        return views, "transforms.temporal shift"
    except ImportError:  # the temporal module is someone else's and may not exist yet
        def views(num_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
            start = int(rng.integers(0, max(num_frames - CLIP_LEN, 0) + 1))
            shifts = rng.integers(-8, 9, 2)
            return [np.clip(np.arange(CLIP_LEN) + start + s, 0, num_frames - 1) for s in shifts]

        return views, "local shift"


def _augment():
    try:
        from videocontrast.transforms.spatial import ClipAugment

        aug = ClipAugment(size=CROP)
        return (lambda v: aug(v)), "ClipAugment"  # (V, T, C, H, W) uint8 -> (V, C, T, 112, 112) float
    except ImportError:
        def crop(v: torch.Tensor) -> torch.Tensor:
            y, x = np.random.randint(0, v.shape[-2] - CROP + 1), np.random.randint(0, v.shape[-1] - CROP + 1)
            return v[..., y:y + CROP, x:x + CROP].float().div(255).permute(0, 2, 1, 3, 4)

        return crop, "random crop only"


class _Views:
    """Picklable two-view sampler for DataLoader workers."""

    def __call__(self, num_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
        return _two_views_fn()[0](num_frames, rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--seconds", type=float, default=4.0, help="time per row")
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = sorted(str(p) for p in (args.data / "ucf101-mini" / "videos").glob("*/*.avi"))
    if not files:
        sys.exit(f"no UCF101 AVIs under {args.data / 'ucf101-mini' / 'videos'}; pass --data")
    rng = np.random.default_rng(0)

    t0 = time.perf_counter()
    infos = {f: probe_video(f) for f in files}
    probe_ms = (time.perf_counter() - t0) / len(files) * 1e3
    print(f"{len(files)} UCF101 AVIs (Xvid 320x240, median {np.median([i.num_frames for i in infos.values()]):.0f} frames); "
          f"probe_video {probe_ms:.2f} ms/file; PyAV {av.__version__}, torch {torch.__version__}, 1 torch thread\n")
    rows: list[tuple[str, float, str]] = []

    def random_clip() -> tuple[str, np.ndarray]:
        f = files[int(rng.integers(len(files)))]
        n = infos[f].num_frames
        start = int(rng.integers(0, max(n - CLIP_LEN, 0) + 1))
        return f, np.arange(start, start + CLIP_LEN) % n

    def naive() -> None:
        f, idx = random_clip()
        with av.open(f) as c:
            frames = [fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)]
        clip = torch.from_numpy(np.stack([frames[i] for i in idx])).permute(0, 3, 1, 2).float()
        torch.nn.functional.interpolate(clip, size=(DECODE_SIZE, 171), mode="bilinear", antialias=False)

    n, s = _timed(naive, args.seconds)
    rows.append(("naive: full decode + pick 16 (1 view)", n / s, "clips/s"))

    def decode_only() -> None:
        f, idx = random_clip()
        read_frames(f, idx, size=DECODE_SIZE, info=infos[f])

    n, s = _timed(decode_only, args.seconds)
    rows.append(("(a) read_frames 16 frames, short side 128 (1 view)", n / s, "clips/s"))
    rows.append(("    = two-view clips/s if both views decoded separately", n / s / 2, "2-view/s"))

    views_fn, views_name = _two_views_fn()
    augment, aug_name = _augment()
    records = [VideoRecord(f, 0) for f in files]
    ds = VideoDataset(records, ["x"], _Views(), decode_size=DECODE_SIZE)
    ds._infos.update({i: infos[f] for i, f in enumerate(files)})  # probe cost reported above

    def two_view_item() -> None:
        ds[int(rng.integers(len(ds)))]

    n, s = _timed(two_view_item, args.seconds)
    rows.append((f"(b1) dataset item: union decode of 2 views ({views_name})", n / s, "2-view/s"))

    def two_view_aug() -> None:
        out = augment(ds[int(rng.integers(len(ds)))]["video"])
        assert out.shape[-2:] == (CROP, CROP)

    n, s = _timed(two_view_aug, args.seconds)
    rows.append((f"(b2) + {aug_name} to 112x112 on CPU", n / s, "2-view/s"))

    for workers in (0, 1, 2):
        loader = DataLoader(ds, batch_size=8, shuffle=True, num_workers=workers,
                            persistent_workers=False, generator=torch.Generator().manual_seed(0))
        batches, t0, start = 0, None, time.perf_counter()
        it = iter(loader)
        next(it)  # exclude worker start-up
        t0 = time.perf_counter()
        clips = 0
        for batch in it:
            clips += batch["video"].shape[0]
            if time.perf_counter() - t0 > args.seconds:
                break
        rows.append((f"(c) DataLoader batch 8, {workers} worker(s) (startup {t0 - start:.1f} s)",
                     clips / (time.perf_counter() - t0), "2-view/s"))
        del it, loader

    width = max(len(r[0]) for r in rows)
    print(f"{'pipeline':<{width}}  {'rate':>8}")
    for name, rate, unit in rows:
        print(f"{name:<{width}}  {rate:8.1f} {unit}")
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\npeak RSS: main process {self_mb:.0f} MiB, largest worker {child_mb:.0f} MiB")
    print("note: the machine's cores are shared with other jobs; rates vary by ~20% between runs.")


if __name__ == "__main__":
    main()
