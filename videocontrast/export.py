"""``videocontrast export``: the backbone alone, in a file that loads without videocontrast.

Two formats, both only tensors (nothing to unpickle):

- ``torchvision``: a plain state dict saved with ``torch.save`` (``.pt``), loadable with
  ``torch.load(path, weights_only=True)``;
- ``safetensors``: the same tensors in a ``.safetensors`` file.

The keys are torchvision's video ResNet names (``stem.*``, ``layer1.*`` ... ``layer4.*``), so the file loads with
``strict=True`` into ``torchvision.models.video.r3d_18()`` (or ``r2plus1d_18``/``mc3_18``) whose ``fc`` is
replaced by ``torch.nn.Identity()``; torchvision's forward then ends with the same global average pool as
videocontrast's encoder and gives the same features. ``r3d_small`` loads into
``videocontrast.models.build_backbone("r3d_small", **backbone_kwargs)``.

Beside the weights, ``FILE.json`` (the whole name plus ``.json``: ``m.pt.json``, ``m.safetensors.json``) holds
their SHA-1, checked when videocontrast reads the file back, and says what the network expects: input layout, clip
length, frame stride, sizes, normalisation, residual input, the constructor to use and the full config.
videocontrast itself reads an exported file back anywhere ``--checkpoint`` is taken.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from . import __version__
from .api import load_encoder
from .build.components import backbone_kwargs
from .build.encoder import EXPORT_MARKER, export_sidecar
from .config import Config
from .engine.run import check_writable
from .fileio import atomic_write_bytes, atomic_write_text
from .models.backbones import TORCHVISION_BACKBONES
from .names import DIFFERENCE_INPUTS, EXPORT_FORMATS, input_frames


def _loading_code(backbone: str, kwargs: dict[str, Any], fmt: str, name: str) -> str:
    if backbone not in TORCHVISION_BACKBONES:  # videocontrast's own networks (r3d_small, hara_r3d_18)
        args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
        build = f"from videocontrast.models import build_backbone\nmodel = build_backbone('{backbone}'{args})\n"
    else:
        build = (f"import torch, torchvision\nmodel = torchvision.models.video.{backbone}()\n"
                 "model.fc = torch.nn.Identity()\n")
    read = (f"state = torch.load('{name}', weights_only=True)\n" if fmt == "torchvision" else
            f"import safetensors.torch\nstate = safetensors.torch.load_file('{name}')\n")
    return build + read + "model.load_state_dict(state, strict=True)\nmodel.eval()\n"


def describe(encoder: nn.Module, sha1: str, fmt: str, name: str) -> dict[str, Any]:
    """What the exported network expects and gives (the JSON written beside the weights): ``sha1`` the hex SHA-1
    of the weights file's bytes, ``name`` its file name."""
    cfg: Config = encoder.config
    d, backbone = cfg.data, cfg.model.backbone
    residual = d.input in DIFFERENCE_INPUTS
    kwargs = backbone_kwargs(cfg)
    constructor = (f"videocontrast.models.build_backbone('{backbone}', **backbone_kwargs)"
                   if backbone not in TORCHVISION_BACKBONES
                   else f"torchvision.models.video.{backbone}(weights=None), then model.fc = torch.nn.Identity()")
    return {
        EXPORT_MARKER: 1,
        "videocontrast_version": __version__,
        "weights": name,
        "format": fmt,
        "backbone": backbone,
        "backbone_kwargs": kwargs,
        "constructor": constructor,
        "load": _loading_code(backbone, kwargs, fmt, name),
        "feature_dim": int(encoder.feature_dim),
        "input": {
            "layout": ("(B, C, T, H, W) float32, C = 6 (RGB frames, then their differences)" if d.input == "both"
                       else "(B, C, T, H, W) float32, C = 3 (RGB)"),
            "clip_len": d.clip_len,
            "stride": d.stride,
            "frames": input_frames(d.input, d.clip_len),
            "decode_size": d.decode_size,
            "size": d.size,
            "preprocess": (f"take clip_len frames every stride-th frame; resize each so its short side is decode_size "
                           f"({d.decode_size}, aspect kept, antialiased bilinear); centre crop size x size "
                           f"({d.size}); scale to [0, 1]; subtract mean and divide by std per channel"
                           + {"residual": "; then frame differences x[:, :, 1:] - x[:, :, :-1] (T = clip_len - 1)",
                              "both": "; then torch.cat([x[:, :, 1:], x[:, :, 1:] - x[:, :, :-1]], dim=1) "
                                      "(frames and their differences, C = 6, T = clip_len - 1)"}
                           .get(d.input, "")),
            "value_range": "[0, 1] before normalisation",
            "mean": [float(v) for v in encoder.mean],
            "std": [float(v) for v in encoder.std],
            "residual": residual,
            "input": d.input,
        },
        "output": f"(B, {int(encoder.feature_dim)}) float32: global average pool of layer4 over T, H, W "
                  "(L2-normalise for cosine similarity)",
        "source": {"checkpoint": encoder.source, "fingerprint": encoder.fingerprint},
        "sha1": sha1,
        "config": cfg.to_dict(),
    }


def export_backbone(checkpoint: str | Path, out: str | Path, fmt: str | None = None,
                    config: str | Path | Config | None = None) -> tuple[Path, Path]:
    """Write the backbone of ``checkpoint`` (anything :func:`~videocontrast.api.load_encoder` takes) to ``out``.

    Args:
        fmt: ``torchvision`` or ``safetensors``; default: ``safetensors`` for a ``.safetensors`` name, else
            ``torchvision``.
        config: the architecture for ``random`` and external weights.

    Returns:
        ``(weights file, JSON description)``.
    """
    out = Path(out)
    fmt = fmt or ("safetensors" if out.suffix == ".safetensors" else "torchvision")
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"--format '{fmt}' is not one of {', '.join(EXPORT_FORMATS)}")
    side = export_sidecar(out)
    if out.suffix == ".json":
        raise ValueError(f"--out '{out}' ends in .json, the kind of name of the description written beside the "
                         "weights; use e.g. encoder.pt or encoder.safetensors")
    # Before the work: a folder, a read-only place or a full disk loses nothing and leaves nothing behind.
    check_writable(out, folder=False)
    check_writable(side, folder=False, flag="--out's description")
    encoder = load_encoder(checkpoint, "cpu", config)
    # Own, contiguous copies: safetensors refuses shared or strided storage, torch.save would keep whole storages.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in encoder.state_dict().items()}
    # Serialised in memory, then each file written whole under a fresh name and renamed over its own
    # (fileio.atomic_write_bytes): nothing is written through a link planted at the name or at a temporary name.
    if fmt == "safetensors":
        data = safetensors.torch.save(state, metadata={"format": "pt", "backbone": encoder.config.model.backbone})
    else:
        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, data)
        # the description last: a kill in between leaves the old description, whose SHA-1 refuses the new weights
        description = describe(encoder, hashlib.sha1(data).hexdigest(), fmt, out.name)
        atomic_write_text(side, json.dumps(description, indent=2) + "\n")
    except OSError as e:
        raise ValueError(f"--out '{out}' cannot be written ({e.strerror or e}); choose another --out") from None
    return out, side
