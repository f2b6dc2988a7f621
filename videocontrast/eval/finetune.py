"""Full fine-tuning: the pretrained backbone plus a new linear classifier, trained end to end (thesis Sec. 4.2).

Following DPC (Han et al. 2019) as the thesis does, the backbone's learning rate is 1/10 of the classifier's.
It runs on the training engine (:func:`videocontrast.engine.train.fit`) with a cross-entropy objective, so it
has pretraining's optimiser, per-iteration warm-up + cosine schedule, AMP, DDP, progress, ``metrics.jsonl`` and
checkpoints, and an interrupted run continues from ``OUT/checkpoints/last.pt``. It has its own augmentation,
not pretraining's (``eval.finetune_augment``, default ``crop``: crops of half the frame or more and flips, no colour
jitter, grayscale or blur; the thesis presets ``resize``, as the thesis code). The model kept is the last epoch's:
the test split is never used for selection.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from videocontrast import dist
from videocontrast.build.components import build_augment, build_eval_transform, describe_augment, finetune_aug
from videocontrast.config import Config
from videocontrast.data.datasets import VideoDataset
from videocontrast.engine.checkpoint import save_checkpoint
from videocontrast.engine.device import autocast_dtype
from videocontrast.engine.run import ResumeConfigError, run_lock
from videocontrast.engine.loop import seed_everything
from videocontrast.engine.train import continue_run, fit
from videocontrast.eval.features import extract_features
from videocontrast.eval.metrics import topk_accuracy, video_labels, video_level
from videocontrast.methods import Supervised
from videocontrast.fileio import atomic_write_text


# The fine-tuned model (backbone + classifier, no optimiser state) in the run folder; a `--checkpoint` for every
# command (build.encoder.model_from_checkpoint reads its backbone), like checkpoints/last.pt but a quarter of its size.
FINETUNED = "finetuned.pt"


def save_finetuned(path: Path, model: Supervised, cfg: Config, kind: str, epochs: int) -> Path:
    """Write the trained classifier as a checkpoint of ``kind`` (``finetune`` | ``supervised``)."""
    return save_checkpoint(path, {"kind": kind, "model": model.state_dict(), "config": cfg.to_dict(),
                                  "epoch": epochs, "final": True, "backbone": cfg.model.backbone,
                                  "num_classes": model.num_classes})


def finetune_config(cfg: Config, num_train: int) -> Config:
    """``cfg`` with the ``eval.finetune_*`` settings in place of ``optim.*``, ``aug.*`` and ``train.epochs`` (the
    config the fine-tuning run records in its folder, so a resume refuses a change of any of them). The batch is
    capped at the training-set size; warm-up at half the run; ``aug.*`` are those of ``eval.finetune_augment``
    (:func:`~videocontrast.build.components.finetune_aug`): the augmentation this run trains with."""
    out = copy.deepcopy(cfg)
    e = cfg.eval
    out.aug = finetune_aug(cfg)
    out.optim.name, out.optim.lr, out.optim.weight_decay = e.finetune_optimizer, e.finetune_lr, e.finetune_weight_decay
    out.optim.warmup_epochs = min(e.finetune_warmup_epochs, e.finetune_epochs / 2)
    out.optim.min_lr_ratio = 0.0
    out.optim.batch_size = min(cfg.optim.batch_size, num_train)
    out.train.epochs = e.finetune_epochs
    out.train.knn_every = 0
    return out


def evaluate_classifier(
    model: nn.Module, loader: DataLoader, transform: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Clip-level top-1/top-5 and video-level top-1/top-5 (mean softmax over each video's clips)."""
    out = extract_features(model, loader, transform, device, amp_dtype=amp_dtype)  # "features" = logits here
    proba = torch.softmax(torch.from_numpy(out["feats"]).double(), dim=1).numpy()  # (N_clips, K)
    vproba, _ = video_level(proba, out["video_ids"])
    vlab = video_labels(out["labels"], out["video_ids"])
    return {
        "top1": topk_accuracy(proba, out["labels"], 1),
        "top5": topk_accuracy(proba, out["labels"], 5),
        "video_top1": topk_accuracy(vproba, vlab, 1),
        "video_top5": topk_accuracy(vproba, vlab, 5),
    }


def finetune(backbone: nn.Module, cfg: Config, out_dir: str | Path, train_set: VideoDataset,
             test_loader: DataLoader | None = None, *, backbone_lr_ratio: float | None = None,
             kind: str = "finetune", quiet: bool = False,
             resume_hint: str = "rerun the same command to continue",
             plan_epochs: Callable[[float], int] | None = None, evaluated_on: str = "test") -> dict[str, Any]:
    """Fine-tune ``backbone`` + a new linear classifier on ``train_set``, then evaluate on ``test_loader``.

    Args:
        backbone: ``(B, C, T, H, W) -> (B, feature_dim)`` with an int ``feature_dim`` attribute; trained in place.
        cfg: the encoder's settings; ``eval.finetune_*`` choose optimiser, lr, weight decay, warm-up, epochs and
            the training augmentation (``eval.finetune_augment``; with ``aug.on_device=false`` it runs per item in
            the loader workers, as pretraining's does).
        out_dir: the run folder (``config.yaml``, ``metrics.jsonl``, ``checkpoints/last.pt``, ``finetune.json``,
            and the fine-tuned model ``finetuned.pt``);
            a run already there is continued (or, when finished, reused).
        train_set: labeled videos, one Random m clip per item (``build.labeled_dataset(cfg, "train", "finetune")``);
            ``len(train_set.classes)`` classes.
        test_loader: evaluation clips (``build.eval_loader``); ``None`` skips the test evaluation (e.g. when
            training the supervised baseline's backbone).
        backbone_lr_ratio: backbone lr / classifier lr; default ``eval.finetune_backbone_lr_ratio`` (1/10).
        kind: recorded in the checkpoint: ``finetune`` or ``supervised``.
        resume_hint: how the user continues a run cut by ``train.time_limit_s`` (see
            :func:`~videocontrast.engine.train.fit`).
        plan_epochs: a new run's total epochs from its first epoch's seconds (see
            :func:`~videocontrast.engine.train.fit`); ``eval.finetune_epochs`` must then be at least 2, so that
            the warm-up spans the first epoch.
        evaluated_on: what ``test_loader`` holds: ``test``, or ``validation`` (training videos held out; the
            scores are then named ``val_top1``, ... so that none is read as a test score).

    Returns:
        ``top1``, ``top5``, ``video_top1``, ``video_top5`` on the test split (absent without ``test_loader``),
        ``history`` (per-epoch train loss), ``selected_epoch``, ``checkpoint`` and ``protocol``.
    """
    out = Path(out_dir)
    ratio = cfg.eval.finetune_backbone_lr_ratio if backbone_lr_ratio is None else backbone_lr_ratio
    with run_lock(out):  # a run there continues only with the settings it started with (see pretraining)
        try:
            run_cfg, resumed = continue_run(out, finetune_config(cfg, len(train_set)), resume=True, quiet=quiet)
        except ResumeConfigError as e:
            if any(c.field.startswith("aug.") for c in e.refused):
                raise ResumeConfigError(
                    f"{e} (aug.* are the augmentation the run trains with, set by eval.finetune_augment="
                    f"{cfg.eval.finetune_augment}; runs made before that setting existed trained with the "
                    "pretraining augmentation: eval.finetune_augment=pretrain continues them)", e.refused) from None
            raise
        if not run_cfg.aug.on_device and hasattr(train_set, "transform") and train_set.transform is None:
            # as pretraining with aug.on_device=false: augmented per item in the loader workers, not on the device
            train_set = copy.copy(train_set)
            train_set.transform = build_augment(run_cfg, kind)
        seed_everything(run_cfg.train.seed, run_cfg.train.deterministic)
        model = Supervised(backbone, len(train_set.classes))
        run = fit(run_cfg, out, model, train_set, kind=kind, resumed=resumed, lr_scales={"backbone.": ratio},
                  quiet=quiet, resume_hint=resume_hint, plan_epochs=plan_epochs)
    result: dict[str, Any] = {}
    if test_loader is not None:
        device = next(backbone.parameters()).device
        scores = evaluate_classifier(run["model"].classifier(), test_loader,
                                     build_eval_transform(run_cfg).to(device), device,
                                     autocast_dtype(run_cfg.train.precision, device))
        prefix = "val_" if evaluated_on == "validation" else ""
        result.update({prefix + k: v for k, v in scores.items()})
        result["evaluated_on"] = evaluated_on
    o = run_cfg.optim
    result["history"] = run["history"]
    result["selected_epoch"] = run["epochs"] - 1
    result["epochs_planned"] = run_cfg.train.epochs
    result["checkpoint"] = run["checkpoint"]
    result["model"] = str(out / FINETUNED)
    result["protocol"] = {
        "model": "whole backbone + new linear classifier, trained end to end",
        "loss": "cross-entropy",
        "optimizer": o.name,
        "lr_head": o.lr,
        "lr_backbone": o.lr * ratio,
        "backbone_lr_ratio": ratio,
        "weight_decay": f"{o.weight_decay} (none on norms and biases)",
        "schedule": f"per-iteration linear warm-up ({o.warmup_epochs:g} epochs) then cosine decay to 0",
        "epochs": run_cfg.train.epochs,
        "batch_size": o.batch_size,
        "selection": "last epoch (test split never used for selection)",
        "train_clips": "one Random m clip per video and epoch, labelled with its video's class",
        "train_videos": len(train_set),
        "augment": run_cfg.eval.finetune_augment,
        "augment_spatial": describe_augment(run_cfg),
        "video_level": "mean of clip softmax probabilities per video",
        "seed": run_cfg.train.seed,
    }
    if dist.is_main_process():
        save_finetuned(out / FINETUNED, run["model"], run_cfg, kind, run["epochs"])
        atomic_write_text(out / "finetune.json", json.dumps(result, indent=2, default=str))
    return result
