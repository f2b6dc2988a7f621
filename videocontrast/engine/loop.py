"""One training epoch and what it carries: the state of a run (:class:`TrainState`), the metrics log (JSON lines
and TensorBoard), the augmentation generator of a step (seeded by ``(seed, step, rank)``, so a resumed run replays
the same draws), and the errors a run stops with (a non-finite loss; an interruption after a clean checkpoint)."""

from __future__ import annotations

import contextlib
import json
import warnings
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import dist
from ..fileio import open_append
from ..methods.supervised import check_labels


# Called on the main process every `train.knn_every` epochs with the current backbone; returns metrics to log
# (e.g. {"knn_top1": 0.41}) or {} when there is nothing to measure. Built by the caller (eval.run.knn_monitor),
# so the engine never imports evaluation code.
Monitor = Callable[[nn.Module], Mapping[str, float]]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the run stops and the last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped training. The last checkpoint is kept as it was (a checkpoint being written when
    the signal came is finished first) and ``metrics.jsonl`` is cut back to it; the interrupted epoch restarts on
    resume (a mid-epoch checkpoint could not be resumed exactly)."""

    def __init__(self, out_dir: Path, checkpoint: Path | None, epochs_saved: int, epoch: int):
        self.out_dir, self.checkpoint, self.epochs_saved, self.epoch = out_dir, checkpoint, epochs_saved, epoch
        super().__init__(self.describe())

    def describe(self) -> str:
        if self.checkpoint is None:
            return (f"training stopped during epoch {self.epoch} before any checkpoint was written in "
                    f"'{self.out_dir}'; a rerun starts over")
        return (f"training stopped during epoch {self.epoch}; the last checkpoint {self.checkpoint} (epoch "
                f"{self.epochs_saved}) is kept, and training continues from epoch {self.epochs_saved + 1} on resume")


def unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def aug_generator(device: torch.device, seed: int, step: int, rank: int) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step) * 1_009 + rank)
    return g


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` and scalars to TensorBoard (rank 0 only)."""

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool = True):
        self.enabled = enabled
        self.path = out_dir / "metrics.jsonl"
        self.writer = None
        if enabled and tensorboard:
            # a required dependency, imported here because it takes a second to load and only training logs
            from torch.utils.tensorboard import SummaryWriter

            try:
                self.writer = SummaryWriter(str(out_dir / "tb"))
            except OSError as e:  # tb/ cannot be made: metrics.jsonl still has everything
                warnings.warn(f"no TensorBoard log in {out_dir / 'tb'} ({e.strerror or e}); metrics.jsonl has "
                              "every metric", RuntimeWarning, stacklevel=2)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open_append(self.path, "metrics file") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            step = record.get("step", 0)
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.writer.add_scalar(f"{record.get('kind', 'train')}/{k}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class TrainState:
    """Everything one epoch reads (model, optimiser, schedules, settings) and advances (epoch, step, history)."""

    model: nn.Module  # the objective, possibly wrapped in DDP / torch.compile: forward(...) -> (loss, stats)
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    augment: nn.Module  # uint8 (B, T, C, H, W) -> float (B, C, T, H, W), batched on `device`
    device: torch.device
    amp: torch.dtype | None  # autocast dtype, None for fp32
    lr_schedule: np.ndarray  # (epochs * steps_per_epoch,) peak-relative lr per optimiser step
    momentum_schedule: np.ndarray | None  # MoCo's key-encoder momentum per step; None for other objectives
    steps_per_epoch: int
    accum_steps: int
    labels: bool  # supervised objective: model(clips, labels) instead of model(view_1, view_2)
    seed: int
    channels_last: bool
    log_every: int
    log: MetricsLog
    progress: Any = None  # tqdm bar on the main process
    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps completed
    history: list[dict[str, Any]] = field(default_factory=list)


def _model_inputs(state: TrainState, batch: dict[str, Any], micro_step: int) -> tuple[torch.Tensor, ...]:
    """A batch -> the objective's arguments: two augmented views ``(B, C, T, H, W)`` each, or (supervised)
    all clips ``(B*V, C, T, H, W)`` and their labels ``(B*V,)``. Batches are ``uint8 (B, V, T, C, H, W)``
    (augmented here, on the device) or already augmented ``float (B, V, C, T, H, W)`` from loader workers."""
    x = batch["video"].to(state.device, non_blocking=True)
    if x.dtype == torch.uint8:
        g = aug_generator(state.device, state.seed, micro_step, dist.get_rank())
        views = [state.augment(x[:, v], generator=g) for v in range(x.shape[1])]
    else:
        views = [x[:, v] for v in range(x.shape[1])]
    if state.channels_last:
        views = [v.contiguous(memory_format=torch.channels_last_3d) for v in views]
    if not state.labels:
        return tuple(views)
    labels = torch.as_tensor(batch["label"]).long()  # (B,), on the host
    check_labels(labels, unwrap(state.model).num_classes)  # here, where it costs no device sync
    return torch.cat(views), labels.to(state.device, non_blocking=True).repeat(len(views))


def _check_finite(total: float, state: TrainState, first_step: int) -> None:
    if not math.isfinite(total):
        raise NonFiniteLossError(
            f"the loss is {total} at epoch {state.epoch + 1}, between steps {first_step} and {state.step}: the run "
            "diverged and stopped; try a lower optim.lr, a higher method.temperature, or train.precision=fp32")


def train_one_epoch(state: TrainState, loader: DataLoader) -> dict[str, float]:
    """One epoch (``state.steps_per_epoch`` optimiser steps of ``state.accum_steps`` micro-batches each).

    The loss is summed on the device and read back once every ``state.log_every`` steps (and at the end of the
    epoch), not after every step: a read is a host-device sync that stalls the GPU's queue before the backward
    pass. The non-finite check rides on the same reads, so a NaN stops the run within ``log_every`` steps, before
    the next checkpoint is written.

    Returns:
        ``loss`` (mean over this epoch's micro-batches and all ranks), ``time_s`` and ``clips_per_s``.
    """
    model, optimizer, accum = state.model, state.optimizer, state.accum_steps
    model.train()
    world = dist.get_world_size()
    epoch_sum = torch.zeros((), device=state.device)  # this epoch's loss, on the device (fp32: MPS has no fp64)
    window_sum = torch.zeros((), device=state.device)  # since the last log line
    n = window_n = 0
    window_start = state.step
    t0 = time.perf_counter()
    t_log, clips_log = t0, 0
    stats: Mapping[str, Any] = {}
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(loader):
        if i >= state.steps_per_epoch * accum:
            break
        it = state.step
        lr = float(state.lr_schedule[it])
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        inputs = _model_inputs(state, batch, it * accum + i % accum)
        last_micro = (i + 1) % accum == 0
        sync = last_micro or not isinstance(model, nn.parallel.DistributedDataParallel)
        ctx = model.no_sync() if not sync else contextlib.nullcontext()
        with ctx, torch.autocast(state.device.type, dtype=state.amp or torch.float32, enabled=state.amp is not None):
            loss, stats = model(*inputs)
        with ctx:
            state.scaler.scale(loss / accum).backward()
        detached = loss.detach().float()
        epoch_sum += detached
        window_sum += detached
        n, window_n = n + 1, window_n + 1
        clips_log += batch["video"].shape[0] * world
        if not last_micro:
            continue
        state.scaler.step(optimizer)
        state.scaler.update()
        optimizer.zero_grad(set_to_none=True)
        if state.momentum_schedule is not None:
            unwrap(model).momentum_update(float(state.momentum_schedule[it]))
        state.step += 1
        if state.progress is not None:
            state.progress.update(1)
        if state.step % state.log_every == 0:
            # the one host sync of these log_every steps: the window's loss and the last step's stats together
            # (the loss averaged over ranks, so that every rank stops at the same step)
            keys = [k for k in stats if k != "loss"]
            values = torch.stack([dist.all_reduce_mean(window_sum / window_n),
                                  *(torch.as_tensor(stats[k], device=state.device).float() for k in keys)]).tolist()
            _check_finite(values[0], state, window_start)
            now = time.perf_counter()
            rate = clips_log / max(now - t_log, 1e-9)
            state.log.log({"kind": "train", "epoch": state.epoch + 1, "step": state.step, "loss": values[0],
                           "lr": lr, "clips_per_s": rate, **dict(zip(keys, values[1:]))})
            if state.progress is not None:
                state.progress.set_postfix(loss=f"{values[0]:.3f}", lr=f"{lr:.2e}")
            t_log, clips_log = now, 0
            window_sum.zero_()
            window_n, window_start = 0, state.step
    mean = epoch_sum / n if n else torch.tensor(math.nan, device=state.device)
    loss_mean = float(dist.all_reduce_mean(mean).item())  # on the training device: NCCL reduces CUDA tensors only
    if n:
        _check_finite(loss_mean, state, window_start)
    elapsed = time.perf_counter() - t0
    return {"loss": loss_mean, "time_s": elapsed,
            "clips_per_s": n * loader.batch_size * world / max(elapsed, 1e-9)}


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


@contextlib.contextmanager
def cudnn_autotune(enabled: bool):
    """``torch.backends.cudnn.benchmark = enabled`` while the block runs, then as it was.

    Training clips all have one shape, so cuDNN's search for the fastest 3D convolution kernels (a few seconds at
    the first step) pays for itself; it picks kernels by timing, so ``train.deterministic`` turns it off."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before
