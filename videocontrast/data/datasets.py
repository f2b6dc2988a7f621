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

import errno
import hashlib
import inspect
import logging
import os
import stat
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..names import DATASET_NAMES
from ..transforms.temporal import FirstClip
from .decode import VideoDecodeError, VideoInfo, output_size, probe_frame_size, probe_video, read_frames

__all__ = [
    "VideoRecord", "VideoDataset", "build_dataset", "dataset_info", "find_videos", "first_report", "try_probe",
    "reset_reports", "DATASET_NAMES", "SUBSETS", "VIDEO_EXTENSIONS",
]

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov")
SUBSETS = ("train", "test", "all")
UCF101_SPLITS_URL = "https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip"
HMDB51_SPLITS_URL = "https://serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database/ (test_train_splits.rar)"

ViewsFn = Callable[[int, np.random.Generator], Sequence[np.ndarray]]
# How many video headers (evenly spread over the sorted paths) decide a dataset's aspect ratio.
ASPECT_SAMPLE = 64
ON_BAD = ("replace", "mark")  # VideoDataset(on_bad=...): training replaces a bad video, evaluation marks it


@dataclass
class VideoRecord:
    """One video file and its label (-1 when unlabeled)."""

    path: str
    label: int


# ----------------------------------------------------------------------------- said once per run

_REPORT_SLOTS = 1 << 14
_REPORTS: torch.Tensor | None = None


def _reports() -> torch.Tensor:
    """This run's memory of what was already reported: an open-addressing table of 64-bit message hashes in
    shared memory. A dataset keeps a reference, so its DataLoader workers (forked or spawned: torch shares the
    storage) and the main process consult and fill one table."""
    global _REPORTS
    if _REPORTS is None:
        table = torch.zeros(_REPORT_SLOTS, dtype=torch.int64)
        try:
            table.share_memory_()
        except (RuntimeError, OSError):  # no shared memory here: the table is per process
            pass
        _REPORTS = table
    return _REPORTS


def first_report(key: str, table: torch.Tensor | None = None) -> bool:
    """True the first time ``key`` is seen in this run (main process and DataLoader workers together), False
    after: report a thing only when this returns True. Two workers racing on the same key within microseconds
    can both get True; a full neighbourhood of the table says True again rather than never."""
    table = _reports() if table is None else table
    h = int.from_bytes(hashlib.blake2b(key.encode("utf-8", "replace"), digest_size=8).digest(), "little",
                       signed=True) or 1
    slots = table.numpy()
    n = len(slots)
    for probe in range(64):
        slot = (h + probe) % n
        value = int(slots[slot])
        if value == h:
            return False
        if value == 0:
            slots[slot] = h
            return True
    return True


def reset_reports() -> None:
    """Forget what was reported (a new "run" in a long-lived process, e.g. between tests)."""
    _reports().zero_()


def _warn_once(key: str, message: str, table: torch.Tensor | None = None) -> None:
    """A RuntimeWarning of ``message`` the first time ``key`` is reported in this run. It is attributed to
    "videocontrast" rather than to a source line: raised inside a DataLoader worker, the line would be torch's."""
    if first_report(key, table):
        warnings.warn_explicit(message, RuntimeWarning, "videocontrast", 0, module="videocontrast.data")


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


def present_classes(records: Sequence[VideoRecord], classes: Sequence[str]) -> list[str]:
    """Names of the classes with at least one of ``records`` (sorted by label)."""
    labels = sorted({r.label for r in records if r.label >= 0})
    return [classes[i] for i in labels if i < len(classes)]


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
        self._said = _reports()  # shared with the workers, see first_report
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
                       f"{_some([d['path'] for d in dropped], 5)}")
            _warn_once(message, message, self._said)
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
        _warn_once(f"unreadable:{error.path}", f"skipping unreadable video {error.path}: {error.reason}",
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


# Probe results of this process, keyed by path, size and modification time: evaluation builds its loaders
# several times per run (linear, kNN, retrieval; pretrained and random init) and probes each file once.
_PROBES: dict[tuple[str, int, int], VideoInfo | VideoDecodeError] = {}


def try_probe(path: str) -> VideoInfo | VideoDecodeError:
    """:func:`probe_video`'s result or its error, remembered in this process while the file is unchanged (a
    dataset built later over the same paths reads no header twice)."""
    try:
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _PROBES:
        return _PROBES[key]
    try:
        result: VideoInfo | VideoDecodeError = probe_video(path)
    except VideoDecodeError as e:
        result = e
    if key is not None:
        _PROBES[key] = result
    return result


def _truncation(info: VideoInfo) -> str:
    if info.header_frames > info.num_frames:
        return (f"its header says {info.header_frames} frames but only {info.num_frames} are in the file; "
                f"using those {info.num_frames}")
    return f"reading stopped on an error after {info.num_frames} frames; using those"


def _warn_truncated(info: VideoInfo, table: torch.Tensor | None = None) -> None:
    _warn_once(f"truncated:{info.path}", f"video {info.path} is truncated: {_truncation(info)}", table)


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


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist or is not a folder; expected {what} there")


def _unusable(path: str) -> str | None:
    """Why a directory entry with a video name is not a readable regular file, or None when it is one."""
    try:
        st = os.stat(path)  # follows symbolic links
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop (the link leads back to itself)"
        if os.path.islink(path):
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            return f"broken symbolic link (its target {target} does not exist)"
        return f"cannot access file ({e.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return None


def _walk_videos(root: Path, skipped: list[dict[str, str]] | None = None):
    """Yield the path of every video file under ``root`` (by extension, case-insensitive; one directory walk).

    Symbolic links to folders are followed (a class folder linked from elsewhere is found), except a link back to
    one of its own ancestors (a loop) or to a folder inside ``root`` (walked anyway). Entries that are not
    readable regular files -- symlink loops, broken links, folders that cannot be listed, a folder loop -- are
    not yielded; with ``skipped`` each is appended to it as ``{"path", "reason"}``.
    """
    def skip(path: str, reason: str) -> None:
        if skipped is not None:
            skipped.append({"path": path, "reason": reason})

    def onerror(err: OSError) -> None:
        skip(str(err.filename), f"cannot list folder ({err.strerror})")

    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=True):
        here = os.path.realpath(dirpath)
        keep = []
        for name in sorted(dirnames):
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                target = os.path.realpath(full)
                if here == target or here.startswith(target.rstrip(os.sep) + os.sep):
                    skip(full, f"symbolic link loop (the folder link leads back to {target})")
                    continue
                if target == real_root or target.startswith(real_root.rstrip(os.sep) + os.sep):
                    continue  # a folder inside root: its videos are listed where they are
            keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            if name.lower().endswith(VIDEO_EXTENSIONS):
                full = os.path.join(dirpath, name)
                reason = _unusable(full)
                if reason is None:
                    yield full
                else:
                    skip(full, reason)


def _scan_videos(root: Path) -> dict[str, str]:
    """Every video under ``root``: lower-case relative posix path -> real path.

    Lower-casing resolves UCF101's quirk (folder ``HandstandPushups``, files ``v_HandStandPushups_*``)
    and split files whose case differs from the disk. Entries that are not readable files (symlink
    loops, broken links) are warned about once.
    """
    skipped: list[dict[str, str]] = []
    disk = {Path(os.path.relpath(full, root)).as_posix().lower(): full for full in _walk_videos(root, skipped)}
    for entry in skipped:
        _warn_once(f"unreadable:{entry['path']}", f"skipping {entry['path']}: {entry['reason']}")
    return disk


def find_videos(root: str | os.PathLike, skipped: list[dict[str, str]] | None = None) -> list[Path]:
    """Every video file under ``root`` (recursively, following folder links), sorted; for unlabeled collections
    (``embed``).

    Args:
        skipped: if given, entries with a video name that cannot be used are appended to it as dicts with
            ``path`` and ``reason`` (a symbolic link loop, a broken link, a folder that cannot be listed or a
            folder link back to its own ancestor), for the caller to report; they are never silently lost.

    Raises:
        FileNotFoundError: ``root`` is not a folder, or holds no usable video.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--root '{root}' is not a folder of videos")
    found: list[dict[str, str]] = []
    paths = sorted(Path(p) for p in _walk_videos(root, found))
    if skipped is not None:
        skipped.extend(found)
    if not paths:
        extra = f" ({len(found)} unusable entries: {_some([f['path'] + ': ' + f['reason'] for f in found])})" \
            if found else ""
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) found under '{root}'{extra}")
    return paths


def _lines(path: Path) -> list[str]:
    """Non-empty lines of a text file, CRLF or LF, stripped."""
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def _resolve(entries: list[tuple[str, int]], disk: dict[str, str], root: Path, list_desc: str,
             require_complete: bool, quiet: bool = False) -> tuple[list[VideoRecord], list[str]]:
    records, missing = [], []
    for rel, label in entries:
        real = disk.get(rel.replace("\\", "/").lower())
        if real is None:
            missing.append(rel)
        else:
            records.append(VideoRecord(real, label))
    if missing and require_complete:
        raise FileNotFoundError(
            f"{len(missing)} of {len(entries)} videos listed in {list_desc} are missing under {root} "
            f"(e.g. {missing[0]}); download the full dataset or drop require_complete"
        )
    if entries and not records:
        raise FileNotFoundError(
            f"none of the {len(entries)} videos listed in {list_desc} exist under {root} "
            f"(e.g. {entries[0][0]}); is root the folder that holds the class folders?"
        )
    if missing and not quiet:
        message = (f"{len(missing)} of {len(entries)} videos listed in {list_desc} are missing under {root}; using "
                   f"the {len(records)} present. Missing: {_some(missing)} (`videocontrast data info --json` lists "
                   "them all)")
        if first_report(message):
            log.warning("%s", message)
    return records, missing


def _some(names: Sequence[str], shown: int = 3) -> str:
    """The first ``shown`` names, then how many more."""
    head = ", ".join(names[:shown])
    return head + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _ucf101(root: Path, splits: Path | None, split: int, subset: str,
            require_complete: bool, quiet: bool = False) -> tuple[list[VideoRecord], list[str], list[str]]:
    _require_dir(root, "the UCF101 class folders (ApplyEyeMakeup/, ..., YoYo/)")
    if split not in (1, 2, 3):
        raise ValueError(f"UCF101 split must be 1, 2 or 3, got {split}")
    if splits is None:
        candidates = [root / "ucfTrainTestlist", root.parent / "ucfTrainTestlist"]
        splits = next((c for c in candidates if c.is_dir()), candidates[0])
    expected = (f"the official ucfTrainTestlist folder with classInd.txt, trainlist0{split}.txt and "
                f"testlist0{split}.txt; download it from {UCF101_SPLITS_URL} or pass splits=")
    _require_dir(splits, expected)
    files = {name: splits / name for name in ("classInd.txt", f"trainlist0{split}.txt", f"testlist0{split}.txt")}
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; expected {expected}")

    classes: list[str] = []
    for line in _lines(files["classInd.txt"]):
        number, name = line.split(maxsplit=1)
        if int(number) != len(classes) + 1:
            raise ValueError(f"{files['classInd.txt']}: expected class number {len(classes) + 1}, got line {line!r}")
        classes.append(name)
    by_name = {c.lower(): i for i, c in enumerate(classes)}

    def parse(path: Path, labeled: bool) -> list[tuple[str, int]]:
        out = []
        for line in _lines(path):
            parts = line.split()
            rel = parts[0]
            if labeled and len(parts) > 1:
                label = int(parts[1]) - 1  # classInd is 1-based
            else:
                label = by_name.get(rel.replace("\\", "/").split("/")[0].lower(), -1)
            if not 0 <= label < len(classes):
                raise ValueError(f"{path}: line {line!r} names no class of {files['classInd.txt']}")
            out.append((rel, label))
        return out

    entries: list[tuple[str, int]] = []
    descs = []
    if subset in ("train", "all"):
        entries += parse(files[f"trainlist0{split}.txt"], labeled=True)
        descs.append(files[f"trainlist0{split}.txt"].name)
    if subset in ("test", "all"):
        entries += parse(files[f"testlist0{split}.txt"], labeled=False)
        descs.append(files[f"testlist0{split}.txt"].name)
    records, missing = _resolve(entries, _scan_videos(root), root, f"{splits}/{'+'.join(descs)}", require_complete,
                                quiet)
    return records, classes, missing


def _hmdb51(root: Path, splits: Path | None, split: int, subset: str,
            require_complete: bool, quiet: bool = False) -> tuple[list[VideoRecord], list[str], list[str]]:
    _require_dir(root, "the HMDB51 class folders (brush_hair/, ..., wave/)")
    if split not in (1, 2, 3):
        raise ValueError(f"HMDB51 split must be 1, 2 or 3, got {split}")
    suffix = f"_test_split{split}.txt"
    if splits is None:
        names = ["testTrainMulti_7030_splits", "test_train_splits", "splits"]
        candidates = [root / n for n in names] + [root.parent / n for n in names]
        splits = next((c for c in candidates if c.is_dir() and any(c.glob(f"*{suffix}"))), candidates[0])
    expected = (f"the HMDB51 split files <class>{suffix} (lines '<file> <0|1|2>'); "
                f"download them from {HMDB51_SPLITS_URL} or pass splits=")
    _require_dir(splits, expected)
    split_files = sorted(splits.glob(f"*{suffix}"))
    if not split_files:
        raise FileNotFoundError(f"{splits} holds no *{suffix} file; expected {expected}")
    classes = [f.name[: -len(suffix)] for f in split_files]
    keep = {"train": {"1"}, "test": {"2"}, "all": {"1", "2"}}[subset]
    entries = []
    for label, (name, path) in enumerate(zip(classes, split_files)):
        for line in _lines(path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ValueError(f"{path}: expected lines '<file> <0|1|2>', got {line!r}")
            if parts[1] in keep:
                entries.append((f"{name}/{parts[0]}", label))
    records, missing = _resolve(entries, _scan_videos(root), root, f"{splits}/*{suffix}", require_complete, quiet)
    return records, classes, missing


def _folder_records(folder: Path, classes: list[str]) -> list[VideoRecord]:
    disk = _scan_videos(folder)
    index = {c: i for i, c in enumerate(classes)}
    records = []
    for rel, real in sorted(disk.items()):
        top = Path(os.path.relpath(real, folder)).parts
        label = index[top[0]] if len(top) > 1 and top[0] in index else -1
        records.append(VideoRecord(real, label))
    return records


def _class_dirs(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and any(_scan_videos(d)))


def _folder(root: Path, subset: str, need_subsets: bool) -> tuple[list[VideoRecord], list[str], list[str]]:
    _require_dir(root, "a folder of videos (.avi/.mp4/.mkv/.webm/.mov), optionally in class subfolders"
                 + (" under train/ and test/" if need_subsets else ""))
    has_subsets = (root / "train").is_dir() and (root / "test").is_dir()
    if need_subsets and not has_subsets:
        raise FileNotFoundError(
            f"{root} has no train/ and test/ folders; expected the synthetic dataset written by "
            "videocontrast.data.synthetic.generate_synthetic(root) (root/train/<class>/*.mp4, root/test/<class>/*.mp4)"
        )
    if has_subsets:
        parts = {"train": [root / "train"], "test": [root / "test"], "all": [root / "train", root / "test"]}[subset]
        classes = sorted(set(_class_dirs(root / "train")) | set(_class_dirs(root / "test")))
    else:
        parts = [] if subset == "test" else [root]
        classes = _class_dirs(root)
    records = [r for folder in parts for r in _folder_records(folder, classes)]
    if not records and subset != "test":
        raise FileNotFoundError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under {root}")
    return records, classes, []


def _records(name: str, root: str | os.PathLike, splits: str | os.PathLike | None, split: int, subset: str,
             require_complete: bool, quiet: bool = False) -> tuple[list[VideoRecord], list[str], list[str]]:
    if name not in DATASET_NAMES:
        raise ValueError(f"dataset must be one of {', '.join(DATASET_NAMES)}, got {name!r}")
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    root = Path(root).expanduser()
    splits_path = Path(splits).expanduser() if splits is not None else None
    if name == "ucf101":
        return _ucf101(root, splits_path, split, subset, require_complete, quiet)
    if name == "hmdb51":
        return _hmdb51(root, splits_path, split, subset, require_complete, quiet)
    return _folder(root, subset, need_subsets=name == "synthetic")


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
    records, classes, missing = _records(name, root, splits, split, subset, require_complete)
    aspect = None
    if isinstance(decode_size, (int, np.integer)):
        everything = records
        if subset != "all":
            try:
                everything = _records(name, root, splits, split, "all", False, quiet=True)[0]
            except FileNotFoundError:
                pass
        aspect = typical_frame_size([r.path for r in everything])
    dataset = VideoDataset(records, classes, views_fn, decode_size=decode_size, transform=transform,
                           seed=seed, strict=strict, aspect=aspect)
    dataset.missing, dataset.missing_files = len(missing), missing
    if not strict:
        dataset.check_readable(f"of the '{subset}' subset under {root}" if subset != "all" else f"under {root}")
    return dataset


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
            records, classes, miss = _records(name, root, splits, split, subset, require_complete=False)
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
                          "reason": _truncation(g)} for g in sorted(good, key=lambda g: g.path) if g.truncated]
    info["train"] = sum(r.path not in bad for r in subsets["train"])
    info["test"] = sum(r.path not in bad for r in subsets["test"])
    info["frames"] = _summary([g.num_frames for g in good])
    info["fps"] = _summary([g.fps for g in good])
    return info
