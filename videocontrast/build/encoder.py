"""The one resolver of an encoder: what ``--checkpoint`` (and :func:`videocontrast.load_encoder`) names, as a module.

``--checkpoint`` takes, in the order they are recognised:

- ``random``: the config's architecture, seeded by ``train.seed``;
- a file written by ``videocontrast export`` (its JSON beside it, ``FILE.json``, holding the weights' SHA-1 and
  the config): the backbone alone, its architecture and clip settings from that JSON;
- a checkpoint written by videocontrast (pretraining, fine-tuning, supervised): its own architecture and clip
  settings; a pretraining checkpoint also brings its projection head;
- an ONNX export (``.onnx``, or any file whose JSON says ``"format": "onnx"``) is refused: it is for onnxruntime;
- any other ``.pt``/``.pth``/``.safetensors`` file: external weights (torchvision's Kinetics ``r3d_18``, Hara et
  al.'s checkpoints, a DDP or compiled state dict) of the config's architecture, read by
  :mod:`videocontrast.models.weights` (the same key rules for both formats).

Each file is read once. ``supervised`` (train the baseline first) is the evaluation commands' business
(:func:`videocontrast.eval.run.resolve_encoder`), since it trains.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import Config, config_from_dict, load_config
from ..engine.checkpoint import as_checkpoint, is_checkpoint
from ..eval.features import file_sha1, weights_fingerprint
from ..methods import encoder_of
from ..models.weights import backbone_state, load_state, read_weights, state_dict_of
from ..serialization import one_line
from .components import backbone_from_config, method_from_config


@dataclass
class Encoder:
    """A resolved ``--checkpoint``: the backbone and what the rest of the package needs to know about it."""

    module: nn.Module
    fingerprint: str  # keys the feature cache by the weights' content
    description: str
    cfg: Config  # clip/size settings the encoder expects
    # backbone + projection head (shares the backbone's parameters), from a pretraining checkpoint; None for other
    # encoders. The thesis's retrieval (eval.retrieval_protocol=thesis) embeds with it.
    projection: nn.Module | None = None
    kind: str = "checkpoint"  # random | export | checkpoint | external


def with_dataset(cfg: Config, data_from: Config) -> Config:
    """``cfg`` (an encoder's settings) with the dataset flags of ``data_from`` (the command line)."""
    out = copy.deepcopy(cfg)
    for name in ("dataset", "root", "splits", "split", "num_workers", "strict", "require_complete",
                 "eval_clips", "synthetic_videos_per_class", "synthetic_frames", "synthetic_size",
                 "synthetic_seed", "synthetic_appearances", "eval_crops", "val_fraction", "labels_per_class",
                 "label_fraction", "labelled"):
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


def method_from_checkpoint(state: dict[str, Any]) -> tuple[nn.Module, Config]:
    """The whole method (backbone, projection head, momentum encoder) of a loaded pretraining checkpoint."""
    cfg = config_from_dict(state["config"])
    cfg.model.weights = None  # the checkpoint carries the weights
    method = method_from_config(cfg)
    method.load_state_dict(state["model"])
    return method, cfg


def encoder_from_checkpoint(state: dict[str, Any]) -> tuple[nn.Module, Config, nn.Module | None]:
    """The backbone stored in a loaded checkpoint, its config, and (pretraining checkpoints only) the backbone
    followed by its projection head."""
    if state.get("kind", "pretrain") == "pretrain":
        method, cfg = method_from_checkpoint(state)
        backbone = encoder_of(method)
        return backbone, cfg, nn.Sequential(backbone, method.head)
    cfg = config_from_dict(state["config"])
    cfg.model.weights = None  # the checkpoint carries the weights
    backbone = backbone_from_config(cfg)
    # Fine-tuning and supervised checkpoints store backbone.* + fc.*; older ones the plain backbone.
    backbone.load_state_dict(backbone_state(state["model"]))
    return backbone, cfg, None


def model_from_checkpoint(state: dict[str, Any]) -> tuple[nn.Module, Config]:
    """The backbone stored in a loaded checkpoint (pretraining, fine-tuning or supervised) and its config."""
    backbone, cfg, _ = encoder_from_checkpoint(state)
    return backbone, cfg


def _fitted(module: nn.Module, state: dict[str, torch.Tensor], path: Path, cfg: Config) -> nn.Module:
    """``module`` with ``state`` loaded; a misfit is one line naming the architecture and what to pass."""
    try:
        return load_state(module, state, path)
    except ValueError as e:
        raise ValueError(f"weights file '{path}' does not fit model.backbone={cfg.model.backbone} "
                         f"({one_line(e, 240)}); pass --config with the architecture the weights are for") from None


def load_weights(spec: str | Path, cfg: Config | None = None, device: torch.device | str = "cpu") -> Encoder:
    """``--checkpoint`` as an :class:`Encoder` on ``device`` (see the module docstring for what ``spec`` may be).

    ``cfg`` (default: the default config) gives the architecture for ``random`` and external weights and the
    dataset settings of the returned ``cfg``; checkpoints and exported files bring their own architecture and
    clip settings.
    """
    spec = str(spec)
    arch = copy.deepcopy(cfg) if cfg is not None else load_config()
    arch.model.weights = None
    device = torch.device(device)
    if spec == "random":
        desc = json.dumps(dataclasses.asdict(arch.model), sort_keys=True)  # width/layers change the network
        return Encoder(backbone_from_config(arch, seed=arch.train.seed).to(device),
                       weights_fingerprint(None, arch.train.seed, arch=desc),
                       f"random init ({arch.model.backbone}, seed {arch.train.seed})", arch, kind="random")
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--checkpoint '{spec}' is not a file; give a checkpoint written by "
                                "`videocontrast pretrain`, a file written by `videocontrast export`, `random`, "
                                "or a state-dict file of external weights")
    onnx = path.suffix.lower() == ".onnx"  # refused before its JSON is read: a stale JSON must not say otherwise
    meta = None if onnx else exported_metadata(path)
    if onnx or (meta is not None and meta.get("format") == "onnx"):
        raise ValueError(f"--checkpoint '{spec}' is an ONNX export, which is for onnxruntime "
                         "(onnxruntime.InferenceSession), not videocontrast; pass the checkpoint it was exported "
                         "from, or a .pt/.safetensors export (videocontrast export --format torchvision|safetensors)")
    obj = read_weights(path)
    if meta is not None:  # the backbone alone, its config in the JSON beside it
        own = config_from_dict(meta["config"])
        own.model.weights = None
        module = _fitted(backbone_from_config(own), backbone_state(state_dict_of(obj, path)), path, own)
        return Encoder(module.to(device), weights_fingerprint(path), f"exported backbone {path}",
                       with_dataset(own, cfg) if cfg is not None else own, kind="export")
    if is_checkpoint(obj):
        state = as_checkpoint(obj, path)
        module, ckpt_cfg, projection = encoder_from_checkpoint(state)
        kind = state.get("kind", "pretrain")
        return Encoder(module.to(device), weights_fingerprint(path), f"{kind} checkpoint {path}",
                       with_dataset(ckpt_cfg, cfg) if cfg is not None else ckpt_cfg,
                       projection.to(device) if projection is not None else None)
    # External weights (e.g. torchvision's Kinetics-400 r3d_18 state dict the user downloaded).
    module = _fitted(backbone_from_config(arch, seed=arch.train.seed), backbone_state(state_dict_of(obj, path)),
                     path, arch)
    arch.model.weights = str(path)
    return Encoder(module.to(device), weights_fingerprint(path), f"external weights {path}", arch, kind="external")
