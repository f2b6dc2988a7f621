"""Full fine-tuning: the pretrained backbone plus a new linear classifier, trained end to end (thesis Sec. 4.2).

Following DPC (Han et al. 2019) as the thesis does, the backbone's learning rate is 1/10 of the classifier's.
Cosine learning-rate decay per iteration after a linear warm-up; cross-entropy; model selection never uses the test
split (the last epoch, or the best epoch on a held-out part of the training set when ``val_fraction > 0``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from videocontrast.eval.features import extract_features
from videocontrast.eval.metrics import topk_accuracy, video_labels, video_level

LogFn = Callable[[dict[str, Any]], None]


class Classifier(nn.Module):
    """``backbone`` followed by a linear layer: ``(B, C, T, H, W) -> (B, num_classes)`` logits."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        dim = getattr(backbone, "feature_dim", None)
        if not isinstance(dim, int):
            raise ValueError("finetune: the backbone needs an int attribute 'feature_dim' (see models.build_backbone)")
        self.backbone = backbone
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).flatten(1))


def build_optimizer(
    model: Classifier, lr: float, backbone_lr_ratio: float, weight_decay: float, optimizer: str = "sgd",
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """Two parameter groups, ``"backbone"`` at ``lr * backbone_lr_ratio`` and ``"head"`` at ``lr``.

    Each group stores its peak rate as ``base_lr`` so the schedule can rescale both by the same factor.
    """
    groups = [
        {"name": "backbone", "params": list(model.backbone.parameters()), "base_lr": lr * backbone_lr_ratio},
        {"name": "head", "params": list(model.head.parameters()), "base_lr": lr},
    ]
    for g in groups:
        g["lr"] = g["base_lr"]
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"finetune: optimizer must be 'sgd' or 'adamw', got '{optimizer}'")


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the peak lr at iteration ``step`` (0-based): linear warm-up to 1, then cosine decay to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _clips_and_labels(batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """``video (B, V, T, C, H, W)`` (or 5-d with V = 1) -> ``(B*V, T, C, H, W)`` and labels ``(B*V,)``."""
    video = batch["video"]
    if video.dim() == 5:
        video = video.unsqueeze(1)
    b, v = video.shape[:2]
    labels = torch.as_tensor(batch["label"]).reshape(-1).long()
    return video.reshape(b * v, *video.shape[2:]), labels.repeat_interleave(v)


def _split_loader(loader: DataLoader, val_fraction: float, seed: int) -> tuple[DataLoader, DataLoader, int]:
    """Hold out ``val_fraction`` of the training videos (dataset items) for model selection."""
    dataset = loader.dataset
    n = len(dataset)  # type: ignore[arg-type]
    n_val = int(round(n * val_fraction))
    if not 1 <= n_val < n:
        raise ValueError(f"finetune: val_fraction={val_fraction} leaves {n_val} of {n} training videos for validation")
    perm = np.random.default_rng(seed).permutation(n)
    kw = dict(batch_size=loader.batch_size, num_workers=loader.num_workers, collate_fn=loader.collate_fn)
    train = DataLoader(Subset(dataset, perm[n_val:].tolist()), shuffle=True, drop_last=loader.drop_last, **kw)
    val = DataLoader(Subset(dataset, perm[:n_val].tolist()), shuffle=False, **kw)
    return train, val, n_val


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


def finetune(
    backbone: nn.Module,
    num_classes: int,
    train_loader: DataLoader,
    test_loader: DataLoader | None,
    augment: Callable[[torch.Tensor], torch.Tensor],
    eval_transform: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device | str,
    epochs: int,
    lr: float = 0.01,
    backbone_lr_ratio: float = 0.1,
    weight_decay: float = 1e-4,
    optimizer: str = "sgd",
    warmup_epochs: float = 1.0,
    val_fraction: float = 0.0,
    amp_dtype: torch.dtype | None = None,
    seed: int = 0,
    log: LogFn | None = None,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Fine-tune ``backbone`` + a new linear classifier, then evaluate on ``test_loader``.

    Args:
        backbone: ``(B, C, T, H, W) -> (B, feature_dim)`` with an int ``feature_dim`` attribute; trained in place.
        num_classes: classifier outputs; labels must be in ``[0, num_classes)``.
        train_loader: dicts with ``video`` uint8 ``(B, 1, T, C, H, W)`` (one random clip per video) and ``label``.
        test_loader: dicts as in :func:`videocontrast.eval.features.extract_features` (V evaluation clips);
            ``None`` skips the test evaluation (e.g. when training a supervised baseline backbone).
        augment: ``(B, T, C, H, W)`` on ``device`` -> float ``(B, C, T, H, W)`` (training augmentation).
        eval_transform: same layouts, deterministic (resize / centre crop / normalise).
        epochs: passes over the training set.
        lr: peak classifier lr; the backbone's is ``lr * backbone_lr_ratio`` (thesis / DPC: 1/10).
        warmup_epochs: linear warm-up length (capped to half of the run).
        val_fraction: if > 0, that share of training videos is held out and the epoch with the best held-out
            clip top-1 is kept; otherwise the last epoch is kept. The test split is never used for selection.
        log: called after every iteration with ``{epoch, step, loss, lr_head, lr_backbone}`` and after every
            epoch with ``{epoch, train_loss, [val_top1]}``.
        out_dir: if given, writes ``finetuned.pt`` (model state dict) and ``finetune.json`` (the returned dict).

    Returns:
        ``top1``, ``top5``, ``video_top1``, ``video_top5`` on the test split (absent without ``test_loader``),
        ``history`` (per-epoch train loss and
        val accuracy), ``selected_epoch`` and ``protocol``.
    """
    if epochs < 1:
        raise ValueError(f"finetune: epochs must be >= 1, got {epochs}")
    device = torch.device(device)
    torch.manual_seed(seed)
    model = Classifier(backbone, num_classes).to(device)
    opt = build_optimizer(model, lr, backbone_lr_ratio, weight_decay, optimizer)
    val_loader, n_val = None, 0
    if val_fraction > 0:
        train_loader, val_loader, n_val = _split_loader(train_loader, val_fraction, seed)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError("finetune: the training loader is empty")
    total = epochs * steps_per_epoch
    warmup = min(int(round(warmup_epochs * steps_per_epoch)), total // 2)
    loss_fn = nn.CrossEntropyLoss()

    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    step = 0
    for epoch in range(epochs):
        dataset = getattr(train_loader, "dataset", None)
        for ds in (dataset, getattr(dataset, "dataset", None)):  # reseed per-epoch sampling, through a Subset too
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(epoch)
        model.train()
        losses = []
        for batch in train_loader:
            x, y = _clips_and_labels(batch)
            if y.min() < 0 or y.max() >= num_classes:
                raise ValueError(f"finetune: training labels must lie in [0, {num_classes}), got "
                                 f"[{int(y.min())}, {int(y.max())}] (unlabeled videos cannot be fine-tuned on)")
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * lr_factor(step, total, warmup)
            x, y = augment(x.to(device, non_blocking=True)), y.to(device)  # x: (B, C, T, H, W)
            with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                loss = loss_fn(model(x).float(), y)
            if not torch.isfinite(loss):
                raise RuntimeError(f"finetune: loss is {loss.item()} at epoch {epoch}, step {step}; stopping")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if log is not None:
                lrs = {g["name"]: g["lr"] for g in opt.param_groups}
                log({"epoch": epoch, "step": step, "loss": losses[-1], "lr_head": lrs["head"],
                     "lr_backbone": lrs["backbone"]})
            step += 1
        record: dict[str, float] = {"epoch": epoch, "train_loss": float(np.mean(losses))}
        if val_loader is not None:
            record["val_top1"] = evaluate_classifier(model, val_loader, eval_transform, device, amp_dtype)["top1"]
            if best is None or record["val_top1"] > best[0]:
                best = (record["val_top1"], epoch, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        history.append(record)
        if log is not None:
            log(dict(record))

    selected = epochs - 1
    if best is not None:
        selected = best[1]
        model.load_state_dict(best[2])
    result: dict[str, Any] = {}
    if test_loader is not None:
        result.update(evaluate_classifier(model, test_loader, eval_transform, device, amp_dtype))
    result["history"] = history
    result["selected_epoch"] = selected
    result["protocol"] = {
        "model": "whole backbone + new linear classifier, trained end to end",
        "loss": "cross-entropy",
        "optimizer": optimizer,
        "lr_head": lr,
        "lr_backbone": lr * backbone_lr_ratio,
        "backbone_lr_ratio": backbone_lr_ratio,
        "weight_decay": weight_decay,
        "schedule": f"per-iteration linear warm-up ({warmup} steps) then cosine decay to 0 over {total} steps",
        "epochs": epochs,
        "selection": (f"best held-out clip top-1 on {n_val} training videos (val_fraction={val_fraction})"
                      if val_loader is not None else "last epoch (test split never used for selection)"),
        "train_clips": "as sampled by the training loader (each clip labelled with its video's class)",
        "video_level": "mean of clip softmax probabilities per video",
        "seed": seed,
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), out / "finetuned.pt")
        (out / "finetune.json").write_text(json.dumps(result, indent=2, default=str))
    return result
