"""Data-pipeline throughput on real UCF101 AVIs (ucf101-mini): two-view 16x112x112 clips per second.

Not a test. Run from the repo root::

    PYTHONPATH=. python bench/bench_data.py [--seconds 4] [--data ../shared/data] [--json]

The headline is the side-by-side table (one process, one core, the two pipelines interleaved in rounds so
that the load of a shared machine hits both alike): the whole two-view item, decode + temporal sampling +
spatial augmentation to 2 x 16x112x112, for

  ours         VideoDataset item (union decode of the two views) with ClipAugment(uint8_resize=True)
               (crop + resize on uint8, then colour on the float crop) as its transform
  peer         the same decoded frames (VideoDataset item, no transform), then torchvision.transforms.v2
               (RandomResizedCrop, flip, ColorJitter, grayscale, blur, ToDtype, Normalize) on each view
  pytorchvideo its LabeledVideoDataset + the same v2 transform, when pytorchvideo is installed

``--json`` also prints one JSON object (last line) with ``two_view_cpu_aug_per_core`` = our rate (two-view
items/s on one core) and the peer's rate and the ratio.

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
import json
import resource
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader

from videocontrast.data.datasets import VideoDataset

from videocontrast.data.splits import VideoRecord
from videocontrast.data.decode import probe_video, read_frames

CLIP_LEN, DECODE_SIZE, CROP = 16, 128, 112


def _timed(fn, seconds: float) -> tuple[int, float]:
    """Call fn() until `seconds` pass; returns (calls, elapsed)."""
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        fn()
        n += 1
    return n, elapsed


def _interleaved(fns: dict[str, object], seconds: float, rounds: int = 4) -> dict[str, float]:
    """Rates (calls/s) of several functions timed in alternating rounds (``seconds`` in total each)."""
    calls = {k: 0 for k in fns}
    spent = {k: 0.0 for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            n, s = _timed(fn, seconds / rounds)
            calls[k] += n
            spent[k] += s
    return {k: calls[k] / spent[k] for k in fns}


def _peer_pipeline(size: int):
    """torchvision.transforms.v2 on one view ``(T, C, H, W)`` uint8, SimCLR parameters (as ClipAugment's)."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    from videocontrast.transforms.functional import KINETICS_MEAN, KINETICS_STD, blur_kernel_size

    pipeline = v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
        v2.RandomHorizontalFlip(0.5),
        v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        v2.RandomGrayscale(0.2),
        v2.RandomApply([v2.GaussianBlur(blur_kernel_size(size), sigma=(0.1, 2.0))], p=0.5),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(KINETICS_MEAN, KINETICS_STD),
    ])
    return lambda view: pipeline(tv_tensors.Video(view)).permute(1, 0, 2, 3)  # (C, T, size, size)


def side_by_side(files: list[str], infos: dict, seconds: float, clip_len: int = CLIP_LEN,
                 decode_size: int = DECODE_SIZE, crop: int = CROP) -> dict[str, float]:
    """Two-view items/s of ours and of the peer, one core, interleaved (see the module docstring)."""
    from videocontrast.transforms.spatial import ClipAugment
    from videocontrast.transforms.temporal import TwoViews

    views = TwoViews("shift", clip_len, 8, 1)
    records = [VideoRecord(f, 0) for f in files]
    ours = VideoDataset(records, ["x"], views, decode_size=decode_size,
                        transform=ClipAugment(size=crop, uint8_resize=True))
    before = VideoDataset(records, ["x"], views, decode_size=decode_size, transform=ClipAugment(size=crop))
    raw = VideoDataset(records, ["x"], views, decode_size=decode_size)
    for ds in (ours, before, raw):
        ds._infos.update({i: infos[f] for i, f in enumerate(files)})  # probing is not part of an item
    peer_view = _peer_pipeline(crop)
    rng = np.random.default_rng(0)

    def ours_item() -> None:
        out = ours[int(rng.integers(len(ours)))]["video"]
        assert out.shape == (2, 3, clip_len, crop, crop)

    def peer_item() -> None:
        video = raw[int(rng.integers(len(raw)))]["video"]  # (2, T, C, H, W) uint8: the same decoded frames
        out = torch.stack([peer_view(v) for v in video])
        assert out.shape == (2, 3, clip_len, crop, crop)

    def ours_float_item() -> None:
        before[int(rng.integers(len(before)))]

    fns = {"ours": ours_item, "ours_float": ours_float_item, "peer": peer_item}
    try:
        import pytorchvideo  # noqa: F401
    except ImportError:
        pass
    else:
        fns["pytorchvideo"] = _pytorchvideo_item(files, clip_len, decode_size, peer_view)
    ours_item(), peer_item()  # warm-up
    return _interleaved(fns, seconds)


def _pytorchvideo_item(files: list[str], clip_len: int, decode_size: int, peer_view):
    """pytorchvideo's LabeledVideoDataset (PyAV, random clip) + short side resize + the v2 transform, 2 views."""
    from pytorchvideo.data import LabeledVideoDataset, make_clip_sampler
    from torchvision.transforms import v2

    fps = 25.0
    ds = LabeledVideoDataset([(f, {"label": 0}) for f in files], make_clip_sampler("random", 2 * clip_len / fps),
                             decode_audio=False, decoder="pyav")
    resize = v2.Resize(decode_size, antialias=True)
    it = iter(ds)

    def item() -> None:
        clip = next(it)["video"].permute(1, 0, 2, 3)[:clip_len]  # (T, C, H, W) float 0..255
        clip = resize(clip.to(torch.uint8))
        torch.stack([peer_view(clip), peer_view(clip)])

    return item


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

        aug = ClipAugment(size=CROP, uint8_resize=True)
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
    parser.add_argument("--json", action="store_true", help="also print one JSON object with the headline rates")
    parser.add_argument("--only-side-by-side", action="store_true",
                        help="run only the ours-vs-peer table (the headline), not the other rows")
    parser.add_argument("--files", type=int, default=0, help="use only the first N files (0: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = sorted(str(p) for p in (args.data / "ucf101-mini" / "videos").glob("*/*.avi"))
    if not files:
        sys.exit(f"no UCF101 AVIs under {args.data / 'ucf101-mini' / 'videos'}; pass --data")
    if args.files:
        files = files[:: max(1, len(files) // args.files)][: args.files]
    rng = np.random.default_rng(0)

    t0 = time.perf_counter()
    infos = {f: probe_video(f) for f in files}
    probe_ms = (time.perf_counter() - t0) / len(files) * 1e3
    print(f"{len(files)} UCF101 AVIs (Xvid 320x240, median {np.median([i.num_frames for i in infos.values()]):.0f} frames); "
          f"probe_video {probe_ms:.2f} ms/file; PyAV {av.__version__}, torch {torch.__version__}, 1 torch thread\n")
    rates = side_by_side(files, infos, 2 * args.seconds)
    try:
        import pytorchvideo  # noqa: F401
        pv = "pytorchvideo: its LabeledVideoDataset row is included"
    except ImportError:
        pv = "pytorchvideo is not installed here (and cannot be: no downloads), so its row is absent"
    print(f"two-view item = decode + temporal sampling + augmentation to 2 x {CLIP_LEN}x{CROP}x{CROP}, one core, "
          f"interleaved; {pv}")
    print(f"{'pipeline':<62}  {'items/s':>8}  {'vs peer':>7}")
    names = {"ours": "ours: VideoDataset + ClipAugment(uint8_resize=True)",
             "ours_float": "ours, float resize (ClipAugment(uint8_resize=False))",
             "peer": "peer: same decoded frames + torchvision.transforms.v2 per view",
             "pytorchvideo": "pytorchvideo LabeledVideoDataset + transforms.v2"}
    for k, rate in rates.items():
        print(f"{names[k]:<62}  {rate:8.2f}  {rate / rates['peer']:6.2f}x")
    print()
    headline = {"two_view_cpu_aug_per_core": round(rates["ours"], 3),
                "peer_two_view_per_core": round(rates["peer"], 3),
                "ratio_vs_peer": round(rates["ours"] / rates["peer"], 3)}
    if args.only_side_by_side:
        if args.json:
            print(json.dumps(headline))
        return
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
    if args.json:
        print(json.dumps(headline))


if __name__ == "__main__":
    main()
