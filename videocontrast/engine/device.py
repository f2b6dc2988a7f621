"""Where and in which precision a run computes: ``train.device`` and ``train.precision``."""

from __future__ import annotations

import os

import torch

from .. import dist
from ..data.cache import available_memory as available_ram  # the one reader of /proc/meminfo
from ..names import DEVICE_TYPES, PRECISIONS, check_device_name  # train.device, train.precision


def parse_device(name: str, field: str = "train.device") -> torch.device | None:
    """``name`` as a device (None for ``auto``), without asking whether this machine has it.

    Raises:
        ValueError: one line naming ``field``, for a name that is not a device videocontrast trains on.
    """
    return None if check_device_name(name, field) == "auto" else torch.device(name)


def default_device() -> torch.device:
    """What ``auto`` means everywhere: this process's GPU (``cuda:LOCAL_RANK``, as torchrun numbers them) when CUDA
    is available, else the CPU. Asking starts no process group."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    return torch.device("cpu")


def resolve_device(name: str | torch.device | None, info: dist.DistInfo | None = None,
                   field: str = "train.device") -> torch.device:
    """The one device resolver: ``train.device`` or ``--device`` (``auto``/None, ``cpu``, ``cuda``, ``cuda:N``,
    ``mps``) -> a device this machine has. ``auto`` is ``info``'s device when given, else :func:`default_device`.

    ``field`` is how the user named the setting: ``train.device`` (messages say ``train.device=cuda``) or a flag
    such as ``--device`` (messages say ``--device cuda``).

    Raises:
        ValueError: one line naming ``field``: not a device, or a GPU this machine does not have.
    """
    name = "auto" if name is None else str(name)
    device = parse_device(name, field)
    if device is None:
        return info.device if info is not None else default_device()
    flag = field.startswith("--")
    return check_available(device, f"{field} {name}" if flag else f"{field}={name}",
                           f"{field} cpu" if flag else f"{field}=cpu or auto")


def check_available(device: torch.device, asked: str, instead: str) -> torch.device:
    """``device`` when this machine has it; else a one-line ValueError starting with ``asked`` (how the user
    named it, e.g. ``train.device=cuda:1`` or ``--device cuda``) and suggesting ``instead``."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{asked}: CUDA is not available on this machine (torch {torch.__version__}, "
                             f"CUDA build {torch.version.cuda or 'none'}); use {instead}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"{asked}: this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"{asked}: MPS is not available on this machine; use {instead}")
    return device


def available_memory(device: torch.device) -> tuple[int, str]:
    """Bytes a run on ``device`` may still allocate, and where that number comes from (for messages)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"free on {device} (torch.cuda.mem_get_info)"
    return available_ram(), "available RAM (MemAvailable)"


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA by default (no loss scaling needed); fp32 (no autocast) on CPU unless asked."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
