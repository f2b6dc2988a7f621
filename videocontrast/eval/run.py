"""The evaluation commands (linear, knn, retrieve, finetune) as library functions.

Each takes an encoder spec — a checkpoint path, ``random`` (same architecture, random init), or
``supervised`` (train the same backbone with cross-entropy on the labels first) or a plain state-dict
file of external weights — plus the dataset settings, and returns a results dict whose every number says
how it was obtained (``protocol``). Features are cached, so a second probe costs no forward passes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..config import Config
from ..data.build import (build_augment, build_eval_transform, build_from_config, dataset_root, default_cache_dir,
                          eval_crop_positions)


@dataclass
class Encoder:
    module: nn.Module
    fingerprint: str  # keys the feature cache by the weights' content
    description: str
    cfg: Config  # clip/size settings the encoder expects


def _random_backbone(cfg: Config) -> nn.Module:
    from ..models import build_backbone

    torch.manual_seed(cfg.train.seed)
    kw = {"width": cfg.model.width, "layers": cfg.model.layers} if cfg.model.backbone == "r3d_small" else {}
    return build_backbone(cfg.model.backbone, weights=cfg.model.weights, **kw)


def with_dataset(cfg: Config, data_from: Config) -> Config:
    """``cfg`` (an encoder's settings) with the dataset flags of ``data_from`` (the command line)."""
    import copy

    out = copy.deepcopy(cfg)
    for name in ("dataset", "root", "splits", "split", "num_workers", "strict", "require_complete",
                 "eval_clips", "synthetic_videos_per_class", "synthetic_frames", "synthetic_size",
                 "synthetic_seed", "synthetic_appearances", "eval_crops"):
        setattr(out.data, name, getattr(data_from.data, name))
    out.eval = copy.deepcopy(data_from.eval)
    return out


def resolve_encoder(spec: str, cfg: Config, device: torch.device, out_dir: Path) -> Encoder:
    """Turn ``--checkpoint`` into an encoder. ``cfg`` supplies the dataset flags (and the architecture for
    ``random``/``supervised``/external weights)."""
    from ..api import model_from_checkpoint
    from ..engine.checkpoint import NotACheckpointError, load_checkpoint
    from .features import file_sha1

    if spec == "random":
        arch = json.dumps(dataclasses.asdict(cfg.model), sort_keys=True)  # width/layers change the network
        return Encoder(_random_backbone(cfg).to(device), f"random:{arch}:{cfg.train.seed}",
                       f"random init ({cfg.model.backbone}, seed {cfg.train.seed})", cfg)
    if spec == "supervised":
        path = train_supervised(cfg, device, out_dir / "supervised")
        spec = str(path)
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--checkpoint '{spec}' is not a file; give a checkpoint written by "
                                "`videocontrast pretrain`, `random`, `supervised`, or a state-dict file")
    try:
        state = load_checkpoint(path)
    except NotACheckpointError:
        state = None
    if state is not None:
        module, ckpt_cfg = model_from_checkpoint(state)
        kind = state.get("kind", "pretrain")
        return Encoder(module.to(device), f"sha1:{file_sha1(path)}", f"{kind} checkpoint {path}",
                       with_dataset(ckpt_cfg, cfg))
    # External weights (e.g. torchvision's Kinetics-400 r3d_18 state dict the user downloaded).
    cfg.model.weights = str(path)
    return Encoder(_random_backbone(cfg).to(device), f"sha1:{file_sha1(path)}", f"external weights {path}", cfg)


def loader_for(cfg: Config, subset: str, purpose: str = "eval", shuffle: bool = False,
               transform=None) -> DataLoader:
    ds = build_from_config(cfg, subset, purpose, transform=transform)
    where = f"dataset '{cfg.data.dataset}' at {dataset_root(cfg)}"
    if len(ds) == 0:
        raise ValueError(f"the '{subset}' subset of {where} is empty; evaluation needs labeled train and test "
                         "videos: ucf101/hmdb51 with their split files, or a folder with train/<class>/ and "
                         "test/<class>/ subfolders")
    if min(r.label for r in ds.records) < 0:
        raise ValueError(f"{where} has unlabeled videos; evaluation needs class subfolders (labels). For "
                         "unlabeled footage use `videocontrast embed` and `videocontrast search` instead")
    bs = cfg.eval.batch_size if purpose == "eval" else cfg.optim.batch_size
    return DataLoader(ds, batch_size=min(bs, len(ds)), shuffle=shuffle, num_workers=cfg.data.num_workers,
                      drop_last=purpose == "finetune")


def features(enc: Encoder, subset: str, device: torch.device, cache_dir: Path | None = None) -> dict[str, Any]:
    """Clip-level features of ``subset`` (cached on disk by weights, dataset and protocol)."""
    from .features import FeatureCache, extract_features

    cfg = enc.cfg
    d = cfg.data
    key = {"weights": enc.fingerprint, "dataset": d.dataset, "root": str(dataset_root(cfg)), "splits": d.splits,
           "split": d.split, "subset": subset, "clip_len": d.clip_len, "stride": d.stride,
           "clips_per_video": d.eval_clips, "size": d.size, "decode_size": d.decode_size, "input": d.input,
           "crops": d.eval_crops}
    cache = FeatureCache(cache_dir or default_cache_dir() / "features")

    def compute() -> dict[str, Any]:
        # One pass per crop position; every (clip, crop) is a row, video_ids tie them to their video.
        loader = loader_for(cfg, subset)
        runs = [extract_features(enc.module, loader, build_eval_transform(cfg, pos).to(device), device)
                for pos in eval_crop_positions(cfg)]
        out = {k: np.concatenate([r[k] for r in runs]) for k in ("feats", "labels", "video_ids")}
        out["paths"] = runs[0]["paths"]
        return out

    return cache.load_or_compute(key, compute)


def class_names(cfg: Config) -> list[str]:
    ds = build_from_config(cfg, "train", "eval")
    return list(ds.classes)


def _train_test(enc: Encoder, device: torch.device, cache_dir: Path | None) -> tuple[dict, dict, list[str]]:
    """What every frozen-feature protocol starts from: train and test features and the class names."""
    return features(enc, "train", device, cache_dir), features(enc, "test", device, cache_dir), class_names(enc.cfg)


def _protocol_common(enc: Encoder) -> dict[str, Any]:
    d = enc.cfg.data
    return {"encoder": enc.description, "features": "backbone pooled output (before the projection head)",
            "dataset": d.dataset, "split": d.split, "clip_len": d.clip_len, "stride": d.stride, "size": d.size,
            "clips_per_video": d.eval_clips, "crops_per_clip": d.eval_crops,
            "clip_sampling": "evenly spaced clips; " + ("centre crop" if d.eval_crops == 1 else
                                                        "3 crops (start, centre, end of the long side)")}


def run_linear(enc: Encoder, device: torch.device, out_dir: Path, cache_dir: Path | None = None) -> dict[str, Any]:
    from .linear import linear_probe

    train, test, names = _train_test(enc, device, cache_dir)
    res = linear_probe(train, test, names, Cs=enc.cfg.eval.linear_cs,
                       cv_folds=enc.cfg.eval.cv_folds, seed=enc.cfg.train.seed, out_dir=out_dir)
    res["protocol"] = {**_protocol_common(enc), **res.get("protocol", {})}
    return res


def run_knn(enc: Encoder, device: torch.device, out_dir: Path, cache_dir: Path | None = None) -> dict[str, Any]:
    from .knn import knn_classify

    train, test, names = _train_test(enc, device, cache_dir)
    res = knn_classify(train, test, k=enc.cfg.eval.knn_k, temperature=enc.cfg.eval.knn_temperature,
                       num_classes=len(names))
    res["protocol"] = {**_protocol_common(enc), **res.get("protocol", {})}
    return res


def run_retrieve(enc: Encoder, device: torch.device, out_dir: Path, cache_dir: Path | None = None,
                 report_queries: int = 8) -> dict[str, Any]:
    from .report import retrieval_report
    from .retrieval import retrieve

    train, test, names = _train_test(enc, device, cache_dir)
    res = retrieve(train, test, ks=enc.cfg.eval.recall_ks, class_names=names, report_k=5)
    res["protocol"] = {**_protocol_common(enc), **res.get("protocol", {})}
    neighbours = res.pop("neighbours", [])
    step = max(1, len(neighbours) // report_queries)
    queries = neighbours[::step][:report_queries]
    metrics = {k: v for k, v in res.items() if k.startswith("R@")}
    res["report"] = str(retrieval_report(out_dir, queries, title=f"Retrieval: {enc.description}",
                                         metrics=metrics))
    return res


def run_finetune(enc: Encoder, device: torch.device, out_dir: Path) -> dict[str, Any]:
    from .finetune import finetune

    cfg = enc.cfg
    train = loader_for(cfg, "train", "finetune", shuffle=True)
    test = loader_for(cfg, "test", "eval")
    res = finetune(enc.module, len(train.dataset.classes), train, test, build_augment(cfg).to(device),
                   build_eval_transform(cfg).to(device), device, epochs=cfg.eval.finetune_epochs,
                   lr=cfg.eval.finetune_lr, backbone_lr_ratio=cfg.eval.finetune_backbone_lr_ratio)
    res["protocol"] = {**_protocol_common(enc), **res.get("protocol", {})}
    return res


def train_supervised(cfg: Config, device: torch.device, out_dir: Path) -> Path:
    """The supervised baseline: the same backbone trained with cross-entropy on the training labels
    (no test data used). Saved once as a checkpoint and reused."""
    from ..engine.checkpoint import save_checkpoint
    from .finetune import finetune

    path = out_dir / "checkpoint.pt"
    if path.exists():
        return path
    backbone = _random_backbone(cfg).to(device)
    train = loader_for(cfg, "train", "finetune", shuffle=True)
    t0 = time.perf_counter()
    res = finetune(backbone, len(train.dataset.classes), train, None, build_augment(cfg).to(device),
                   build_eval_transform(cfg).to(device), device, epochs=cfg.eval.finetune_epochs,
                   lr=cfg.eval.finetune_lr, backbone_lr_ratio=1.0)
    save_checkpoint(path, {"kind": "supervised", "model": backbone.state_dict(), "config": cfg.to_dict(),
                           "train_result": {k: v for k, v in res.items() if k != "protocol"},
                           "time_s": time.perf_counter() - t0})
    return path


COMMANDS = {"linear": run_linear, "knn": run_knn, "retrieve": run_retrieve, "finetune": run_finetune}


def format_table(results: dict[str, Any]) -> str:
    keys = [k for k in ("top1", "top5", "video_top1", "video_top5", "R@1", "R@5", "R@10", "R@20", "R@50")
            if isinstance(results.get(k), (int, float))]
    head = " | ".join(f"{k:>10}" for k in keys)
    vals = " | ".join(f"{100 * results[k]:9.1f}%" for k in keys)
    return f"{head}\n{vals}"


def write_results(out_dir: Path, results: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    return path
