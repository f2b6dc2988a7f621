"""The evaluation commands (linear, knn, retrieve, finetune) as library functions.

Each takes an encoder spec — a checkpoint path, ``random`` (same architecture, random init), or
``supervised`` (train the same backbone with cross-entropy on the labels first) or a plain state-dict
file of external weights — plus the dataset settings, and returns a results dict whose every number says
how it was obtained (``protocol``). Features are cached, so a second probe costs no forward passes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

from ..build import (backbone_from_config, build_eval_transform, dataset_root, default_cache_dir,
                     eval_crop_positions, eval_loader, labeled_dataset, method_from_checkpoint,
                     model_from_checkpoint)
from ..config import Config, config_from_dict, load_config
from ..engine.checkpoint import NotACheckpointError, load_checkpoint
from ..engine.train import Monitor
from ..serialization import CheckpointReadError, one_line, safe_torch_load
from .features import FeatureCache, extract_features, feature_key, file_sha1, weights_fingerprint
from .finetune import finetune
from .knn import knn_classify
from .linear import linear_probe
from .report import retrieval_report
from .retrieval import retrieve, retrieve_within


@dataclass
class Encoder:
    module: nn.Module
    fingerprint: str  # keys the feature cache by the weights' content
    description: str
    cfg: Config  # clip/size settings the encoder expects
    # backbone + projection head (shares the backbone's parameters), from a pretraining checkpoint; None for other
    # encoders. The thesis's retrieval (eval.retrieval_protocol=thesis) embeds with it.
    projection: nn.Module | None = None


def with_dataset(cfg: Config, data_from: Config) -> Config:
    """``cfg`` (an encoder's settings) with the dataset flags of ``data_from`` (the command line)."""
    out = copy.deepcopy(cfg)
    for name in ("dataset", "root", "splits", "split", "num_workers", "strict", "require_complete",
                 "eval_clips", "synthetic_videos_per_class", "synthetic_frames", "synthetic_size",
                 "synthetic_seed", "synthetic_appearances", "eval_crops"):
        setattr(out.data, name, getattr(data_from.data, name))
    out.eval = copy.deepcopy(data_from.eval)
    return out


# An exported backbone (`videocontrast export`) has this JSON beside it: FILE.pt -> FILE.pt.json (the whole name,
# so that m.pt and m.safetensors do not share one), holding the weights' SHA-1.
EXPORT_MARKER = "videocontrast_export"


def export_sidecar(path: str | Path) -> Path:
    """The JSON that describes an exported weights file: its whole name plus ``.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def exported_metadata(path: str | Path) -> dict[str, Any] | None:
    """The description ``videocontrast export`` wrote beside ``path``, or None when ``path`` was not exported.

    Raises:
        ValueError: the description names other weights (its SHA-1 is not the file's): a file exported again, or
            replaced, without its JSON.
    """
    path = Path(path)
    meta = _export_json(export_sidecar(path))
    if meta is not None:
        if meta.get("sha1") != file_sha1(path):
            raise ValueError(f"'{export_sidecar(path)}' describes other weights than '{path}' (SHA-1 "
                             f"{meta.get('sha1')}, the file's is {file_sha1(path)}); export the file again")
        return meta
    # Exports before the whole-name rule: FILE.json, used only when it names this very file (a FILE.pt and a
    # FILE.safetensors shared it).
    old = _export_json(path.with_suffix(".json")) if path.suffix != ".json" else None
    return old if old is not None and old.get("sha1") == file_sha1(path) else None


def _export_json(side: Path) -> dict[str, Any] | None:
    if not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get(EXPORT_MARKER) and isinstance(meta.get("config"), dict) \
        else None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file or of a torch state-dict file (read with ``weights_only=True``)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            return safetensors.torch.load_file(str(path))
        except Exception as e:  # noqa: BLE001 -- safetensors raises its own error types
            raise CheckpointReadError(f"weights file '{path}' cannot be read as safetensors "
                                      f"({type(e).__name__}: {one_line(e, 160)})") from None
    obj = safe_torch_load(path, label="weights file")
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"weights file '{path}' does not hold a state dict (a mapping of names to tensors)")
    return obj


def _load_exactly(module: nn.Module, state: dict[str, torch.Tensor], path: Path, cfg: Config) -> nn.Module:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"weights file '{path}' does not fit model.backbone={cfg.model.backbone} "
                         f"({one_line(e, 240)}); pass --config with the architecture the weights are for") from None
    return module


def load_weights(spec: str | Path, cfg: Config | None = None, device: torch.device | str = "cpu") -> Encoder:
    """The one resolver of ``--checkpoint`` (evaluation, ``embed``, ``search``, ``export``, :func:`load_encoder`).

    ``spec`` is a checkpoint written by videocontrast (pretraining, fine-tuning, supervised), a file written by
    ``videocontrast export`` (``.pt`` or ``.safetensors`` with its JSON beside it), a state-dict file of external
    weights (``.pt`` or ``.safetensors``; the architecture comes from ``cfg``), or ``random`` (``cfg``'s
    architecture, seeded by ``train.seed``). ``cfg`` (default: the default config) also supplies the dataset
    settings when given; checkpoints and exported files bring their own architecture and clip settings.
    """
    spec = str(spec)
    arch = copy.deepcopy(cfg) if cfg is not None else load_config()
    device = torch.device(device)
    if spec == "random":
        desc = json.dumps(dataclasses.asdict(arch.model), sort_keys=True)  # width/layers change the network
        return Encoder(backbone_from_config(arch, seed=arch.train.seed).to(device),
                       weights_fingerprint(None, arch.train.seed, arch=desc),
                       f"random init ({arch.model.backbone}, seed {arch.train.seed})", arch)
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--checkpoint '{spec}' is not a file; give a checkpoint written by "
                                "`videocontrast pretrain`, a file written by `videocontrast export`, `random`, "
                                "or a state-dict file of external weights")
    meta = exported_metadata(path)
    if meta is not None:  # the backbone alone, its config in the JSON beside it
        own = config_from_dict(meta["config"])
        own.model.weights = None
        module = _load_exactly(backbone_from_config(own), read_state_dict(path), path, own)
        return Encoder(module.to(device), weights_fingerprint(path), f"exported backbone {path}",
                       with_dataset(own, cfg) if cfg is not None else own)
    if path.suffix == ".safetensors":  # external weights in safetensors format: cfg gives the architecture
        arch.model.weights = None
        state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("fc.")}
        module = _load_exactly(backbone_from_config(arch, seed=arch.train.seed), state, path, arch)
        arch.model.weights = str(path)
        return Encoder(module.to(device), weights_fingerprint(path), f"external weights {path}", arch)
    try:
        state = load_checkpoint(path)
    except NotACheckpointError:
        state = None
    if state is not None:
        kind = state.get("kind", "pretrain")
        projection = None
        if kind == "pretrain":
            method, ckpt_cfg = method_from_checkpoint(state)
            module = method.backbone
            projection = nn.Sequential(method.backbone, method.head).to(device)
        else:
            module, ckpt_cfg = model_from_checkpoint(state)
        return Encoder(module.to(device), weights_fingerprint(path), f"{kind} checkpoint {path}",
                       with_dataset(ckpt_cfg, cfg) if cfg is not None else ckpt_cfg, projection)
    # External weights (e.g. torchvision's Kinetics-400 r3d_18 state dict the user downloaded).
    arch.model.weights = str(path)
    try:
        module = backbone_from_config(arch, seed=arch.train.seed)
    except ValueError as e:
        if "\n" not in str(e):
            raise
        raise ValueError(f"{one_line(e, 240)}; pass --config with the architecture the weights are for") from None
    return Encoder(module.to(device), weights_fingerprint(path), f"external weights {path}", arch)


def resolve_encoder(spec: str, cfg: Config, device: torch.device, out_dir: Path) -> Encoder:
    """Turn ``--checkpoint`` into an encoder (see :func:`load_weights`); ``supervised`` first trains the
    supervised baseline in ``out_dir/supervised``. ``cfg`` supplies the dataset flags (and the architecture for
    ``random``/``supervised``/external weights)."""
    if spec == "supervised":
        spec = str(train_supervised(cfg, device, out_dir / "supervised"))
    return load_weights(spec, cfg, device)


def features(enc: Encoder, subset: str, device: torch.device, cache_dir: Path | None = None,
             layer: str = "backbone") -> dict[str, Any]:
    """Clip-level features of ``subset`` (cached on disk by weights, dataset and protocol).

    ``layer``: ``backbone`` (the pooled representation) or ``head`` (the projection head's output; needs
    ``enc.projection``).
    """
    cfg = enc.cfg
    d = cfg.data
    module = enc.module if layer == "backbone" else enc.projection
    if module is None:
        raise ValueError(f"{enc.description} has no projection head: features of layer '{layer}' need a "
                         "pretraining checkpoint")
    # Settings that change the features beyond the defaults are added to the key only when set, so feature
    # caches written before they existed stay valid.
    extra = {**({"input_view": "resize"} if cfg.eval.linear_input == "resize" else {}),
             **({"layer": layer} if layer != "backbone" else {})}
    key = feature_key(enc.fingerprint, d.dataset, dataset_root(cfg), d.split, subset, d.clip_len, d.eval_clips,
                      d.size, splits=d.splits, stride=d.stride, decode_size=d.decode_size, input=d.input,
                      crops=d.eval_crops, **extra)
    cache = FeatureCache(cache_dir or default_cache_dir() / "features")

    def compute() -> dict[str, Any]:
        # One pass per crop position; every (clip, crop) is a row, video_ids tie them to their video.
        loader = eval_loader(cfg, subset)
        positions = eval_crop_positions(cfg)
        runs = [extract_features(module, loader, build_eval_transform(cfg, pos).to(device), device,
                                 desc=f"{subset} features" + (f" ({pos} crop)" if len(positions) > 1 else ""))
                for pos in positions]
        out = {k: np.concatenate([r[k] for r in runs]) for k in ("feats", "labels", "video_ids")}
        out["paths"] = runs[0]["paths"]
        return out

    return cache.load_or_compute(key, compute)


def knn_monitor(cfg: Config, device: torch.device) -> Monitor | None:
    """The engine's monitor: clip-level kNN top-1 of the current backbone (train split as memory, test split
    as queries), a cheap proxy of representation quality during training; nothing when the data has no labels
    or no test split. None when ``train.knn_every`` is 0 (off)."""
    if not cfg.train.knn_every:
        return None
    try:
        loaders = {subset: eval_loader(cfg, subset) for subset in ("train", "test")}
    except (ValueError, FileNotFoundError):  # no labels or no test split: nothing to monitor
        return lambda backbone: {}
    transform = build_eval_transform(cfg).to(device)

    def monitor(backbone: nn.Module) -> dict[str, float]:
        feats = {s: extract_features(backbone, loader, transform, device) for s, loader in loaders.items()}
        res = knn_classify(feats["train"], feats["test"], k=cfg.eval.knn_k, temperature=cfg.eval.knn_temperature)
        return {"knn_top1": float(res["top1"])}

    return monitor


def class_names(cfg: Config) -> list[str]:
    return list(labeled_dataset(cfg, "train", "eval").classes)


def _train_test(enc: Encoder, device: torch.device, cache_dir: Path | None) -> tuple[dict, dict, list[str]]:
    """What every frozen-feature protocol starts from: train and test features and the class names."""
    return features(enc, "train", device, cache_dir), features(enc, "test", device, cache_dir), class_names(enc.cfg)


def _protocol_common(enc: Encoder) -> dict[str, Any]:
    d = enc.cfg.data
    return {"encoder": enc.description, "features": "backbone pooled output (before the projection head)",
            "dataset": d.dataset, "split": d.split, "clip_len": d.clip_len, "stride": d.stride, "size": d.size,
            "clips_per_video": d.eval_clips, "crops_per_clip": d.eval_crops,
            "clip_sampling": "evenly spaced clips; " + (
                "whole frame resized (eval.linear_input=resize)" if enc.cfg.eval.linear_input == "resize"
                else "centre crop" if d.eval_crops == 1 else "3 crops (start, centre, end of the long side)")}


def run_linear(enc: Encoder, device: torch.device, out_dir: Path, cache_dir: Path | None = None) -> dict[str, Any]:
    # The test split is extracted while the C search on the train features runs (see linear_probe).
    train = features(enc, "train", device, cache_dir)
    res = linear_probe(train, lambda: features(enc, "test", device, cache_dir), class_names(enc.cfg),
                       Cs=enc.cfg.eval.linear_cs,
                       cv_folds=enc.cfg.eval.cv_folds, seed=enc.cfg.train.seed, out_dir=out_dir)
    res["protocol"] = {**_protocol_common(enc), **res.get("protocol", {})}
    return res


def run_knn(enc: Encoder, device: torch.device, out_dir: Path, cache_dir: Path | None = None) -> dict[str, Any]:
    train, test, names = _train_test(enc, device, cache_dir)
    res = knn_classify(train, test, k=enc.cfg.eval.knn_k, temperature=enc.cfg.eval.knn_temperature,
                       num_classes=len(names))
    res["protocol"] = {**_protocol_common(enc), **res.get("protocol", {})}
    return res


def run_retrieve(enc: Encoder, device: torch.device, out_dir: Path, cache_dir: Path | None = None,
                 report_queries: int = 8) -> dict[str, Any]:
    """Retrieval as ``eval.retrieval_protocol`` says: ``ours`` (test videos query the training videos, backbone
    features, R@k) or ``thesis`` (Fig. 4: test videos query the other test videos with the projection head's
    output when the encoder has one, cosine, 3 neighbours). ``results.json``'s ``protocol`` names it."""
    if enc.cfg.eval.retrieval_protocol == "thesis":
        layer = "head" if enc.projection is not None else "backbone"
        test = features(enc, "test", device, cache_dir, layer=layer)
        names = class_names(enc.cfg)
        res = retrieve_within(test, ks=enc.cfg.eval.recall_ks, class_names=names, report_k=3)
        common = _protocol_common(enc)
        common["features"] = ("projection head output (thesis: the 256-d embedding)" if layer == "head" else
                              "backbone pooled output (this encoder has no projection head)")
        res["protocol"] = {**common, **res["protocol"], "name": "thesis"}
    else:
        train, test, names = _train_test(enc, device, cache_dir)
        res = retrieve(train, test, ks=enc.cfg.eval.recall_ks, class_names=names, report_k=5)
        res["protocol"] = {**_protocol_common(enc), **res.get("protocol", {}), "name": "ours"}
    neighbours = res.pop("neighbours", [])
    step = max(1, len(neighbours) // report_queries)
    queries = neighbours[::step][:report_queries]
    res["queries"] = queries  # the queries the report shows, with their neighbours (paths, classes, sims)
    metrics = {k: v for k, v in res.items() if k.startswith("R@")}
    res["report"] = str(retrieval_report(out_dir, queries, title=f"Retrieval: {enc.description}",
                                         metrics=metrics))
    return res


def run_finetune(enc: Encoder, device: torch.device, out_dir: Path) -> dict[str, Any]:
    cfg = enc.cfg
    res = finetune(enc.module, cfg, out_dir, labeled_dataset(cfg, "train", "finetune"),
                   eval_loader(cfg, "test"))
    res["protocol"] = {**_protocol_common(enc), **res.get("protocol", {})}
    return res


def train_supervised(cfg: Config, device: torch.device, out_dir: Path) -> Path:
    """The supervised baseline: the same backbone trained from random init with cross-entropy on the training
    labels (no test data used), in the run folder ``out_dir`` (continued if interrupted, reused when done).

    Returns:
        the path of its checkpoint (``kind: supervised``), usable as ``--checkpoint``.
    """
    backbone = backbone_from_config(cfg, seed=cfg.train.seed).to(device)
    res = finetune(backbone, cfg, out_dir, labeled_dataset(cfg, "train", "finetune"), None,
                   backbone_lr_ratio=1.0, kind="supervised")
    return Path(res["checkpoint"])


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
