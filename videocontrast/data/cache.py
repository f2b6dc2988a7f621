"""Decoded-frame cache (``data.cache``): decode each video once, then sample clips from uint8 frames every epoch.

Small datasets (a few hundred videos, the demo) spend most of an epoch decoding the same frames again. With a
cache, every frame of every video is decoded once at the dataset's frame box (``decode_size``, the same
``read_frames`` call and resize as an uncached item, so the same pixels) into one uint8 array
``(total_frames, H, W, 3)``; an item then indexes that array instead of opening the file.

Where the array lives:

- ``memory``: a tensor in shared memory (DataLoader workers, forked or spawned, read the one copy).
- ``disk``: a memory-mapped ``.npy`` file under the run folder (workers map the same file; the page cache
  keeps the hot part in RAM).
- ``auto``: ``memory`` when the estimate fits in half the available RAM, else ``disk`` when it fits on the
  disk, else no cache (said once).
- ``none``: decode every item from its file, as without this module.

A size estimate (frames counted from the file headers) is printed first; ``memory`` or ``disk`` asked for
explicitly and not fitting is a one-line error naming ``data.cache``. Bad files keep their guarantees: a file
that does not decode while the cache is filled is reported once (the dataset's own report) and skipped by the
dataset's usual replacement rule.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..fileio import TMP_MARK
from ..names import CACHE_MODES  # data.cache
from .decode import VideoDecodeError, read_frames

__all__ = ["CACHE_MODES", "FrameCache", "CacheDoesNotFit", "FrameCacheError", "attach_cache", "estimate_bytes",
           "available_memory"]

RAM_FRACTION = 0.5  # `memory` (and `auto`) may use at most this share of the RAM available now
CACHE_FILE = "frame-cache.npy"


class CacheDoesNotFit(ValueError):
    """The frames of a dataset do not fit where ``data.cache`` asks to keep them (a user's choice to change)."""


def available_memory(cgroup_root: str | os.PathLike = "/sys/fs/cgroup") -> int:
    """Bytes of RAM available now: ``MemAvailable`` of /proc/meminfo (physical pages elsewhere), or less where a
    control group caps this process (a container's ``--memory``, a SLURM job): its OOM killer acts at the cap,
    whatever the machine has free."""
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if free is None:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    capped = _cgroup_room(Path(cgroup_root))
    return free if capped is None else min(free, capped)


def _cgroup_room(root: Path) -> int | None:
    """Bytes left under this container's memory cap (cgroup v2 ``memory.max``, v1 ``memory.limit_in_bytes``),
    not counting the page cache the kernel would drop first (``inactive_file``); None without a cap."""
    for limit, usage, stat in ((root / "memory.max", root / "memory.current", root / "memory.stat"),
                               (root / "memory" / "memory.limit_in_bytes", root / "memory" / "memory.usage_in_bytes",
                                root / "memory" / "memory.stat")):
        try:
            cap_text = limit.read_text().strip()
            if cap_text == "max":
                return None
            cap, used = int(cap_text), int(usage.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if cap >= 1 << 60:  # v1 writes "no limit" as a huge number (2^63 less a page)
            return None
        cache = 0
        try:
            for line in stat.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key in ("inactive_file", "total_inactive_file"):
                    cache = max(cache, int(value))
        except (OSError, ValueError):
            pass
        return max(0, cap - max(0, used - cache))
    return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


def estimate_bytes(dataset: Any) -> tuple[int, int]:
    """``(bytes, frames)`` the cache of ``dataset`` (a :class:`~videocontrast.data.datasets.VideoDataset` with a
    fixed ``frame_box``) takes: every frame of every readable video at the frame box, uint8 RGB. Probes each file
    once (the probes are kept by the dataset for loading)."""
    box = dataset.frame_box
    if box is None:
        raise CacheDoesNotFit("data.cache needs one frame size for the whole dataset (an int data.decode_size); "
                              "set data.decode_size or data.cache=none")
    frames = 0
    for j in range(len(dataset.records)):
        try:
            frames += dataset._info(j).num_frames
        except VideoDecodeError:
            continue  # reported when the cache is filled
    return frames * box[0] * box[1] * 3, frames


class FrameCacheError(ValueError):
    """The cache file on disk is not what was written (cut short by a full disk or by another process); the
    message (one line) names it."""


class FrameCache:
    """Every frame of a dataset's videos, uint8 ``(H, W, 3)`` each, in one array, looked up by path.

    Args:
        paths: the videos (in dataset order); ``lengths[i]`` frames each (0: not cached, a bad file).
        box: ``(H, W)`` of every frame.
        file: ``None`` for shared memory, else the ``.npy`` file to write. It is written under a temporary name in
            its folder (never through a link planted at ``file``) with its whole size reserved on the disk first
            (a full disk is then a :class:`CacheDoesNotFit` here, not a SIGBUS when a page is first written), and
            renamed to ``file`` by :meth:`publish` once filled.

    Shape:
        :meth:`frames` returns ``uint8 (len(indices), 3, H, W)``, as ``read_frames``.
    """

    def __init__(self, paths: Sequence[str], lengths: Sequence[int], box: tuple[int, int],
                 file: str | os.PathLike | None = None) -> None:
        self.box = (int(box[0]), int(box[1]))
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.index = {p: (int(starts[i]), int(n)) for i, (p, n) in enumerate(zip(paths, lengths))}
        total = int(starts[-1])
        self.file = None if file is None else str(file)
        self.file_bytes = 0  # the .npy file's full size (header + frames)
        self.published = self.file is None  # a disk cache is under its temporary name until publish()
        shape = (max(total, 1), *self.box, 3)
        if self.file is None:
            self._array: Any = torch.empty(shape, dtype=torch.uint8).share_memory_().numpy()
            self._tensor = torch.from_numpy(self._array)  # keeps the shared storage for pickling to workers
        else:
            self._array = self._create_file(Path(self.file), shape)
        self.filled: set[str] = set()

    def _create_file(self, final: Path, shape: tuple[int, ...]) -> np.memmap:
        for stale in final.parent.glob(f".{final.name}{TMP_MARK}*"):  # left by a killed run (under its lock)
            stale.unlink(missing_ok=True)
        if final.is_dir() and not final.is_symlink():
            raise FrameCacheError(f"'{final}' is a folder, where the frame cache file goes; move it away or set "
                                  "data.cache=memory")
        if final.is_symlink() or final.exists():
            final.unlink()  # the previous run's cache (or a planted link): its room is needed, its target is not
        fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}{TMP_MARK}")
        self.file = name
        try:
            with os.fdopen(fd, "r+b") as f:
                np.lib.format.write_array_header_1_0(
                    f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                        "shape": shape})
                offset = f.tell()
                self.file_bytes = offset + int(np.prod(shape))
                _reserve(f.fileno(), self.file_bytes, final.parent)
            return np.memmap(name, dtype=np.uint8, mode="r+", offset=offset, shape=shape)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise

    def publish(self, final: str | os.PathLike) -> None:
        """Flush the filled file and give it its name (``final``: the ``file`` it was created for)."""
        self._array.flush()
        os.replace(self.file, final)  # replaces whatever was planted at the name meanwhile, never writes through it
        self.file, self.published = str(final), True

    def discard(self) -> None:
        """Remove a cache file not yet published (filling failed or was interrupted)."""
        if not self.published:
            self._array = None
            Path(self.file).unlink(missing_ok=True)

    def check(self) -> None:
        """Raise :class:`FrameCacheError` when the cache file is shorter than what was written: read past its end,
        a mapped page is a SIGBUS that kills the process (or a loader worker) without a word."""
        if self.file is None:
            return
        try:
            size = os.stat(self.file).st_size
        except OSError as e:
            raise FrameCacheError(f"the frame cache '{self.file}' of this run is gone ({e.strerror}); rerun (it is "
                                  "rebuilt), or set data.cache=memory or data.cache=none") from None
        if size < self.file_bytes:
            raise FrameCacheError(f"the frame cache '{self.file}' is {size} bytes, {self.file_bytes} were written: it "
                                  "was cut short (a full disk, or another process truncated it); rerun (it is "
                                  "rebuilt), or set data.cache=memory or data.cache=none")

    def __getstate__(self) -> dict[str, Any]:
        # Never pickle the pages: a worker maps the file again (read-only) or gets the shared-memory tensor.
        return {**self.__dict__, "_array": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.file is not None:
            self.check()
            self._array = np.load(self.file, mmap_mode="r", allow_pickle=False)
        else:
            self._array = self._tensor.numpy()

    @property
    def nbytes(self) -> int:
        return int(self._array.nbytes)

    def __contains__(self, path: str) -> bool:
        return path in self.filled

    def put(self, path: str, frames: torch.Tensor) -> None:
        """Store all frames of ``path``: uint8 ``(n, 3, H, W)`` with ``n`` as declared."""
        start, n = self.index[path]
        self._array[start:start + n] = frames.permute(0, 2, 3, 1).numpy()
        self.filled.add(path)

    def frames(self, path: str, indices: np.ndarray) -> torch.Tensor:
        """Frames ``indices`` of ``path`` (clamped to its last frame, as ``read_frames``): ``uint8 (len, 3, H, W)``."""
        start, n = self.index[path]
        idx = np.minimum(np.asarray(indices, dtype=np.int64), n - 1) + start
        return torch.from_numpy(np.ascontiguousarray(self._array[idx])).permute(0, 3, 1, 2).contiguous()


def _reserve(fd: int, size: int, folder: Path) -> None:
    """Allocate ``size`` bytes of disk for the open file ``fd`` now. A memory-mapped file grown with ftruncate is
    sparse: on a full disk the first write to a page is a SIGBUS (exit 135, no message, the partial file left)."""
    if not hasattr(os, "posix_fallocate"):  # macOS, Windows: sparse, as before
        os.ftruncate(fd, size)
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            free = shutil.disk_usage(folder).free
            raise CacheDoesNotFit(f"disk full: the frame cache needs {_gib(size)} in {folder}, {_gib(free)} free; "
                                  "free some space, use a smaller data.decode_size, or data.cache=memory or "
                                  "data.cache=none") from None
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.ftruncate(fd, size)  # a file system without fallocate: sparse, as before


def _decide(mode: str, need: int, folder: Path | None, reserve: int = 0) -> str:
    """Where ``need`` bytes go for ``mode``: ``memory``, ``disk`` or ``none``; raises when an explicit mode does
    not fit. ``reserve``: bytes the run needs on the same disk besides the cache (its checkpoint), so that a
    cache on disk never leaves too little room for the checkpoint after it was filled."""
    ram = available_memory() * RAM_FRACTION
    fits_ram = need <= ram
    free = shutil.disk_usage(_existing(folder)).free if folder is not None else 0
    fits_disk = folder is not None and need + reserve <= free * 0.9
    if mode == "memory" and not fits_ram:
        raise CacheDoesNotFit(
            f"data.cache=memory needs {_gib(need)} but only {_gib(ram)} (half the available RAM) is free; use "
            "data.cache=disk, a smaller data.decode_size, or data.cache=none")
    if mode == "disk" and not fits_disk:
        besides = f" (and {_gib(reserve)} for the run's checkpoint)" if reserve else ""
        where = f"{folder} has {_gib(free)} free" if folder is not None else "no run folder was given"
        raise CacheDoesNotFit(f"data.cache=disk needs {_gib(need)}{besides} but {where}; free some space, use a "
                              "smaller data.decode_size, or data.cache=none")
    if mode == "auto":
        return "memory" if fits_ram else "disk" if fits_disk else "none"
    return mode


def _existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def attach_cache(dataset: Any, mode: str, folder: str | os.PathLike | None = None, quiet: bool = False,
                 reserve: int = 0) -> str:
    """Fill a :class:`FrameCache` for ``dataset`` (every video decoded once, with a progress bar) and attach it
    (``dataset.frame_cache``), so its items index the cache instead of decoding.

    Args:
        dataset: a :class:`~videocontrast.data.datasets.VideoDataset` with an int or ``(H, W)`` ``decode_size``.
        mode: one of :data:`CACHE_MODES`.
        folder: the run folder, where ``disk`` writes :data:`CACHE_FILE`.
        quiet: do not print the estimate or show the bar.
        reserve: bytes the run writes to ``folder``'s disk besides the cache (its checkpoint): ``disk`` needs room
            for both.

    Returns:
        the mode used (``auto`` resolved; ``none`` when nothing is cached).

    Raises:
        CacheDoesNotFit: ``memory``/``disk`` asked for and the estimate does not fit (one line naming data.cache).
        VideoDecodeError: with ``dataset.strict``, the first file that does not decode.
    """
    if mode not in CACHE_MODES:
        raise ValueError(f"data.cache='{mode}' is not one of {CACHE_MODES}")
    if mode == "none" or len(dataset) == 0:
        return "none"
    need, frames = estimate_bytes(dataset)
    folder_path = Path(folder) if folder is not None else None
    used = _decide(mode, need, folder_path, reserve)
    box = dataset.frame_box
    if not quiet:
        what = {"memory": "in shared memory", "disk": f"memory-mapped in {folder_path / CACHE_FILE}" if folder_path
                else "", "none": "not cached: it fits neither in half the available RAM nor on the run's disk"}[used]
        print(f"[videocontrast] data.cache={mode}: {len(dataset)} videos, {frames} frames at {box[0]}x{box[1]} "
              f"= {_gib(need)}; {what}", flush=True)
    if used == "none":
        return "none"
    file = None
    if used == "disk":
        folder_path.mkdir(parents=True, exist_ok=True)
        file = folder_path / CACHE_FILE
    lengths = []
    for j in range(len(dataset.records)):
        try:
            lengths.append(dataset._info(j).num_frames)
        except VideoDecodeError as e:
            if dataset.strict:
                raise
            if not dataset._is_bad(j):
                dataset._report(j, e)  # said once; the dataset's replacement rule skips it from now on
            lengths.append(0)
    paths = [r.path for r in dataset.records]
    try:
        cache = FrameCache(paths, lengths, box, file)
    except CacheDoesNotFit as e:
        if mode != "auto":
            raise
        if not quiet:
            print(f"[videocontrast] data.cache=auto: not cached ({e})", flush=True)
        return "none"
    fit = "cover" if isinstance(dataset.decode_size, (int, np.integer)) else "stretch"
    bar = tqdm(total=len(paths), desc="decoding into the frame cache", unit="video", disable=quiet,
               dynamic_ncols=True)
    try:
        for j, (path, n) in enumerate(zip(paths, lengths)):
            bar.update(1)
            if n == 0 or dataset._is_bad(j):
                continue
            try:
                cache.put(path, read_frames(path, np.arange(n), size=box, info=dataset._info(j), fit=fit))
            except VideoDecodeError as e:
                if dataset.strict:
                    raise
                dataset._report(j, e)  # said once; the dataset's replacement rule skips it from now on
        if file is not None:
            cache.publish(file)
    except BaseException:
        cache.discard()  # a half-filled cache file is never left behind
        raise
    finally:
        bar.close()
    dataset.frame_cache = cache
    return used
