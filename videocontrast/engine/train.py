"""Pretraining: one loop for videoSimCLR and videoMoCo, on a CPU, one GPU or many (torchrun).

The same code path runs with and without ``torchrun``: without it the world size is 1 and no process
group exists. Reproducibility and exact resume come from deriving every random draw from
``(seed, epoch, index)`` (data) or ``(seed, step, rank)`` (augmentation) instead of from hidden state,
so a run resumed from a checkpoint at an epoch boundary replays the same batches.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from .. import dist
from ..config import Config, config_from_dict, dump_config
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .optim import build_optimizer, cosine_schedule


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the run stops and the last good checkpoint is kept."""


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps completed
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(name: str, info: dist.DistInfo | None = None) -> torch.device:
    """``train.device`` -> a device: ``auto`` is this process's accelerator (cuda:LOCAL_RANK) or the CPU."""
    info = info or dist.init_distributed()
    return info.device if name == "auto" else torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA by default (no loss scaling needed); fp32 on CPU unless asked."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def build_model(cfg: Config, num_train_clips: int | None = None) -> nn.Module:
    """Backbone + method (head, momentum encoder, queue) as described by ``cfg``."""
    from ..methods import build_method
    from ..models import build_backbone

    kw: dict[str, Any] = {}
    if cfg.model.backbone == "r3d_small":
        kw = {"width": cfg.model.width, "layers": cfg.model.layers}
    backbone = build_backbone(cfg.model.backbone, weights=cfg.model.weights, **kw)
    m = cfg.method
    return build_method(m.name, backbone, temperature=m.temperature, queue_size=m.queue_size,
                        momentum=m.momentum, head_hidden=cfg.model.head_hidden, head_out=cfg.model.head_out,
                        bn_mode=m.bn_mode, num_train_clips=num_train_clips)


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
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out_dir / "tb"))
            except Exception:  # tensorboard missing or broken: metrics.jsonl still has everything
                self.writer = None

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            step = record.get("step", 0)
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.writer.add_scalar(f"{record.get('kind', 'train')}/{k}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, augment: nn.Module,
                    device: torch.device, state: RunState, cfg: Config, lr_schedule: np.ndarray,
                    momentum_schedule: np.ndarray | None, scaler: torch.amp.GradScaler, amp: torch.dtype | None,
                    steps: int, log: MetricsLog, progress=None) -> dict[str, float]:
    """One epoch of contrastive pretraining. Batches are ``uint8 (B, 2, T, C, H, W)`` (augmented here,
    batched on ``device``) or already augmented ``float (B, 2, C, T, H, W)`` from loader workers."""
    model.train()
    accum, rank, seed = cfg.optim.accum_steps, dist.get_rank(), cfg.train.seed
    world = dist.get_world_size()
    losses: list[float] = []
    t0 = time.perf_counter()
    t_log, clips_log = t0, 0
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(loader):
        if i >= steps * accum:
            break
        it = state.step
        for group in optimizer.param_groups:
            group["lr"] = float(lr_schedule[it])  # a Python float: checkpoints hold no NumPy objects
        x = batch["video"].to(device, non_blocking=True)
        if x.dtype == torch.uint8:
            g = aug_generator(device, seed, it * accum + i % accum, rank)
            v1, v2 = augment(x[:, 0], generator=g), augment(x[:, 1], generator=g)
        else:
            v1, v2 = x[:, 0], x[:, 1]
        if cfg.train.channels_last:
            v1 = v1.contiguous(memory_format=torch.channels_last_3d)
            v2 = v2.contiguous(memory_format=torch.channels_last_3d)
        last_micro = (i + 1) % accum == 0
        sync = last_micro or not isinstance(model, nn.parallel.DistributedDataParallel)
        ctx = model.no_sync() if not sync else contextlib.nullcontext()
        with ctx, torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss, stats = model(v1, v2)
        value = loss.item()  # the one host sync per step; also feeds the log
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"loss is {value} at epoch {state.epoch + 1}, step {it}; stopping. The last good checkpoint "
                "is kept. Try a lower optim.lr, a higher method.temperature, or train.precision=fp32.")
        with ctx:
            scaler.scale(loss / accum).backward()
        losses.append(value)
        clips_log += x.shape[0] * world
        if not last_micro:
            continue
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        core = unwrap(model)
        if momentum_schedule is not None and hasattr(core, "momentum_update"):
            core.momentum_update(float(momentum_schedule[it]))
        state.step += 1
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr_schedule[it]:.2e}")
        if state.step % cfg.train.log_every == 0:
            now = time.perf_counter()
            rate = clips_log / max(now - t_log, 1e-9)
            log.log({"kind": "train", "epoch": state.epoch + 1, "step": state.step,
                     "loss": float(np.mean(losses[-cfg.train.log_every * accum:])), "lr": float(lr_schedule[it]),
                     "clips_per_s": rate, **{k: float(v) for k, v in stats.items() if k != "loss"}})
            if progress is not None:
                progress.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr_schedule[it]:.2e}", clips_s=f"{rate:.1f}")
            t_log, clips_log = now, 0
    elapsed = time.perf_counter() - t0
    n = len(losses)
    # on the training device: NCCL reduces CUDA tensors only
    loss_mean = float(dist.all_reduce_mean(torch.tensor(np.mean(losses) if n else math.nan, device=device)).item())
    return {"loss": loss_mean, "time_s": elapsed,
            "clips_per_s": n * loader.batch_size * world / max(elapsed, 1e-9)}


def knn_monitor(cfg: Config, method: nn.Module, device: torch.device) -> float | None:
    """Clip-level kNN top-1 of the current backbone (train split as memory, test split as queries).

    A cheap proxy of representation quality during training; None when the dataset has no labels.
    """
    from ..data.build import build_eval_transform
    from ..eval.features import extract_features
    from ..eval.knn import knn_classify
    from ..eval.run import loader_for
    from ..methods import encoder_of

    feats = {}
    for subset in ("train", "test"):
        try:
            loader = loader_for(cfg, subset)  # the evaluation loader, with its empty/unlabeled checks
        except ValueError:  # no labels or no test split: nothing to monitor
            return None
        feats[subset] = extract_features(encoder_of(method), loader, build_eval_transform(cfg).to(device), device)
    return float(knn_classify(feats["train"], feats["test"], k=cfg.eval.knn_k,
                              temperature=cfg.eval.knn_temperature)["top1"])


def _seed_everything(seed: int, deterministic: bool) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def pretrain(cfg: Config, out_dir: str | Path, resume: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Run (or continue) contrastive pretraining and write ``out_dir/{config.yaml, metrics.jsonl,
    checkpoints/last.pt}``.

    Returns:
        dict with ``checkpoint`` (path of last.pt), ``epochs``, ``steps``, ``history`` (per-epoch loss,
        time, clips/s) and ``time_s``.
    """
    from ..data.build import build_augment, build_from_config

    info = dist.init_distributed()
    device = resolve_device(cfg.train.device, info)
    out = Path(out_dir)
    ckpt_path = out / "checkpoints" / "last.pt"
    main = dist.is_main_process()

    state_dict = None
    if ckpt_path.exists():
        if not resume:
            raise FileExistsError(f"'{out}' already holds a run ({ckpt_path}); pass --resume to continue it "
                                  "or choose another --out")
        state_dict = load_checkpoint(ckpt_path)
        cfg = config_from_dict(state_dict["config"])  # the run continues with the settings it started with
    if main:
        out.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, out / "config.yaml")

    _seed_everything(cfg.train.seed, cfg.train.deterministic)
    dataset = build_from_config(cfg, "train", "pretrain",
                                transform=None if cfg.aug.on_device else build_augment(cfg))
    world = info.world_size
    gb, accum = cfg.optim.batch_size, cfg.optim.accum_steps
    if gb % (world * accum):
        raise ValueError(f"optim.batch_size={gb} must be divisible by processes x optim.accum_steps "
                         f"= {world} x {accum}")
    local_bs = gb // (world * accum)
    if len(dataset) < gb:
        raise ValueError(f"the training set has {len(dataset)} videos, fewer than optim.batch_size={gb}: "
                         "lower optim.batch_size")
    sampler = DistributedSampler(dataset, num_replicas=world, rank=info.rank, shuffle=True,
                                 seed=cfg.train.seed, drop_last=True)
    nw = cfg.data.num_workers
    loader = DataLoader(dataset, batch_size=local_bs, sampler=sampler, num_workers=nw, drop_last=True,
                        pin_memory=device.type == "cuda", persistent_workers=nw > 0,
                        prefetch_factor=4 if nw > 0 else None)
    steps = len(loader) // accum
    if cfg.train.max_steps_per_epoch:
        steps = min(steps, cfg.train.max_steps_per_epoch)
    epochs = cfg.train.epochs

    model = build_model(cfg, num_train_clips=len(dataset)).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    if state_dict is not None:
        model.load_state_dict(state_dict["model"])
    if world > 1:  # (method.bn_mode=sync: build_method already converted BN to SyncBatchNorm)
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    opt_cfg = cfg.optim
    optimizer = build_optimizer(model, opt_cfg.name, opt_cfg.lr, opt_cfg.weight_decay, opt_cfg.momentum)
    lr_schedule = cosine_schedule(opt_cfg.lr, opt_cfg.lr * opt_cfg.min_lr_ratio, epochs, steps,
                                  opt_cfg.warmup_epochs)
    momentum_schedule = None
    if cfg.method.name.startswith("moco"):
        # m per step: constant, or cosine from m to 1 (BYOL/DINO) when method.momentum_schedule is on.
        n, base_m = epochs * steps, cfg.method.momentum
        momentum_schedule = (1.0 - (1.0 - base_m) * (np.cos(np.pi * np.arange(n) / n) + 1) / 2
                             if cfg.method.momentum_schedule else np.full(n, base_m))
    amp = autocast_dtype(cfg.train.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    run = RunState()
    if state_dict is not None:
        optimizer.load_state_dict(state_dict["optimizer"])
        scaler.load_state_dict(state_dict["scaler"])
        run = RunState(epoch=state_dict["epoch"], step=state_dict["step"], history=state_dict.get("history", []))
        set_rng_state(state_dict["rng"])
    if cfg.train.compile:
        model = torch.compile(model)
    augment = build_augment(cfg).to(device)
    log = MetricsLog(out, main)
    if main and not quiet:
        print(f"[videocontrast] pretrain {cfg.method.name} | {cfg.model.backbone} | {len(dataset)} videos | "
              f"world {world} | device {device} | {steps} steps/epoch x {epochs} epochs | "
              f"start at epoch {run.epoch + 1}", flush=True)

    def save(final: bool) -> None:
        if not main:
            return
        payload = {"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                   "scaler": scaler.state_dict(), "epoch": run.epoch, "step": run.step, "history": run.history,
                   "rng": rng_state(), "config": cfg.to_dict(), "final": final,
                   "backbone": cfg.model.backbone}
        save_checkpoint(ckpt_path, payload)
        if cfg.train.keep_every and run.epoch % cfg.train.keep_every == 0:
            save_checkpoint(out / "checkpoints" / f"epoch_{run.epoch:04d}.pt", payload)

    progress = None
    if main and not quiet:
        from tqdm.auto import tqdm

        progress = tqdm(total=(epochs - run.epoch) * steps, desc="pretrain", unit="step", dynamic_ncols=True,
                        mininterval=2.0)
    t_start = time.perf_counter()
    try:
        while run.epoch < epochs:
            dataset.set_epoch(run.epoch)
            sampler.set_epoch(run.epoch)
            stats = train_one_epoch(model, loader, optimizer, augment, device, run, cfg, lr_schedule,
                                    momentum_schedule, scaler, amp, steps, log, progress)
            run.epoch += 1
            record = {"kind": "epoch", "epoch": run.epoch, "step": run.step, **stats}
            run.history.append(record)
            log.log(record)
            if cfg.train.knn_every and run.epoch % cfg.train.knn_every == 0:
                if main:
                    acc = knn_monitor(cfg, unwrap(model), device)
                    if acc is not None:
                        record["knn_top1"] = acc
                        log.log({"kind": "knn", "epoch": run.epoch, "step": run.step, "knn_top1": acc})
                dist.barrier()
            if run.epoch % cfg.train.save_every == 0 or run.epoch == epochs:
                save(final=run.epoch == epochs)
            limit = cfg.train.time_limit_s
            elapsed = time.perf_counter() - t_start
            # Stop before an epoch that would overrun the budget, not after it.
            if limit and run.epoch < epochs and elapsed + stats["time_s"] > limit:
                if main and not quiet:
                    print(f"[videocontrast] time limit {limit:.0f}s reached after epoch {run.epoch}; "
                          "checkpoint saved, continue with --resume", flush=True)
                save(final=False)
                break
    finally:
        if progress is not None:
            progress.close()
        log.close()
    dist.barrier()
    return {"checkpoint": str(ckpt_path), "epochs": run.epoch, "steps": run.step, "history": run.history,
            "time_s": time.perf_counter() - t_start, "config": cfg}
