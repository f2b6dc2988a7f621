"""Video datasets: UCF101, HMDB51, any folder of videos, and the synthetic motion set.

Every dataset yields the same item (see docs/design.md)::

    dict(video=uint8 (V, T, C, H, W), label=int, index=int, path=str)

where the V views come from ``views_fn(num_frames, rng)``. An item decodes the union of its views'
frame indices once (one seek, one forward decode) and then indexes it, so two overlapping
temporal views cost little more than one. Per-item randomness is
``np.random.default_rng([seed, epoch, index])``: the same (seed, epoch, index) gives the same
frames in any worker, process or resumed run.

Every item of a dataset has the same frame size (:attr:`VideoDataset.frame_box`), whatever its videos' sizes
and aspect ratios, so any batch stacks: with an int ``decode_size`` the box has that short side and the aspect
ratio of the dataset's typical video (the median over up to :data:`ASPECT_SAMPLE` files' headers), and each
video is resized to cover the box (aspect kept) and centre-cropped to it -- a dataset whose videos share one
aspect ratio is decoded exactly as before, an odd one out loses a band at its edges, never gets black bars.
"""

from __future__ import annotations

import inspect
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..names import DATASET_NAMES
from ..transforms.temporal import FirstClip
from .decode import VideoDecodeError, VideoInfo, output_size, probe_frame_size, read_frames
from .decode import truncation_reason
from .discover import try_probe
from .discover import some_names
from .reports import report_table, warn_once
from .splits import VideoRecord, dataset_records, present_classes

__all__ = ["VideoDataset", "build_dataset", "frame_box", "typical_frame_size", "DATASET_NAMES"]


ViewsFn = Callable[[int, np.random.Generator], Sequence[np.ndarray]]
# How many video headers (evenly spread over the sorted paths) decide a dataset's aspect ratio.
ASPECT_SAMPLE = 64
ON_BAD = ("replace", "mark")  # VideoDataset(on_bad=...): training replaces a bad video, evaluation marks it


# ----------------------------------------------------------------------------- said once per run


def typical_frame_size(paths: Sequence[str], sample: int = ASPECT_SAMPLE) -> tuple[int, int] | None:
    """``(height, width)`` of the video with the median aspect ratio among up to ``sample`` of ``paths`` (evenly
    spread over the sorted unique paths; container headers only, unreadable files ignored), or None when
    none can be read. Deterministic: the same paths give the same answer in every process."""
    unique = sorted(set(paths))
    if not unique:
        return None
    picks = sorted({unique[int(i)] for i in np.linspace(0, len(unique) - 1, min(sample, len(unique)))})
    sizes = []
    for path in picks:
        try:
            sizes.append(probe_frame_size(path))
        except VideoDecodeError:
            continue
    if not sizes:
        return None
    sizes.sort(key=lambda hw: (hw[1] / hw[0], hw))
    return sizes[(len(sizes) - 1) // 2]


def frame_box(decode_size: int, aspect: float | tuple[int, int]) -> tuple[int, int]:
    """``(H, W)`` with short side ``decode_size`` and aspect ratio ``aspect`` (``W / H`` as a float, or the
    ``(height, width)`` of a frame with that ratio, which gives exactly that frame's short-side resize)."""
    if isinstance(aspect, tuple):
        return output_size(int(aspect[0]), int(aspect[1]), int(decode_size))
    if not aspect > 0:
        raise ValueError(f"aspect must be a positive width/height ratio, got {aspect!r}")
    if aspect >= 1:
        return int(decode_size), max(int(decode_size), round(decode_size * aspect))
    return max(int(decode_size), round(decode_size / aspect)), int(decode_size)



class VideoDataset(Dataset):
    """Clips of videos, ``V`` views per item.

    Args:
        records: the videos.
        classes: class names, ``classes[label]``; may be empty for unlabeled data.
        views_fn: ``(num_frames, rng) -> list of index arrays``, one per view (equal lengths).
        decode_size: resize on decode: None (native sizes), int (short side) or (H, W) (stretched to it).
            With an int every item's frames are :attr:`frame_box`: videos of another aspect ratio are resized
            to cover the box and centre-cropped, so videos of any size batch together.
        transform: applied to the ``uint8 (V, T, C, H, W)`` clip tensor, if given.
        seed: base seed of the per-item RNG.
        strict: raise :class:`VideoDecodeError` on a bad file instead of skipping it.
        aspect: the box's aspect ratio with an int ``decode_size``: ``W / H`` as a float, or the ``(height,
            width)`` of a frame with that ratio; None: the dataset's typical video (:func:`typical_frame_size`
            over ``records``; :func:`build_dataset` passes the one of all the dataset's subsets).
        on_bad: what an item of a video that cannot be read is: ``"replace"`` (training: the next readable
            video's clips) or ``"mark"`` (evaluation: zero clips and ``valid=False``, so that no video is
            counted twice; items then also carry ``valid: bool`` and ``error: str``, and
            :func:`~videocontrast.eval.features.extract_features` leaves marked videos out).

    Bad files are warned about once (path and reason), listed in ``.unreadable`` (dicts with
    ``path`` and ``reason``), and replaced by the next readable item, however many bad files follow
    in a row; only a dataset with no readable video at all raises. :meth:`check_readable` (called
    by :func:`build_dataset`) finds that case up front, in the main process, as one error.
    Evaluation instead calls :meth:`drop_unreadable` (probe everything, keep the readable records)
    and uses ``on_bad="mark"`` for a file that probes but does not decode.

    Each thing is said once per run: which records are bad is kept in shared memory (DataLoader
    workers skip what the main process or another worker found, and ``.unreadable`` in the main
    process lists what its workers found), and every message goes through :func:`first_report`.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        classes: Sequence[str],
        views_fn: ViewsFn | None = None,
        decode_size: int | tuple[int, int] | None = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
        seed: int = 0,
        strict: bool = False,
        aspect: float | tuple[int, int] | None = None,
        on_bad: str = "replace",
    ) -> None:
        if on_bad not in ON_BAD:
            raise ValueError(f"on_bad must be one of {ON_BAD}, got {on_bad!r}")
        self.records = list(records)
        self.classes = list(classes)
        self.views_fn = views_fn if views_fn is not None else FirstClip()
        self.decode_size = decode_size
        self.transform = transform
        self.seed = int(seed)
        self.strict = strict
        self.on_bad = on_bad
        self.aspect = aspect
        self._box: tuple[int, int] | None = None
        self.frame_box  # decided here, once, in the process that builds the dataset (workers inherit it)
        # The epoch lives in shared memory: DataLoader workers (persistent ones above all) hold their own copy of
        # the dataset, made when they started, so a plain attribute set by set_epoch in the main process would
        # never reach them, and every epoch would draw epoch 0's clips.
        self._epoch = _shared_zeros(1, torch.int64)
        self.missing = 0  # listed by a split file but absent on disk (set by build_dataset)
        self.missing_files: list[str] = []  # those entries, as the split file names them
        self._said = report_table()  # shared with the workers, see first_report
        self._flags = _shared_flags(len(self.records))  # 1: record j is unreadable (set by any process)
        self._reasons: dict[int, str] = {}  # why, for those found in this process
        self._dropped: list[dict[str, str]] = []  # left out by drop_unreadable
        self._infos: dict[int, VideoInfo] = {}
        self.frame_cache = None  # a data.cache.FrameCache: items index its decoded frames instead of the files

    @property
    def unreadable(self) -> list[dict[str, str]]:
        """The bad files found so far, by this process or its DataLoader workers: dicts with ``path`` and
        ``reason`` (a worker's find is probed again here for its reason; probes are cached)."""
        out = list(self._dropped)
        for j in torch.nonzero(self._flags).reshape(-1).tolist():
            reason = self._reasons.get(j)
            if reason is None:
                result = try_probe(self.records[j].path)
                reason = (result.reason if isinstance(result, VideoDecodeError)
                          else "no frame could be decoded (found by a DataLoader worker)")
            out.append({"path": self.records[j].path, "reason": reason})
        return out

    def _is_bad(self, j: int) -> bool:
        return bool(self._flags[j])

    @property
    def frame_box(self) -> tuple[int, int] | None:
        """``(H, W)`` of every item's frames, or None with ``decode_size=None`` (native sizes: a dataset of
        mixed sizes then cannot be batched). Decided once per dataset (see ``aspect``)."""
        if self.decode_size is None:
            return None
        if not isinstance(self.decode_size, (int, np.integer)):
            return tuple(int(s) for s in self.decode_size)  # type: ignore[return-value]
        if self._box is None:
            aspect = self.aspect
            if aspect is None:
                aspect = typical_frame_size([r.path for r in self.records]) or (3, 4)
            self._box = frame_box(int(self.decode_size), aspect)
        return self._box

    @property
    def present_classes(self) -> list[str]:
        """Names of the classes with at least one video in this dataset (sorted by label)."""
        return present_classes(self.records, self.classes)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def epoch(self) -> int:
        """The epoch whose clips items draw (see :meth:`item_rng`); the same in every DataLoader worker."""
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Change the per-item RNG stream (call once per epoch, before iterating the loader): seen at once by
        this process and by every DataLoader worker, persistent or not, however they were started."""
        self._epoch[0] = int(epoch)

    def item_rng(self, index: int) -> np.random.Generator:
        """The RNG of item ``index`` in the current epoch: a function of (seed, epoch, index) only."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for a dataset of {len(self.records)} videos")
        if self.on_bad == "mark":
            return self._marked(index)
        n = len(self.records)
        for t in range(n):
            j = (index + t) % n  # deterministic replacement: the next readable video
            if self._is_bad(j):
                continue
            try:
                return self._load(j)
            except VideoDecodeError as e:
                if self.strict:
                    raise
                self._report(j, e)
        raise VideoDecodeError(
            self.records[index].path,
            f"none of the {n} videos of this dataset can be read (see the warnings); check the dataset files",
        )

    def _marked(self, j: int) -> dict[str, Any]:
        """Item ``j`` itself, with ``valid``/``error``; a bad video gives zero clips of the usual shape."""
        try:
            if self._is_bad(j):
                raise VideoDecodeError(self.records[j].path, self._reasons.get(j, "unreadable"))
            return {**self._load(j), "valid": True, "error": ""}
        except VideoDecodeError as e:
            if self.strict:
                raise
            if not self._is_bad(j):
                self._report(j, e)
            info = self._infos.get(j)
            views = self.views_fn(info.num_frames if info else 1, self.item_rng(j))
            box = self.frame_box or ((info.height, info.width) if info else (1, 1))
            video = torch.zeros(len(views), len(views[0]), 3, *box, dtype=torch.uint8)
            if self.transform is not None:
                video = self.transform(video)
            record = self.records[j]
            return {"video": video, "label": record.label, "index": j, "path": record.path, "valid": False,
                    "error": e.reason}

    def drop_unreadable(self, where: str = "in this dataset", num_threads: int = 4) -> list[dict[str, str]]:
        """Probe every video (``num_threads`` at a time; results are kept for loading) and keep only the
        readable records: what evaluation does, so that no video stands in for a bad one.

        Each unreadable file is reported (once) and listed in ``.unreadable``; then one summary warning gives the
        count (``K of N videos {where} are unreadable and left out: ...``).

        Returns:
            the dropped files, dicts with ``path`` and ``reason``.

        Raises:
            VideoDecodeError: with ``strict``, the first unreadable file.
        """
        with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
            results = list(pool.map(try_probe, [r.path for r in self.records]))
        keep: list[VideoRecord] = []
        infos: dict[int, VideoInfo] = {}
        dropped: list[dict[str, str]] = []
        for j, (record, result) in enumerate(zip(self.records, results)):
            if isinstance(result, VideoInfo) and result.truncated:
                _warn_truncated(result, self._said)
            if isinstance(result, VideoDecodeError):
                if self.strict:
                    raise result
                if not self._is_bad(j):
                    self._report(j, result)
                dropped.append({"path": record.path, "reason": result.reason})
            else:
                infos[len(keep)] = result
                keep.append(record)
        total = len(self.records)
        self._dropped += dropped
        self.records, self._infos, self._reasons = keep, infos, {}
        self._flags = _shared_flags(len(keep))
        if dropped:
            message = (f"{len(dropped)} of {total} videos {where} are unreadable and left out: "
                       f"{some_names([d['path'] for d in dropped], 5)}")
            warn_once(message, message, self._said)
        return dropped

    def _info(self, j: int) -> VideoInfo:
        """The probe of record ``j`` (cached: workers inherit what the main process probed)."""
        info = self._infos.get(j)
        if info is None:
            result = try_probe(self.records[j].path)
            if isinstance(result, VideoDecodeError):
                raise VideoDecodeError(result.path, result.reason)
            info = self._infos[j] = result
            if info.truncated:
                _warn_truncated(info, self._said)
        return info

    def check_readable(self, where: str = "in this dataset") -> int:
        """Probe the videos in order until one can be read: one probe for a healthy dataset.

        The unreadable files met on the way are reported (once, as when loading them) and skipped from then on,
        in every DataLoader worker (they inherit this state). Called by :func:`build_dataset` so that a dataset
        with no readable video is one clear error before any loader starts, not a traceback from a worker.

        Returns:
            the index of the first readable video (-1 for an empty dataset).

        Raises:
            FileNotFoundError: no video can be read (one line: the count, ``where``, the first file's reason).
        """
        failures: list[tuple[int, VideoDecodeError]] = []
        for j in range(len(self.records)):
            if self._is_bad(j):
                continue
            try:
                self._info(j)
            except VideoDecodeError as e:
                failures.append((j, e))
                continue
            for k, error in failures:
                self._report(k, error)
            return j
        if not self.records:
            return -1
        first = failures[0][1] if failures else VideoDecodeError(self.records[0].path, "unreadable")
        raise FileNotFoundError(
            f"none of the {len(self.records)} videos {where} can be read (e.g. {first.path}: {first.reason}); "
            "`videocontrast data info` lists each file with its reason")

    def _report(self, j: int, error: VideoDecodeError) -> None:
        self._flags[j] = 1
        self._reasons[j] = error.reason
        warn_once(f"unreadable:{error.path}", f"skipping unreadable video {error.path}: {error.reason}",
                   self._said)

    def _load(self, j: int) -> dict[str, Any]:
        record = self.records[j]
        info = self._info(j)
        rng = self.item_rng(j)
        views = [np.asarray(v, dtype=np.int64) for v in self.views_fn(info.num_frames, rng)]
        # Decode the union of the views once, then index it per view.
        union = np.unique(np.concatenate(views))
        box = self.frame_box
        fit = "cover" if isinstance(self.decode_size, (int, np.integer)) else "stretch"
        if self.frame_cache is not None and record.path in self.frame_cache:
            frames = self.frame_cache.frames(record.path, union)  # the same frames, decoded once (data.cache)
        else:
            frames = read_frames(record.path, union, size=box, info=info, fit=fit)  # (U, C, H, W)
        video = torch.stack([frames[torch.from_numpy(np.searchsorted(union, v))] for v in views])  # (V, T, C, H, W)
        if _takes_generator(self.transform):
            # a random transform in a loader worker (aug.on_device=false) draws from (seed, epoch, index) too, not
            # from the worker's own torch RNG, which depends on the worker count and restarts on resume
            video = self.transform(video, generator=torch.Generator().manual_seed(int(rng.integers(2 ** 62))))
        elif self.transform is not None:
            video = self.transform(video)
        return {"video": video, "label": record.label, "index": j, "path": record.path}


# ----------------------------------------------------------------------------- builders



def _warn_truncated(info: VideoInfo, table: torch.Tensor | None = None) -> None:
    warn_once(f"truncated:{info.path}", f"video {info.path} is truncated: {truncation_reason(info)}", table)


def _shared_zeros(n: int, dtype: torch.dtype) -> torch.Tensor:
    """``n`` zeros in shared memory (seen and written by the DataLoader workers too)."""
    values = torch.zeros(max(n, 1), dtype=dtype)
    try:
        values.share_memory_()
    except (RuntimeError, OSError):  # no shared memory: then no loader worker can start either
        pass
    return values


def _shared_flags(n: int) -> torch.Tensor:
    """``n`` zero bytes in shared memory: one flag per record."""
    return _shared_zeros(n, torch.uint8)


def _takes_generator(transform: Callable[..., Any] | None) -> bool:
    """Whether ``transform`` accepts ``generator=`` (a random transform such as ClipAugment)."""
    if transform is None:
        return False
    try:
        params = inspect.signature(transform).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "generator" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def build_dataset(
    name: str,
    root: str | os.PathLike,
    splits: str | os.PathLike | None = None,
    split: int = 1,
    subset: str = "train",
    views_fn: ViewsFn | None = None,
    decode_size: int | tuple[int, int] | None = None,
    transform: Callable[[torch.Tensor], Any] | None = None,
    seed: int = 0,
    strict: bool = False,
    require_complete: bool = False,
) -> VideoDataset:
    """A :class:`VideoDataset` for a named dataset layout.

    Args:
        name: ``ucf101`` (class folders + official ucfTrainTestlist, labels from classInd.txt),
            ``hmdb51`` (class folders + ``<class>_test_split<N>.txt``), ``folder`` (any folder of
            videos; class subfolders give labels, a flat folder gives -1; ``train/`` and ``test/``
            subfolders are the subsets, else everything is ``train``), ``synthetic`` (a folder
            with ``train/`` and ``test/``, as written by ``generate_synthetic``).
        root: the folder holding the class folders.
        splits: split-file folder; default ``root/ucfTrainTestlist`` or ``root/../ucfTrainTestlist``
            (UCF101), ``[root or root/..]/testTrainMulti_7030_splits`` (HMDB51).
        split: official split 1, 2 or 3.
        subset: ``train``, ``test`` or ``all``.
        require_complete: make videos listed by the split files but absent on disk an error
            (by default they are counted in ``.missing``, listed in ``.missing_files`` and a warning
            names the first few).
        views_fn, decode_size, transform, seed, strict: see :class:`VideoDataset`. With an int
            ``decode_size`` the frame box's aspect ratio is that of the typical video of the whole dataset
            (train and test together), so every subset of one dataset is cropped alike.

    Raises:
        FileNotFoundError: root or split files missing (the message says what belongs there),
            nothing listed is present, ``require_complete`` and something is missing, or (unless
            ``strict``) not one of the videos can be read (:meth:`VideoDataset.check_readable`).
    """
    records, classes, missing = dataset_records(name, root, splits, split, subset, require_complete)
    aspect = None
    if isinstance(decode_size, (int, np.integer)):
        everything = records
        if subset != "all":
            try:
                everything = dataset_records(name, root, splits, split, "all", False, quiet=True)[0]
            except FileNotFoundError:
                pass
        aspect = typical_frame_size([r.path for r in everything])
    dataset = VideoDataset(records, classes, views_fn, decode_size=decode_size, transform=transform,
                           seed=seed, strict=strict, aspect=aspect)
    dataset.missing, dataset.missing_files = len(missing), missing
    if not strict:
        dataset.check_readable(f"of the '{subset}' subset under {root}" if subset != "all" else f"under {root}")
    return dataset


