"""The training loader: sharded and shuffled per epoch, with as many batches in flight as shared memory allows.

DataLoader workers hand their batches to the main process through shared memory (``/dev/shm`` on Linux), each
worker keeping ``prefetch_factor`` batches ready. At the thesis setting (batch 128 of two 16-frame 240x320 RGB
views, 943 MiB of uint8 per batch) the old fixed ``prefetch_factor=4`` with 8 workers asked for 30 GB of it; a
container's default /dev/shm is 64 MiB. So the prefetch is sized by bytes, and a setting that cannot fit even
one batch per worker is refused before training with what to do, instead of a worker dying of SIGBUS mid-epoch.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from .. import dist
from ..config import Config
from ..data.datasets import VideoDataset

# At most this many bytes of batches waiting in the workers' queues (per process), and at most half of the free
# shared memory; within that, up to MAX_PREFETCH batches per worker (PyTorch's default is 2).
PREFETCH_BYTES = 8 << 30
MAX_PREFETCH = 4
SHM_PATH = Path("/dev/shm")


class SharedMemoryError(ValueError):
    """The loader's batches cannot fit in shared memory; the message says what to change. A ``ValueError``, so
    the command line reports it in one line."""


def shared_memory_free() -> int | None:
    """Free bytes of ``/dev/shm``, or None where there is no such folder (macOS, Windows: no fixed limit)."""
    try:
        return shutil.disk_usage(SHM_PATH).free
    except OSError:
        return None


def batch_bytes(cfg: Config, dataset: VideoDataset, batch_size: int) -> int:
    """Bytes of one loader batch of ``dataset``: ``batch_size`` items of V views of T frames, uint8 frames of the
    dataset's frame box (decoded size), or float32 at ``data.size`` when the workers augment
    (``aug.on_device=false``)."""
    views = dataset.views_fn(10_000, np.random.default_rng(0))  # V index arrays of T frames
    v, t = len(views), len(views[0])
    box = dataset.frame_box or (240, 320)  # native sizes: UCF101's and HMDB51's
    if dataset.transform is None:
        return batch_size * v * t * 3 * box[0] * box[1]
    size = cfg.data.size
    return batch_size * v * t * 3 * size * size * 4


def prefetch_factor(one_batch: int, workers: int, shm_free: int | None, processes: int = 1) -> int:
    """Batches each of ``workers`` keeps ready: as many as fit (1 to :data:`MAX_PREFETCH`) in
    :data:`PREFETCH_BYTES` and in half of ``shm_free`` (None: no limit known), all workers of the ``processes``
    of this machine together.

    Raises:
        SharedMemoryError: not even one batch per worker fits in ``shm_free``.
    """
    need = processes * workers * one_batch
    if shm_free is not None and need > shm_free:
        who = f"{workers} worker(s)" + (f" in each of {processes} processes" if processes > 1 else "")
        raise SharedMemoryError(
            f"the training loader needs about {_gib(need)} of shared memory ({SHM_PATH}) for {who} x 1 batch of "
            f"{_gib(one_batch)}, and {SHM_PATH} has {_gib(shm_free)} free: lower data.num_workers or "
            "optim.batch_size (or data.decode_size), set data.num_workers=0, or give the machine more shared "
            "memory (docker run --shm-size=16g, or a larger tmpfs on /dev/shm)")
    budget = PREFETCH_BYTES * processes if shm_free is None else min(PREFETCH_BYTES * processes, shm_free // 2)
    return int(min(MAX_PREFETCH, max(1, budget // max(need, 1))))


def _gib(n: int) -> str:
    return f"{n / 2 ** 30:.2f} GiB" if n >= 2 ** 30 else f"{math.ceil(n / 2 ** 20)} MiB"


def train_loader(cfg: Config, dataset: VideoDataset, info: dist.DistInfo,
                 device: torch.device) -> tuple[DataLoader, DistributedSampler, int]:
    """The sharded, shuffled training loader, its sampler (``set_epoch`` each epoch) and the number of optimiser
    steps per epoch.

    Raises:
        ValueError: the batch does not divide over processes and accumulation steps, or exceeds the dataset.
        SharedMemoryError: the workers' batches cannot fit in shared memory.
    """
    world, gb, accum = info.world_size, cfg.optim.batch_size, cfg.optim.accum_steps
    if gb % (world * accum):
        raise ValueError(f"optim.batch_size={gb} must be divisible by processes x optim.accum_steps "
                         f"= {world} x {accum}")
    if len(dataset) < gb:
        raise ValueError(f"the training set has {len(dataset)} videos, fewer than optim.batch_size={gb}: "
                         "lower optim.batch_size")
    sampler = DistributedSampler(dataset, num_replicas=world, rank=info.rank, shuffle=True,
                                 seed=cfg.train.seed, drop_last=True)
    nw, per_rank = cfg.data.num_workers, gb // (world * accum)
    prefetch = None
    if nw > 0:
        # the processes of one machine share its /dev/shm
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        prefetch = prefetch_factor(batch_bytes(cfg, dataset, per_rank), nw, shared_memory_free(), local)
    loader = DataLoader(dataset, batch_size=per_rank, sampler=sampler, num_workers=nw, drop_last=True,
                        pin_memory=device.type == "cuda", persistent_workers=nw > 0, prefetch_factor=prefetch)
    steps = len(loader) // accum
    if cfg.train.max_steps_per_epoch:
        steps = min(steps, cfg.train.max_steps_per_epoch)
    return loader, sampler, steps


def is_shared_memory_failure(error: BaseException) -> bool:
    """Whether ``error`` (raised while iterating a loader) is a worker running out of shared memory."""
    text = str(error)
    return ("shared memory" in text or "Bus error" in text or "shm" in text
            or ("No space left on device" in text and "torch_" in text))


def shared_memory_message(error: BaseException, cfg: Config, kept: str, resume_hint: str) -> str:
    """One line for :func:`is_shared_memory_failure`: what happened, what to change, what was kept."""
    first = (str(error).strip().splitlines() or [""])[0].split(". ")[0][:200]  # PyTorch's first sentence
    return (f"a data loader worker ran out of shared memory ({SHM_PATH}: {first}); lower data.num_workers="
            f"{cfg.data.num_workers} or optim.batch_size={cfg.optim.batch_size}, set data.num_workers=0, or give "
            f"the machine more shared memory (docker run --shm-size=16g); {kept}: {resume_hint}")
