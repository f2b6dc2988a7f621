"""Optimisers and per-iteration schedules.

Schedules are computed once as arrays with one value per iteration (as in DINO), so resuming at step k
uses exactly the value an uninterrupted run would have used.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch
from torch import nn

from ..names import OPTIMIZERS  # optim.name


def cosine_schedule(base: float, final: float, epochs: int, steps_per_epoch: int,
                    warmup_epochs: float = 0.0, warmup_start: float = 0.0, hold_epochs: float = 0.0) -> np.ndarray:
    """Linear warm-up from ``warmup_start`` to ``base``, ``base`` held for ``hold_epochs``, then cosine decay to
    ``final`` over the remaining iterations.

    The hold is the thesis code's schedule (simionAndrei/MScThesis train_videos_3d.py: the lr stays at 3e-4 for
    the first 10 epochs, then ``CosineAnnealingLR`` steps).

    Returns:
        float64 array of length ``epochs * steps_per_epoch``; entry i is the value at iteration i.
    """
    total = epochs * steps_per_epoch
    warm = min(int(round(warmup_epochs * steps_per_epoch)), total)
    hold = min(int(round(hold_epochs * steps_per_epoch)), total - warm)
    warmup = np.linspace(warmup_start, base, warm, endpoint=False) if warm else np.empty(0)
    rest = np.arange(total - warm - hold)
    decay = final + 0.5 * (base - final) * (1 + np.cos(math.pi * rest / max(len(rest), 1)))
    return np.concatenate([warmup, np.full(hold, float(base)), decay])


def momentum_schedule(base_m: float, epochs: int, steps_per_epoch: int, cosine: bool) -> np.ndarray:
    """MoCo's key-encoder momentum per iteration: constant ``base_m``, or (``cosine``) increased from ``base_m``
    at step 0 towards 1 (BYOL, DINO): ``m_i = 1 - (1 - base_m) * (cos(pi * i / n) + 1) / 2``, ``n`` total steps.

    That is :func:`cosine_schedule` from ``base_m`` to 1 without warm-up.
    """
    if not cosine:
        return np.full(epochs * steps_per_epoch, float(base_m))
    return cosine_schedule(base_m, 1.0, epochs, steps_per_epoch)


def param_groups(model: nn.Module, weight_decay: float, lr_scales: Mapping[str, float] | None = None) -> list[dict]:
    """Trainable parameters in groups: norms and biases (ndim <= 1) get no weight decay, and a parameter whose
    name starts with a prefix of ``lr_scales`` gets ``lr_scale`` = that factor (others 1.0).

    The engine sets each group's rate to ``schedule[step] * lr_scale`` (fine-tuning: backbone at 1/10 of the head).
    """
    scales = dict(lr_scales or {})
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = next((f for prefix, f in scales.items() if name.startswith(prefix)), 1.0)
        groups.setdefault((float(scale), p.ndim <= 1), []).append(p)
    return [{"params": params, "weight_decay": 0.0 if no_decay else weight_decay, "lars_exclude": no_decay,
             "lr_scale": scale}
            for (scale, no_decay), params in sorted(groups.items(), key=lambda kv: (-kv[0][0], kv[0][1]))]


class LARS(torch.optim.Optimizer):
    """SGD with layer-wise adaptive rate scaling (You et al. 2017), as used for large-batch SimCLR.

    Parameters in a group with ``lars_exclude=True`` (norms, biases) get plain SGD with momentum.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient, lars_exclude=False))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad.clone()
                if not group["lars_exclude"]:
                    p_norm, g_norm = torch.norm(p), torch.norm(d_p)
                    trust = torch.where((p_norm > 0) & (g_norm > 0),
                                        group["trust_coefficient"] * p_norm / g_norm, torch.ones_like(p_norm))
                    d_p = d_p.mul(trust)
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = d_p.clone()
                else:
                    buf.mul_(group["momentum"]).add_(d_p)
                p.add_(buf, alpha=-group["lr"])
        return loss


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9,
                    lr_scales: Mapping[str, float] | None = None) -> torch.optim.Optimizer:
    """Build ``sgd`` | ``adam`` | ``adamw`` | ``lars`` over ``model``'s trainable parameters.

    The thesis code used Adam (lr 3e-4, weight decay 1e-6). The learning rate of every group is later
    overwritten per iteration by the schedule (times the group's ``lr_scale``, see :func:`param_groups`);
    ``lr`` here is only the initial value.
    """
    groups = param_groups(model, weight_decay, lr_scales)
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum)
    raise ValueError(f"optim.name='{name}' must be one of {', '.join(OPTIMIZERS)}")
