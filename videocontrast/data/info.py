"""`videocontrast data info`: what a dataset folder holds (classes, videos per subset, missing split entries,
unreadable and truncated files, frame sizes), read from headers only."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .decode import VideoDecodeError, VideoInfo
from .decode import truncation_reason
from .discover import try_probe
from .splits import VideoRecord, dataset_records, present_classes


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    v = np.asarray(values, dtype=np.float64)
    return {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())}


def dataset_info(
    name: str,
    root: str | os.PathLike,
    splits: str | os.PathLike | None = None,
    split: int = 1,
    probe: bool = True,
    num_threads: int = 4,
) -> dict[str, Any]:
    """Summary of a dataset on disk, for ``videocontrast data info``.

    Returns:
        dict with ``classes`` (all class names), ``present_classes``, ``train`` and ``test``
        (usable videos per subset: present and, with ``probe``, readable), ``missing`` (how many are
        listed but absent) and ``missing_files`` (all of them, as the split files name them), ``unreadable`` (list of ``{"path", "reason"}``), and with ``probe`` ``truncated``
        (readable but cut short: ``{"path", "header_frames", "frames", "reason"}``), ``frames``
        and ``fps`` summaries (``min``/``median``/``max`` over readable files).
    """
    subsets: dict[str, list[VideoRecord]] = {}
    missing: list[str] = []
    classes: list[str] = []
    for subset in ("train", "test"):
        try:
            records, classes, miss = dataset_records(name, root, splits, split, subset, require_complete=False)
        except FileNotFoundError as e:
            if subset == "test" and "none of the" in str(e):
                records, miss = [], []  # e.g. a partial download holding only training videos
            else:
                raise
        subsets[subset] = records
        missing += miss
    info: dict[str, Any] = {
        "classes": classes,
        "present_classes": present_classes([r for rs in subsets.values() for r in rs], classes),
        "missing": len(missing),
        "missing_files": missing,
        "unreadable": [],
    }
    if not probe:
        info.update(train=len(subsets["train"]), test=len(subsets["test"]))
        return info

    paths = sorted({r.path for rs in subsets.values() for r in rs})

    # PyAV releases the GIL while demuxing, so threads overlap the file I/O.
    with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
        results = dict(zip(paths, pool.map(try_probe, paths)))
    bad = {p for p, r in results.items() if isinstance(r, VideoDecodeError)}
    good = [r for r in results.values() if isinstance(r, VideoInfo)]
    info["unreadable"] = [{"path": p, "reason": results[p].reason} for p in sorted(bad)]
    info["truncated"] = [{"path": g.path, "header_frames": g.header_frames, "frames": g.num_frames,
                          "reason": truncation_reason(g)} for g in sorted(good, key=lambda g: g.path) if g.truncated]
    info["train"] = sum(r.path not in bad for r in subsets["train"])
    info["test"] = sum(r.path not in bad for r in subsets["test"])
    info["frames"] = _summary([g.num_frames for g in good])
    info["fps"] = _summary([g.fps for g in good])
    return info
