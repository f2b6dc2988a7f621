"""The training engine: one loop for videoSimCLR, videoMoCo, fine-tuning and the supervised baseline, on a CPU,
one GPU or many (torchrun).

The same code path runs with and without ``torchrun``: without it the world size is 1 and no process group
exists. Reproducibility and exact resume come from deriving every random draw from ``(seed, epoch, index)``
(data) or ``(seed, step, rank)`` (augmentation) instead of from hidden state, so a run resumed from a
checkpoint at an epoch boundary replays the same batches.

``pretrain`` and :func:`videocontrast.eval.finetune.finetune` differ only in the model they hand to :func:`fit`:
a method whose ``forward(view_1, view_2)`` returns ``(loss, stats)``, or a :class:`~videocontrast.methods.Supervised`
objective whose ``forward(clips, labels)`` does.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import dist
from ..build.components import build_augment, cache_frames, dataset_from_config, method_from_config
from ..config import Config, config_from_dict, dump_config
from ..data.datasets import VideoDataset
from ..fileio import open_append
from ..methods import MoCo, encoder_of
from ..methods.supervised import check_labels
from ..names import input_frames
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .device import autocast_dtype, available_memory, resolve_device
from .loader import SharedMemoryError, is_shared_memory_failure, shared_memory_message, train_loader
from .optim import build_optimizer, cosine_schedule, momentum_schedule
from .run import (MIN_FREE_BYTES, RunFolderError, check_free_space, clean_run_folder, deferred_interrupt,
                  describe_changes, resume_config, run_lock, truncate_metrics)

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
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional: tensorboard may be missing

                self.writer = SummaryWriter(str(out_dir / "tb"))
            except Exception:  # tensorboard missing or broken: metrics.jsonl still has everything
                self.writer = None

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


def open_run(out_dir: str | Path, resume: bool) -> dict[str, Any] | None:
    """The checkpoint a run folder already holds (to continue it), or None for a new run.

    Raises:
        FileExistsError: the folder holds a run and ``resume`` is False.
    """
    ckpt_path = Path(out_dir) / "checkpoints" / "last.pt"
    if not ckpt_path.exists():
        return None
    if not resume:
        raise FileExistsError(f"'{out_dir}' already holds a run ({ckpt_path}); pass --resume to continue it "
                              "or choose another --out")
    return load_checkpoint(ckpt_path)


def continue_run(out_dir: str | Path, cfg: Config, resume: bool, quiet: bool = False
                 ) -> tuple[Config, dict[str, Any] | None]:
    """The settings and checkpoint a run starts from: ``(cfg, None)`` for a new run; for a folder that holds one,
    its checkpoint and its stored settings with the changes of ``cfg`` that a resume allows (printed).
    Call it holding the folder's :func:`~videocontrast.engine.run.run_lock`.

    Raises:
        FileExistsError: the folder holds a run and ``resume`` is False.
        ResumeConfigError: ``cfg`` differs from the stored settings in a field that cannot change.
    """
    resumed = open_run(out_dir, resume)
    if resumed is None:
        return cfg, None
    cfg, changes = resume_config(config_from_dict(resumed["config"]), cfg, out_dir)
    if changes and not quiet and dist.is_main_process():
        print(f"[videocontrast] resuming '{out_dir}' at epoch {resumed['epoch']} with changed settings: "
              f"{describe_changes(changes)}", flush=True)
    return cfg, resumed


def fit(cfg: Config, out_dir: str | Path, model: nn.Module, dataset: VideoDataset, *, kind: str,
        resumed: dict[str, Any] | None = None, lr_scales: Mapping[str, float] | None = None,
        quiet: bool = False, monitor: Monitor | None = None,
        resume_hint: str = "continue with --resume",
        plan_epochs: Callable[[float], int] | None = None) -> dict[str, Any]:
    """Train ``model`` on ``dataset`` as ``cfg`` says, writing ``out_dir/{config.yaml, metrics.jsonl,
    checkpoints/last.pt}``, holding the folder's lock (:func:`~videocontrast.engine.run.run_lock`).

    Before the first write the folder is cleaned of what a killed run leaves (temporary checkpoint files, metrics
    past the checkpoint) and checked for room for a checkpoint. Ctrl-C raises :class:`TrainingInterrupted`.

    Args:
        model: the objective: a contrastive method (``forward(view_1, view_2)``) or a
            :class:`~videocontrast.methods.Supervised` (``forward(clips, labels)``); its ``(loss, stats)`` is
            minimised with ``cfg.optim`` over ``cfg.train.epochs`` epochs.
        kind: stored in the checkpoint (``pretrain``, ``finetune``, ``supervised``): how to read it back.
        resumed: the run folder's checkpoint (from :func:`open_run`) to continue from.
        lr_scales: parameter-name prefix -> lr multiplier (fine-tuning: ``{"backbone.": 0.1}``).
        monitor: see :data:`Monitor`; called every ``train.knn_every`` epochs.
        resume_hint: how the caller's user continues the run, in the messages about a time limit or a full disk
            (``demo`` continues when the same command is run again; ``pretrain`` needs ``--resume``).
        plan_epochs: for a new run, called once after its first epoch with that epoch's seconds (mean over ranks);
            returns the run's total epochs, which replace ``train.epochs`` (stored in config.yaml and the
            checkpoint; the lr schedule is rebuilt over the new total). Used to fill a wall-clock budget with a
            whole cosine schedule instead of cutting one short. Needs ``optim.warmup_epochs >= 1``: the first
            epoch is then warm-up, whose lr does not depend on the total, so it is the epoch the new plan would
            have trained.

    Returns:
        dict with ``checkpoint`` (path of last.pt), ``epochs``, ``steps``, ``history`` (per-epoch loss, time,
        clips/s), ``time_s``, ``config`` and ``model`` (the trained objective, unwrapped).

    Raises:
        TrainingInterrupted: on Ctrl-C; RunFolderError: the folder is in use, not writable or full.
    """
    if plan_epochs is not None and cfg.optim.warmup_epochs < 1:
        raise ValueError(f"planning the epochs after the first needs optim.warmup_epochs >= 1 "
                         f"(got {cfg.optim.warmup_epochs:g}): the first epoch must be warm-up")
    with run_lock(out_dir), cudnn_autotune(not cfg.train.deterministic):
        return _fit(cfg, Path(out_dir), model, dataset, kind=kind, resumed=resumed, lr_scales=lr_scales,
                    quiet=quiet, monitor=monitor, resume_hint=resume_hint,
                    plan_epochs=plan_epochs if resumed is None else None)


def _fit(cfg: Config, out: Path, model: nn.Module, dataset: VideoDataset, *, kind: str,
         resumed: dict[str, Any] | None, lr_scales: Mapping[str, float] | None, quiet: bool,
         monitor: Monitor | None, resume_hint: str, plan_epochs: Callable[[float], int] | None) -> dict[str, Any]:
    # -- set up
    info = dist.init_distributed()
    device = resolve_device(cfg.train.device, info)
    main = dist.is_main_process()
    ckpt_path = out / "checkpoints" / "last.pt"
    # After the run folder and its checkpoint were checked (a refused file costs no decoding); a finished run
    # reads no frames.
    ckpt_need = checkpoint_bytes(model, cfg.optim.name)
    if main:  # before the frames are decoded: a run that cannot save its checkpoint should not decode first
        # Written next to the old checkpoint before replacing it: the old one stays until the new one is complete.
        check_free_space(out, max(ckpt_need, MIN_FREE_BYTES), f"--out '{out}' (a checkpoint of this model)")
        for note in clean_run_folder(out, resumed["epoch"] if resumed is not None else 0):
            if not quiet:
                print(f"[videocontrast] {note}", flush=True)
    if resumed is None or resumed["epoch"] < cfg.train.epochs:
        # a cache on the run's disk leaves room for the checkpoint (checked for both before filling)
        cache_frames(cfg, dataset, out, reserve=max(ckpt_need, MIN_FREE_BYTES))
    loader, sampler, steps = train_loader(cfg, dataset, info, device)
    epochs = cfg.train.epochs
    if resumed is None or resumed["epoch"] < epochs:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size)) if device.type == "cpu" else 1
        check_memory(cfg, model, loader.batch_size, kind, device, processes=local)
    model = model.to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
    core = model
    if info.world_size > 1:  # (method.bn_mode=sync: build_method already converted BN to SyncBatchNorm)
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    o = cfg.optim
    # Over the unwrapped objective: under DDP the parameter names start with "module.", and lr_scales' prefixes
    # ("backbone.": fine-tuning's lr/10) would match nothing. The parameters are the same objects either way.
    optimizer = build_optimizer(core, o.name, o.lr, o.weight_decay, o.momentum, lr_scales=lr_scales)
    amp = autocast_dtype(cfg.train.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])
        scaler.load_state_dict(resumed["scaler"])
        for note in set_rng_state(resumed["rng"]):
            if main and not quiet:
                print(f"[videocontrast] resuming: {note}", flush=True)
    if cfg.train.compile:
        model = torch.compile(model)
    state = TrainState(
        model=model, optimizer=optimizer, scaler=scaler, augment=build_augment(cfg, kind).to(device), device=device,
        amp=amp, lr_schedule=_lr_schedule(cfg, steps),
        momentum_schedule=_momentum_schedule(cfg, steps) if isinstance(core, MoCo) else None,
        steps_per_epoch=steps, accum_steps=o.accum_steps, labels=kind != "pretrain", seed=cfg.train.seed,
        channels_last=cfg.train.channels_last, log_every=cfg.train.log_every, log=MetricsLog(out, main))
    if resumed is not None:
        state.epoch, state.step, state.history = resumed["epoch"], resumed["step"], resumed.get("history", [])
    saved_epoch = state.epoch if resumed is not None else None  # the epoch of the checkpoint on disk
    if main:
        dump_config(cfg, out / "config.yaml")
    if main and not quiet:
        print(f"[videocontrast] {kind} {cfg.method.name if kind == 'pretrain' else ''} | {cfg.model.backbone} | "
              f"{len(dataset)} videos | world {info.world_size} | device {device} | {steps} steps/epoch x "
              f"{epochs} epochs | start at epoch {state.epoch + 1}", flush=True)
        state.progress = tqdm(total=(epochs - state.epoch) * steps, desc=kind, unit="step", dynamic_ncols=True,
                              mininterval=2.0)

    def kept() -> str:
        return (f"the checkpoint of epoch {saved_epoch} is kept" if saved_epoch is not None
                else "no checkpoint was written yet")

    def save(final: bool) -> None:
        nonlocal saved_epoch
        if not main:
            return
        payload = {"kind": kind, "model": core.state_dict(), "optimizer": optimizer.state_dict(),
                   "scaler": scaler.state_dict(), "epoch": state.epoch, "step": state.step,
                   "history": state.history, "rng": rng_state(), "config": cfg.to_dict(), "final": final,
                   "backbone": cfg.model.backbone}
        what = f"the checkpoint of epoch {state.epoch} in '{ckpt_path.parent}' ({kept()})"
        need = ckpt_path.stat().st_size if ckpt_path.exists() else ckpt_need
        with deferred_interrupt():  # Ctrl-C during the write: finish it first
            try:
                check_free_space(out, need, what, f"free some space and {resume_hint}")
                save_checkpoint(ckpt_path, payload)
                saved_epoch = state.epoch
                if cfg.train.keep_every and state.epoch % cfg.train.keep_every == 0:
                    save_checkpoint(out / "checkpoints" / f"epoch_{state.epoch:04d}.pt", payload)
            except OSError as e:
                raise RunFolderError(f"could not write the checkpoint of epoch {state.epoch} to '{ckpt_path}' "
                                     f"({e.strerror or e}); {kept()}: free some space (or fix the folder) and "
                                     f"{resume_hint}") from None

    # -- loop
    t_start = time.perf_counter()
    try:
        while state.epoch < epochs:
            cache = getattr(dataset, "frame_cache", None)  # any map-style dataset trains; a VideoDataset may cache
            if cache is not None:
                cache.check()  # a cut-short cache file: one line now, not a SIGBUS in the epoch
            dataset.set_epoch(state.epoch)
            sampler.set_epoch(state.epoch)
            stats = train_one_epoch(state, loader)
            state.epoch += 1
            if plan_epochs is not None and state.epoch == 1:
                # the mean over ranks, so that every rank plans the same total
                first_s = float(dist.all_reduce_mean(torch.tensor(stats["time_s"], device=state.device)).item())
                epochs = _replan(cfg, state, plan_epochs(first_s), steps, out, main, quiet)
            record = {"kind": "epoch", "epoch": state.epoch, "step": state.step, **stats}
            state.history.append(record)
            state.log.log(record)
            if monitor is not None and cfg.train.knn_every and state.epoch % cfg.train.knn_every == 0:
                if main:
                    measured = dict(monitor(encoder_of(core)))
                    if measured:
                        record.update(measured)
                        state.log.log({"kind": "knn", "epoch": state.epoch, "step": state.step, **measured})
                dist.barrier()
            if state.epoch % cfg.train.save_every == 0 or state.epoch == epochs:
                save(final=state.epoch == epochs)
            limit, elapsed = cfg.train.time_limit_s, time.perf_counter() - t_start
            # Stop before an epoch that would overrun the budget, not after it.
            if limit and state.epoch < epochs and elapsed + stats["time_s"] > limit:
                if main and not quiet:
                    print(f"[videocontrast] time limit {limit:.0f}s reached after epoch {state.epoch} of {epochs}; "
                          f"checkpoint saved, {resume_hint}", flush=True)
                # in the checkpoint's history: a rerun with the same budget must not take the seconds this run
                # spent between epochs (checkpoints, kNN) for budget left and train another epoch
                record["time_limit_reached"] = True
                save(final=False)
                break
    except NonFiniteLossError as e:
        raise NonFiniteLossError(f"{e}; {kept()}; start again with a lower optim.lr (a resumed run keeps its "
                                 "optim.lr, so in another --out)") from None
    except RuntimeError as e:
        if not is_shared_memory_failure(e):
            raise
        if main:
            truncate_metrics(out / "metrics.jsonl", saved_epoch or 0)
        if getattr(dataset, "frame_cache", None) is not None:
            dataset.frame_cache.check()  # a worker killed by a cut-short cache file, not by shared memory
        raise SharedMemoryError(shared_memory_message(e, cfg, kept(), resume_hint)) from None
    except KeyboardInterrupt:
        if main:  # what the interrupted epoch logged is written again on resume
            truncate_metrics(out / "metrics.jsonl", saved_epoch or 0)
        raise TrainingInterrupted(out, ckpt_path if saved_epoch is not None else None, saved_epoch or 0,
                                  state.epoch + 1) from None
    finally:
        if state.progress is not None:
            state.progress.close()
        state.log.close()
    dist.barrier()
    # -- result
    # the decoded frames (data.cache) go back too: a caller training on the same videos next (the demo's supervised
    # baselines) reads them instead of decoding every video again
    return {"checkpoint": str(ckpt_path), "epochs": state.epoch, "steps": state.step, "history": state.history,
            "time_s": time.perf_counter() - t_start, "config": cfg, "model": core,
            "frame_cache": getattr(dataset, "frame_cache", None)}


def _lr_schedule(cfg: Config, steps: int) -> np.ndarray:
    """The lr per iteration over ``cfg.train.epochs`` epochs of ``steps`` steps (``cfg.optim``'s schedule)."""
    o = cfg.optim
    return cosine_schedule(o.lr, o.lr * o.min_lr_ratio, cfg.train.epochs, steps, o.warmup_epochs,
                           hold_epochs=o.hold_epochs)


def _momentum_schedule(cfg: Config, steps: int) -> np.ndarray:
    """MoCo's key-encoder momentum per iteration over ``cfg.train.epochs`` epochs."""
    return momentum_schedule(cfg.method.momentum, cfg.train.epochs, steps, cfg.method.momentum_schedule)


def _replan(cfg: Config, state: TrainState, planned: int, steps: int, out: Path, main: bool, quiet: bool) -> int:
    """Make ``planned`` (at least 1) the run's total epochs after its first: config, lr schedule, progress bar."""
    planned = max(1, int(planned))
    if planned == cfg.train.epochs:
        return planned
    cfg.train.epochs = planned
    state.lr_schedule = _lr_schedule(cfg, steps)
    if state.momentum_schedule is not None:
        state.momentum_schedule = _momentum_schedule(cfg, steps)
    if main:
        dump_config(cfg, out / "config.yaml")
        if state.progress is not None:
            state.progress.total = planned * steps
            state.progress.refresh()
        if not quiet:
            print(f"[videocontrast] {planned} epochs planned from the first epoch's time", flush=True)
    return planned


def pretrain(cfg: Config, out_dir: str | Path, resume: bool = False, quiet: bool = False,
             monitor: Monitor | None = None, resume_hint: str = "continue with --resume") -> dict[str, Any]:
    """Run (or continue) contrastive pretraining of ``cfg.method`` into ``out_dir`` (see :func:`fit`).

    A continued run keeps the settings it started with (those stored in its checkpoint): ``cfg`` may differ from
    them only as :func:`~videocontrast.engine.run.resume_config` allows (more epochs; logging, saving, time limit,
    device, workers; ``eval.*``), and the changes are printed.

    Raises:
        FileExistsError: the folder holds a run and ``resume`` is False.
        ResumeConfigError: ``cfg`` differs from the stored run's settings in a field that cannot change.
        RunFolderError: the folder is in use by another process, not writable, or its disk is full.
    """
    with run_lock(out_dir):
        cfg, resumed = continue_run(out_dir, cfg, resume, quiet)
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        dataset = dataset_from_config(cfg, "train", "pretrain",
                                      transform=None if cfg.aug.on_device else build_augment(cfg))
        model = method_from_config(cfg, num_train_clips=len(dataset))
        return fit(cfg, out_dir, model, dataset, kind="pretrain", resumed=resumed, quiet=quiet, monitor=monitor,
                   resume_hint=resume_hint)
