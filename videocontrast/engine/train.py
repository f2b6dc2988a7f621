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

import copy
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import dist
from ..build.components import (build_augment, cache_frames, check_dataset, dataset_from_config,
                                method_from_config)
from ..config import Config, config_from_dict, dump_config
from ..data.datasets import VideoDataset
from ..methods import MoCo, encoder_of
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .loop import (Monitor, MetricsLog, NonFiniteLossError, TrainingInterrupted, TrainState, cudnn_autotune,  # noqa: F401
                   seed_everything, train_one_epoch)
from .memory import check_memory, checkpoint_bytes
from .device import autocast_dtype, resolve_device
from .loader import SharedMemoryError, is_shared_memory_failure, shared_memory_message, train_loader
from .optim import build_optimizer, cosine_schedule, momentum_schedule
from .run import (MIN_FREE_BYTES, RunFolderError, check_free_space, clean_run_folder, deferred_interrupt,
                  describe_changes, epochs_done_phrase, resume_config, run_lock, run_number, truncate_metrics)


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
        print(f"[videocontrast] resuming '{out_dir}' ({epochs_done_phrase(resumed['epoch'], cfg.train.epochs)}) "
              f"with changed settings: {describe_changes(changes)}", flush=True)
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
    # before any decoding: a batch no training set of this size can fill is refused at once
    loader_cfg = fitting_batch(cfg, len(dataset), info.world_size, say=main and not quiet)
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
    loader, sampler, steps = train_loader(loader_cfg, dataset, info, device)
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
    # which call of the engine trained an epoch: a time limit counts per run, so a report of all epochs says how
    # many runs they took
    this_run = run_number(state.history) + 1
    if main:
        dump_config(cfg, out / "config.yaml")
    if main and not quiet:
        print(f"[videocontrast] {kind} {cfg.method.name if kind == 'pretrain' else ''} | {cfg.model.backbone} | "
              f"{len(dataset)} videos | world {info.world_size} | device {device} | "
              f"{_epoch_plan(steps, epochs, cfg.train.time_limit_s, plan_epochs is not None)} | start at epoch "
              f"{state.epoch + 1}", flush=True)
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
            record = {"kind": "epoch", "epoch": state.epoch, "step": state.step, "run": this_run, **stats}
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


def _epoch_plan(steps: int, epochs: int, limit_s: float, planning: bool) -> str:
    """The start line's plan: how many epochs it trains and, under a time limit, that the limit may stop it
    first (a demo's supervised baseline is planned again after its first epoch to fill its budget)."""
    if planning:
        plan = f"{epochs} epochs for now (planned again from the first epoch's time)"
    else:
        plan = f"up to {epochs} epochs" if limit_s else f"{epochs} epochs"
    return f"{steps} steps/epoch x {plan}" + (f", time limit {limit_s:.0f} s" if limit_s else "")


def fitting_batch(cfg: Config, videos: int, world: int, say: bool) -> Config:
    """``cfg``, or a copy whose ``optim.batch_size`` is lowered to what ``videos`` training videos fill (a multiple
    of processes x ``optim.accum_steps``), saying so in one line when ``say``. ``cfg`` itself keeps the setting:
    it is what config.yaml and the checkpoint record, so a rerun of the same command compares equal.

    Raises:
        ValueError: not even one batch of processes x accumulation steps (and 2 clips, the fewest a contrastive
            loss can compare) fits in the training set.
    """
    o = cfg.optim
    wanted, unit = o.batch_size, world * o.accum_steps
    if videos >= wanted:
        return cfg
    lowered = videos // unit * unit
    if lowered < max(2, unit):
        raise ValueError(f"the training set has {videos} videos, fewer than the {max(2, unit)} that one batch of "
                         f"optim.accum_steps={o.accum_steps} x {world} process(es) needs (optim.batch_size={wanted}); "
                         "lower optim.accum_steps or add training videos")
    if say:
        print(f"[videocontrast] warning: the training set has {videos} videos, fewer than optim.batch_size={wanted}: "
              f"training with batches of {lowered}", flush=True)
    out = copy.deepcopy(cfg)
    out.optim.batch_size = lowered
    return out


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
    check_dataset(cfg)  # a wrong --root is the error to see, not what the run folder holds
    with run_lock(out_dir):
        cfg, resumed = continue_run(out_dir, cfg, resume, quiet)
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        dataset = dataset_from_config(cfg, "train", "pretrain",
                                      transform=None if cfg.aug.on_device else build_augment(cfg))
        model = method_from_config(cfg, num_train_clips=len(dataset))
        return fit(cfg, out_dir, model, dataset, kind="pretrain", resumed=resumed, quiet=quiet, monitor=monitor,
                   resume_hint=resume_hint)
