"""Peak training memory, estimated before the first step from the encoder's leaf outputs traced on the meta device,
so a run too big for its device stops at once with the numbers and the settings that lower them, instead of being
killed by the kernel minutes later."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..config import Config
from ..methods import encoder_of
from ..names import input_frames
from .device import autocast_dtype, available_memory


def checkpoint_bytes(model: nn.Module, optimizer_name: str) -> int:
    """About the size of a checkpoint of ``model``: its state plus the optimiser's per-parameter state (Adam keeps
    two tensors per parameter, SGD/LARS one), plus 1 MiB for the rest."""
    state = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return state + (2 if optimizer_name.startswith("adam") else 1) * params + (1 << 20)


class MemoryTooSmallError(ValueError):
    """A run's estimated peak memory exceeds what its device has free; the message (one line) gives both numbers
    and the settings that lower the estimate."""


# Peak training memory of one process, estimated before the first step. The activations are the outputs of the
# encoder's leaf modules (convolutions, norms, non-in-place activations: what autograd keeps until the backward
# pass) for one clip, traced on the meta device, x 4 bytes x clips per step x views x a factor measured here on a
# CPU (r3d_18, Adam, fp32, resource.getrusage maxrss over two training steps of two views, one batch size against
# another): one more clip-view added 271 MiB to the peak at 16x112x112 where the leaf outputs are 163 MiB (1.66),
# and 35 MiB at 8x64x64 where they are 27 MiB (1.3); so 1.7 on a CPU. On CUDA the factor is 1.0 (cuDNN keeps about
# the leaf outputs; not measured here: no GPU was lent) and 16-bit autocast halves it. Added: 4 copies of the
# parameters for Adam (weights, gradients, two moments; 3 for SGD/LARS) and 512 MiB for the framework, the loader's
# batches and the augmentation. Checks: r3d_18 16x112x112 batch 4 peaks at 3.2 GiB RSS, estimated 3.2 GiB; the
# default config on a CPU (r3d_18, global batch 128, 16x112x112, two views) is estimated at 70 GiB, where it was
# seen OOM-killed at 19.5 GB (that machine's limit). The head, the loss and MoCo's key encoder are left out (small).
ACTIVATION_FACTOR = {"cpu": 1.7, "cuda": 1.0}


HALF_PRECISION_FACTOR = 0.5


MEMORY_OVERHEAD = 512 << 20


def activation_elements(encoder: nn.Module, clip_len: int, size: int, channels: int = 3) -> int | None:
    """Sum of the output sizes of ``encoder``'s leaf modules for one clip ``(1, C, T, size, size)``, traced on the
    ``meta`` device (shapes only: no memory, no compute); None when the encoder cannot run there."""
    try:
        meta = copy.deepcopy(encoder).to("meta").eval()  # eval: BatchNorm takes a single value per channel too
    except (RuntimeError, NotImplementedError, TypeError):
        return None
    total = 0

    def count(module: nn.Module, inputs: Any, output: Any) -> None:
        nonlocal total
        total += sum(t.numel() for t in (output if isinstance(output, (tuple, list)) else [output])
                     if isinstance(t, torch.Tensor))

    # an in-place module (ReLU(inplace=True)) writes into its input's memory: nothing new to keep
    hooks = [m.register_forward_hook(count) for m in meta.modules()
             if not list(m.children()) and not getattr(m, "inplace", False)]
    try:
        with torch.no_grad():
            meta(torch.empty(1, channels, clip_len, size, size, device="meta"))
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        return None
    finally:
        for h in hooks:
            h.remove()
    return total


def estimate_peak_memory(cfg: Config, model: nn.Module, micro_batch: int, kind: str,
                         device: torch.device) -> int | None:
    """Bytes one process's training step is estimated to peak at (see the note above :data:`ACTIVATION_FACTOR`);
    None when the encoder cannot be traced."""
    t = input_frames(cfg.data.input, cfg.data.clip_len)
    per_clip = activation_elements(encoder_of(model), t, cfg.data.size)
    if per_clip is None:
        return None
    views = 2 if kind == "pretrain" else 1
    half = autocast_dtype(cfg.train.precision, device) in (torch.bfloat16, torch.float16)
    factor = ACTIVATION_FACTOR.get(device.type, ACTIVATION_FACTOR["cpu"]) * (HALF_PRECISION_FACTOR if half else 1.0)
    act = per_clip * 4 * micro_batch * views * factor
    copies = 4 if cfg.optim.name.startswith("adam") else 3  # weights, gradients, optimiser state
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return int(act + copies * params + MEMORY_OVERHEAD)


def check_memory(cfg: Config, model: nn.Module, micro_batch: int, kind: str, device: torch.device,
                 processes: int = 1) -> None:
    """Refuse a run whose estimated peak (:func:`estimate_peak_memory`, times ``processes`` sharing that memory:
    the ranks of this machine on a CPU) exceeds the memory ``device`` has free, before its first step: on a CPU the
    kernel's OOM killer would end it later without a word (SIGKILL).

    Raises:
        MemoryTooSmallError: one line with the estimate, what is free, and the settings to lower.
    """
    one = estimate_peak_memory(cfg, model, micro_batch, kind, device)
    if one is None:
        return
    need = one * processes
    free, where = available_memory(device)
    if need <= free:
        return
    gib = 2 ** 30
    ranks = f"{processes} processes x " if processes > 1 else ""
    raise MemoryTooSmallError(
        f"training needs about {need / gib:.1f} GiB of memory ({ranks}{micro_batch} clips per step x "
        f"{2 if kind == 'pretrain' else 1} view(s) of {cfg.data.clip_len}x{cfg.data.size}x{cfg.data.size} through "
        f"{cfg.model.backbone}) but {free / gib:.1f} GiB is {where}; lower optim.batch_size (or raise "
        "optim.accum_steps, which keeps the global batch), data.clip_len or data.size")
