"""The evaluation commands (linear, knn, retrieve, finetune) as library functions.

Each takes an encoder spec — a checkpoint path, ``random`` (same architecture, random init), or
``supervised`` (train the same backbone with cross-entropy on the labels first) or a plain state-dict
file of external weights — plus the dataset settings, and returns a results dict whose every number says
how it was obtained (``protocol``). Features are cached, so a second probe costs no forward passes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..build.components import (backbone_from_config, build_eval_transform, dataset_root, default_cache_dir,
                                 eval_crop_positions, eval_loader, labeled_dataset)
from ..build.encoder import Encoder, load_weights
from ..config import Config
from ..data.datasets import VideoDataset
from ..data.groups import source_groups_of_paths
from ..data.subsets import SubsetSpec, Subsets, plan_subsets, restrict
from ..engine.loop import Monitor
from .features import FeatureCache, extract_features, feature_key
from .finetune import finetune
from .knn import knn_classify
from .linear import linear_probe
from .report import retrieval_report
from .retrieval import retrieve, retrieve_within
from ..fileio import atomic_write_text
from ..names import RECALL_KS


def resolve_encoder(spec: str, cfg: Config, device: torch.device, out_dir: Path,
                    subsets: Subsets | None = None) -> Encoder:
    """Turn ``--checkpoint`` into an encoder (see :func:`~videocontrast.build.encoder.load_weights`); ``supervised`` first trains the
    supervised baseline in ``out_dir/supervised``, on the training videos of ``subsets`` (default: those
    :func:`training_subsets` gives for ``cfg`` and ``out_dir``). ``cfg`` supplies the dataset flags (and the
    architecture for ``random``/``supervised``/external weights)."""
    if spec == "supervised":
        subsets = subsets if subsets is not None else training_subsets(cfg, out_dir)
        spec = str(train_supervised(cfg, device, out_dir / "supervised", subsets))
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


def subset_spec(cfg: Config) -> SubsetSpec:
    d = cfg.data
    return SubsetSpec(d.val_fraction, d.labels_per_class, d.label_fraction, cfg.train.seed, d.labelled or "")


def training_subsets(cfg: Config, out_dir: Path | None) -> Subsets | None:
    """The training videos (and validation split) that ``data.val_fraction``, ``data.labels_per_class`` and
    ``data.label_fraction`` choose with ``train.seed``, written to / reused from ``out_dir``
    (:func:`~videocontrast.data.subsets.plan_subsets`); None when all are off and ``out_dir`` holds no subsets."""
    spec = subset_spec(cfg)
    spec.check()
    if not spec.active and (out_dir is None or not (Path(out_dir) / "subsets.json").is_file()):
        return None
    ds = labeled_dataset(cfg, "train", "eval")
    return plan_subsets(ds.records, ds.classes, dataset_root(cfg), cfg.data.dataset, spec, out_dir)


def _rows(feats: dict[str, Any], keep: set[str] | None, groups: dict[str, str]) -> dict[str, Any]:
    """The feature rows of the videos whose path is in ``keep`` (all with None), with ``source_groups`` (one
    int per row: the video's source group, see data.subsets) for the linear probe's grouped CV."""
    ids = np.asarray(feats["video_ids"])
    uniq = np.unique(ids)
    paths = np.asarray(feats["paths"], dtype=object)[np.searchsorted(uniq, ids)]  # each row's video path
    mask = np.ones(len(ids), dtype=bool) if keep is None else np.array([p in keep for p in paths], dtype=bool)
    if not mask.any():
        raise ValueError("none of the chosen training videos has features (all unreadable?)")
    names = [groups.get(p, p) for p in paths[mask]]
    codes = np.unique(np.asarray(names, dtype=object), return_inverse=True)[1].astype(np.int64)
    out = {k: np.asarray(v)[mask] for k, v in feats.items() if k in ("feats", "labels", "video_ids")}
    out["paths"] = [p for p in feats["paths"] if keep is None or p in keep]
    out["source_groups"] = codes
    return {**{k: v for k, v in feats.items() if k not in out and k != "unreadable"}, **out}


def _probe_sets(enc: Encoder, device: torch.device, cache_dir: Path | None, subsets: Subsets | None
                ) -> tuple[dict[str, Any], Any]:
    """The training features and what is scored: the validation split's features when ``subsets`` has one,
    else a function that extracts the test split's (called while the linear probe's C search runs)."""
    train = features(enc, "train", device, cache_dir)
    if subsets is None:
        d = enc.cfg.data
        groups = dict(zip(train["paths"], source_groups_of_paths(train["paths"], dataset_root(enc.cfg), d.dataset)))
        return _rows(train, None, groups), lambda: features(enc, "test", device, cache_dir)
    fit = _rows(train, subsets.train, subsets.groups)
    if subsets.has_val:
        return fit, _rows(train, subsets.val, subsets.groups)
    return fit, lambda: features(enc, "test", device, cache_dir)


def scored_features(enc: Encoder, device: torch.device, cache_dir: Path | None = None,
                    subsets: Subsets | None = None, layer: str = "backbone") -> dict[str, Any]:
    """The features (of ``layer``, see :func:`features`) of the videos an evaluation scores: the validation split's
    rows of the training features when ``subsets`` has one, else the test split's."""
    if subsets is not None and subsets.has_val:
        return _rows(features(enc, "train", device, cache_dir, layer=layer), subsets.val, subsets.groups)
    return features(enc, "test", device, cache_dir, layer=layer)


# Keys of a result that are scores on the evaluated split: with a validation split they are named val_KEY, so
# that no validation score is ever read as a test score.
SCORE_KEYS = ("top1", "top5", "video_top1", "video_top5", "per_class", "num_test_clips", "num_test_videos")


def _label_split(res: dict[str, Any], subsets: Subsets | None) -> dict[str, Any]:
    """``res`` with ``evaluated_on`` (``test`` | ``validation``), its scores renamed ``val_*`` when on a validation
    split, and ``subsets`` (the settings, counts and split files) when a subset was chosen."""
    if subsets is not None and subsets.has_val:
        for k in [k for k in res if k in SCORE_KEYS or k.startswith("R@")]:
            res["val_" + k.replace("num_test_", "num_")] = res.pop(k)
        res["evaluated_on"] = "validation"
        res["validation"] = subsets.describe_val()
    else:
        res["evaluated_on"] = "test"
    if subsets is not None and subsets.summary:
        res["subsets"] = subsets.summary
    return res


def _protocol_common(enc: Encoder) -> dict[str, Any]:
    d = enc.cfg.data
    return {"encoder": enc.description, "features": "backbone pooled output (before the projection head)",
            "dataset": d.dataset, "split": d.split, "clip_len": d.clip_len, "stride": d.stride, "size": d.size,
            "clips_per_video": d.eval_clips, "crops_per_clip": d.eval_crops,
            "clip_sampling": "evenly spaced clips; " + (
                "whole frame resized (eval.linear_input=resize)" if enc.cfg.eval.linear_input == "resize"
                else "centre crop" if d.eval_crops == 1 else "3 crops (start, centre, end of the long side)")}


def _subsets(enc: Encoder, out_dir: Path, subsets: Subsets | None) -> Subsets | None:
    return subsets if subsets is not None else training_subsets(enc.cfg, out_dir)


def run_linear(enc: Encoder, device: torch.device, out_dir: Path, cache_dir: Path | None = None,
               subsets: Subsets | None = None) -> dict[str, Any]:
    """Linear probe on the training videos of ``subsets`` (default: :func:`training_subsets` of the encoder's
    settings), scored on the validation split when there is one, else on the test split."""
    subsets = _subsets(enc, out_dir, subsets)
    # The test split is extracted while the C search on the train features runs (see linear_probe).
    train, scored = _probe_sets(enc, device, cache_dir, subsets)
    res = linear_probe(train, scored, class_names(enc.cfg),
                       Cs=enc.cfg.eval.linear_cs,
                       cv_folds=enc.cfg.eval.cv_folds, seed=enc.cfg.train.seed, out_dir=out_dir)
    res["protocol"] = {**_protocol_common(enc), **res.get("protocol", {})}
    return _label_split(res, subsets)


def run_knn(enc: Encoder, device: torch.device, out_dir: Path, cache_dir: Path | None = None,
            subsets: Subsets | None = None) -> dict[str, Any]:
    """kNN with the training videos of ``subsets`` as memory, scored as :func:`run_linear` is."""
    subsets = _subsets(enc, out_dir, subsets)
    train, scored = _probe_sets(enc, device, cache_dir, subsets)
    names = class_names(enc.cfg)
    res = knn_classify(train, scored() if callable(scored) else scored, k=enc.cfg.eval.knn_k,
                       temperature=enc.cfg.eval.knn_temperature, num_classes=len(names))
    res["protocol"] = {**_protocol_common(enc), **res.get("protocol", {})}
    return _label_split(res, subsets)


def run_retrieve(enc: Encoder, device: torch.device, out_dir: Path, cache_dir: Path | None = None,
                 report_queries: int = 8, subsets: Subsets | None = None) -> dict[str, Any]:
    """Retrieval as ``eval.retrieval_protocol`` says: ``ours`` (test videos query the training videos, backbone
    features, R@k) or ``thesis`` (Fig. 4: test videos query the other test videos with the projection head's
    output when the encoder has one, cosine, 3 neighbours). ``results.json``'s ``protocol`` names it. With a
    validation split in ``subsets`` its videos are the queries instead of the test split's."""
    subsets = _subsets(enc, out_dir, subsets)
    if enc.cfg.eval.retrieval_protocol == "thesis":
        layer = "head" if enc.projection is not None else "backbone"
        test = scored_features(enc, device, cache_dir, subsets, layer=layer)
        names = class_names(enc.cfg)
        res = retrieve_within(test, ks=enc.cfg.eval.recall_ks, class_names=names, report_k=3)
        common = _protocol_common(enc)
        common["features"] = ("projection head output (thesis: the 256-d embedding)" if layer == "head" else
                              "backbone pooled output (this encoder has no projection head)")
        res["protocol"] = {**common, **res["protocol"], "name": "thesis"}
    else:
        train, scored = _probe_sets(enc, device, cache_dir, subsets)
        test, names = scored() if callable(scored) else scored, class_names(enc.cfg)
        res = retrieve(train, test, ks=enc.cfg.eval.recall_ks, class_names=names, report_k=5)
        res["protocol"] = {**_protocol_common(enc), **res.get("protocol", {}), "name": "ours"}
    neighbours = res.pop("neighbours", [])
    step = max(1, len(neighbours) // report_queries)
    queries = neighbours[::step][:report_queries]
    res["queries"] = queries  # the queries the report shows, with their neighbours (paths, classes, sims)
    metrics = {k: v for k, v in res.items() if k.startswith("R@")}
    res["report"] = str(retrieval_report(out_dir, queries, title=f"Retrieval: {enc.description}"
                                         + (" (validation split)" if subsets is not None and subsets.has_val else ""),
                                         metrics=metrics))
    return _label_split(res, subsets)


def _val_loader(cfg: Config, subsets: Subsets) -> DataLoader:
    """Evaluation clips of the validation videos (training videos held out), as ``build.eval_loader`` gives the
    test split's."""
    ds = restrict(labeled_dataset(cfg, "train", "eval"), subsets.val)
    ds.on_bad = "mark"
    ds.drop_unreadable(f"in the validation split of {dataset_root(cfg)}")
    if len(ds) == 0:
        raise ValueError(f"none of the validation videos of {dataset_root(cfg)} can be read")
    return DataLoader(ds, batch_size=min(cfg.eval.batch_size, len(ds)), shuffle=False,
                      num_workers=cfg.data.num_workers)


def labelled_train_set(cfg: Config, subsets: Subsets | None) -> VideoDataset:
    """The training videos fine-tuning and the supervised baseline learn from: those of ``subsets`` (all with
    None), one Random m clip each."""
    ds = labeled_dataset(cfg, "train", "finetune")
    return ds if subsets is None else restrict(ds, subsets.train)


def run_finetune(enc: Encoder, device: torch.device, out_dir: Path, subsets: Subsets | None = None
                 ) -> dict[str, Any]:
    """Fine-tuning on the training videos of ``subsets``, scored on its validation split when it has one."""
    cfg = enc.cfg
    subsets = _subsets(enc, out_dir, subsets)
    on_val = subsets is not None and subsets.has_val
    res = finetune(enc.module, cfg, out_dir, labelled_train_set(cfg, subsets),
                   _val_loader(cfg, subsets) if on_val else eval_loader(cfg, "test"),
                   evaluated_on="validation" if on_val else "test")
    res["protocol"] = {**_protocol_common(enc), **res.get("protocol", {})}
    return _label_split(res, subsets)


def train_supervised(cfg: Config, device: torch.device, out_dir: Path, subsets: Subsets | None = None) -> Path:
    """The supervised baseline: the same backbone trained from random init with cross-entropy on the training
    labels (no test data used; only the videos of ``subsets`` when given: a label subset, train minus the
    validation split), in the run folder ``out_dir`` (continued if interrupted, reused when done).

    Returns:
        the path of its checkpoint (``kind: supervised``), usable as ``--checkpoint``.
    """
    backbone = backbone_from_config(cfg, seed=cfg.train.seed).to(device)
    res = finetune(backbone, cfg, out_dir, labelled_train_set(cfg, subsets), None,
                   backbone_lr_ratio=1.0, kind="supervised")
    return Path(res["checkpoint"])


COMMANDS = {"linear": run_linear, "knn": run_knn, "retrieve": run_retrieve, "finetune": run_finetune}


def format_table(results: dict[str, Any]) -> str:
    keys = [p + k for k in ("top1", "top5", "video_top1", "video_top5", *(f"R@{k}" for k in RECALL_KS))
            for p in ("", "val_") if isinstance(results.get(p + k), (int, float))]
    head = " | ".join(f"{k:>{max(10, len(k))}}" for k in keys)
    vals = " | ".join(f"{100 * results[k]:{max(10, len(k)) - 1}.1f}%" for k in keys)
    return f"{head}\n{vals}"


def write_results(out_dir: Path, results: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    atomic_write_text(path, json.dumps(results, indent=2, default=str))
    return path
