"""Distributed helpers with a single code path: every function works (as a no-op) in one process.

Launch with ``torchrun --nproc_per_node=G ...``; without torchrun ``init_distributed()`` returns
rank 0 / world size 1 and creates no process group, and everything below degrades to identity.

Two kinds of gather, kept apart on purpose:

* ``gather_with_grad`` (SimCLR's global negatives): an autograd function whose backward sums the
  gradients of all ranks (all-reduce) and returns this rank's slice, so that
  ``d(sum_r loss_r) / d x_local`` is exact (lightly's ``GatherLayer``; the plain ``all_gather`` has no grad).
* ``gather_no_grad`` (MoCo's keys for the queue, shuffle BN): a plain all-gather of constants.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "DistInfo",
    "all_reduce_mean",
    "barrier",
    "convert_sync_bn",
    "gather_no_grad",
    "gather_with_grad",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_dist",
    "is_main_process",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def is_dist() -> bool:
    """True when a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def init_distributed(backend: str | None = None, init_method: str | None = None) -> DistInfo:
    """Initialise from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

    Args:
        backend: ``"nccl"`` or ``"gloo"``; default nccl when CUDA is available, else gloo.
        init_method: process-group rendezvous; default ``"env://"`` (``MASTER_ADDR``/``MASTER_PORT``).

    Returns:
        ``DistInfo`` with the device this rank should use: ``cuda:LOCAL_RANK`` with CUDA, else ``cpu``.
        Without the environment variables (or with ``WORLD_SIZE=1``): rank 0, world 1, no process group.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if use_cuda else "gloo")
        if backend not in ("nccl", "gloo", "mpi", "ucc"):
            raise ValueError(f"backend: unknown distributed backend {backend!r}")
        dist.init_process_group(backend, init_method=init_method or "env://", rank=rank, world_size=world_size)
    if dist.is_available() and dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def barrier() -> None:
    if is_dist():
        dist.barrier()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward: all-reduce (sum) the gradients of all ranks, keep this rank's slice."""

    @staticmethod
    def forward(ctx, x: Tensor) -> tuple[Tensor, ...]:
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x)
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: Tensor) -> Tensor:
        # Every rank's loss may depend on our x through its gathered copy: sum those contributions.
        all_grads = torch.stack(grads)  # (W, N, ...)
        dist.all_reduce(all_grads, op=dist.ReduceOp.SUM)
        return all_grads[dist.get_rank()]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` of all ranks along dim 0, differentiably. ``(N, ...) -> (W*N, ...)``.

    All ranks must pass the same shape. Identity when the world size is 1.
    """
    if not is_dist():
        return x
    return torch.cat(_GatherWithGrad.apply(x.contiguous()), dim=0)


@torch.no_grad()
def gather_no_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` of all ranks along dim 0, without gradient. ``(N, ...) -> (W*N, ...)``."""
    if not is_dist():
        return x
    x = x.contiguous()
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x)
    return torch.cat(out, dim=0)


@torch.no_grad()
def all_reduce_mean(x: Tensor) -> Tensor:
    """Mean of ``x`` over ranks (a new tensor; ``x`` is unchanged)."""
    y = x.detach().clone()
    if is_dist():
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        y /= dist.get_world_size()
    return y


def convert_sync_bn(model: nn.Module) -> nn.Module:
    """BatchNorm -> SyncBatchNorm when running on more than one rank (``bn_mode="sync"``); else unchanged.

    Raises:
        ValueError: more than one rank without CUDA (SyncBatchNorm has no CPU implementation).
    """
    if is_dist():
        if not torch.cuda.is_available():
            raise ValueError("bn_mode: 'sync' needs CUDA devices (SyncBatchNorm has no CPU implementation); "
                             "use 'shuffle' or 'none' for multi-process CPU runs")
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model
