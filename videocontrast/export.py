"""``videocontrast export``: the backbone alone, in a file that loads without videocontrast.

Three formats, none of them pickled code:

- ``torchvision``: a plain state dict saved with ``torch.save`` (``.pt``), loadable with
  ``torch.load(path, weights_only=True)``;
- ``safetensors``: the same tensors in a ``.safetensors`` file;
- ``onnx``: the whole backbone network (graph and weights) as an ONNX model (``.onnx``) for onnxruntime, with one
  input ``clips`` ``(B, C, T, H, W)`` float32 and one output ``features`` ``(B, D)``, the batch axis dynamic. Written
  by ``torch.onnx.export(..., dynamo=True)`` (torch.export; the TorchScript exporter is deprecated since torch 2.9),
  which needs the ``onnx`` and ``onnxscript`` packages: ``pip install 'videocontrast[onnx]'``.
  videocontrast does not read it back (``--checkpoint`` refuses it): it is for onnxruntime.

The state-dict formats' keys are torchvision's video ResNet names (``stem.*``, ``layer1.*`` ... ``layer4.*``), so the file loads with
``strict=True`` into ``torchvision.models.video.r3d_18()`` (or ``r2plus1d_18``/``mc3_18``) whose ``fc`` is
replaced by ``torch.nn.Identity()``; torchvision's forward then ends with the same global average pool as
videocontrast's encoder and gives the same features. ``r3d_small`` loads into
``videocontrast.models.build_backbone("r3d_small", **backbone_kwargs)``.

Beside the weights, ``FILE.json`` (the whole name plus ``.json``: ``m.pt.json``, ``m.safetensors.json``) holds
their SHA-1, checked when videocontrast reads the file back, and says what the network expects: input layout, clip
length, frame stride, sizes, normalisation, residual input, the constructor to use and the full config.
videocontrast itself reads a ``.pt``/``.safetensors`` export back anywhere ``--checkpoint`` is taken. As with
the other formats, the ONNX model is the backbone alone: clip sampling, resizing, normalisation and (residual input)
the frame differences are the caller's, as the JSON's ``input.preprocess`` says.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
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
from .serialization import one_line
from .models.backbones import TORCHVISION_BACKBONES
from .names import DIFFERENCE_INPUTS, EXPORT_FORMATS, input_channels, input_frames

# The ONNX model's input and output names (the JSON's "load" snippet feeds "clips").
ONNX_INPUT, ONNX_OUTPUT = "clips", "features"
ONNX_INSTALL = "pip install 'videocontrast[onnx]'"


def _loading_code(backbone: str, kwargs: dict[str, Any], fmt: str, name: str) -> str:
    if fmt == "onnx":
        return ("import numpy as np, onnxruntime\n"
                f"sess = onnxruntime.InferenceSession('{name}')\n"
                "# x: float32 (B, C, T, H, W) clips, prepared as input.preprocess says\n"
                f"feats = sess.run(None, {{'{ONNX_INPUT}': x}})[0]\n")
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
    constructor = (f"onnxruntime.InferenceSession('{name}') (the network and its weights are in the file)"
                   if fmt == "onnx"
                   else f"videocontrast.models.build_backbone('{backbone}', **backbone_kwargs)"
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
        **({"onnx": {"input": ONNX_INPUT, "output": ONNX_OUTPUT, "dynamic_axes": {"batch": 0},
                     "exporter": "torch.onnx.export(dynamo=True)", "torch_version": torch.__version__}}
           if fmt == "onnx" else {}),
        "source": {"checkpoint": encoder.source, "fingerprint": encoder.fingerprint},
        "sha1": sha1,
        "config": cfg.to_dict(),
    }


def _check_onnx_installed() -> None:
    """The packages ``torch.onnx.export(dynamo=True)`` needs, before any work: one line naming the extra."""
    import importlib.util
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(f"--format onnx needs the {' and '.join(missing)} package{'s' * (len(missing) > 1)}: "
                         f"{ONNX_INSTALL}")


def onnx_bytes(encoder: nn.Module) -> bytes:
    """``encoder`` (eval mode, on the CPU) as the bytes of one ONNX file: input ``clips`` of the shape the config
    gives, the batch axis dynamic; output ``features``."""
    d = encoder.config.data
    # batch 2, not 1: torch.export specialises a size-1 axis instead of keeping it symbolic
    example = torch.zeros(2, input_channels(d.input), input_frames(d.input, d.clip_len), d.size, d.size)
    try:
        program = torch.onnx.export(encoder, (example,), input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True,
                                    verbose=False)
    except ImportError as e:  # an onnx/onnxscript too old or broken for this torch
        raise ValueError(f"--format onnx: the ONNX exporter cannot run ({one_line(e, 160)}); "
                         f"{ONNX_INSTALL}") from None
    with tempfile.TemporaryDirectory(prefix="videocontrast-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        program.save(str(path), external_data=False)  # one self-contained file (a backbone is far under 2 GB)
        return path.read_bytes()


def export_backbone(checkpoint: str | Path, out: str | Path, fmt: str | None = None,
                    config: str | Path | Config | None = None) -> tuple[Path, Path]:
    """Write the backbone of ``checkpoint`` (anything :func:`~videocontrast.api.load_encoder` takes) to ``out``.

    Args:
        fmt: ``torchvision``, ``safetensors`` or ``onnx``; default: ``safetensors`` for a ``.safetensors`` name,
            ``onnx`` for an ``.onnx`` name, else ``torchvision``.
        config: the architecture for ``random`` and external weights.

    Returns:
        ``(weights file, JSON description)``.
    """
    out = Path(out)
    fmt = fmt or {".safetensors": "safetensors", ".onnx": "onnx"}.get(out.suffix.lower(), "torchvision")
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"--format '{fmt}' is not one of {', '.join(EXPORT_FORMATS)}")
    if out.suffix.lower() == ".onnx" and fmt != "onnx":  # --checkpoint refuses .onnx names: keep the name honest
        raise ValueError(f"--out '{out}' ends in .onnx but --format is {fmt}; use --format onnx, or a .pt or "
                         ".safetensors name")
    if fmt == "onnx":
        _check_onnx_installed()
    side = export_sidecar(out)
    if out.suffix == ".json":
        raise ValueError(f"--out '{out}' ends in .json, the kind of name of the description written beside the "
                         "weights; use e.g. encoder.pt, encoder.safetensors or encoder.onnx")
    # Before the work: a folder, a read-only place or a full disk loses nothing and leaves nothing behind.
    check_writable(out, folder=False)
    check_writable(side, folder=False, flag="--out's description")
    encoder = load_encoder(checkpoint, "cpu", config)
    # Own, contiguous copies: safetensors refuses shared or strided storage, torch.save would keep whole storages.
    state = None if fmt == "onnx" else {k: v.detach().cpu().contiguous().clone()
                                        for k, v in encoder.state_dict().items()}
    # Serialised in memory, then each file written whole under a fresh name and renamed over its own
    # (fileio.atomic_write_bytes): nothing is written through a link planted at the name or at a temporary name.
    if fmt == "onnx":
        data = onnx_bytes(encoder)
    elif fmt == "safetensors":
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
