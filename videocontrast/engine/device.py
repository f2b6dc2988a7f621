"""Where and in which precision a run computes: ``train.device`` and ``train.precision``."""

from __future__ import annotations

import torch

from .. import dist

PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # train.precision


def resolve_device(name: str, info: dist.DistInfo | None = None) -> torch.device:
    """``train.device`` -> a device: ``auto`` is this process's accelerator (cuda:LOCAL_RANK) or the CPU."""
    info = info or dist.init_distributed()
    return info.device if name == "auto" else torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA by default (no loss scaling needed); fp32 (no autocast) on CPU unless asked."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
