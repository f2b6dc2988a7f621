"""The one reader of backbone weights files: ``.pt``/``.pth`` (torch, ``weights_only``) and ``.safetensors``.

Every path that takes weights from a file goes through here (``model.weights=PATH``, ``--checkpoint PATH`` of
external weights, exported files), so one file loads the same wherever it is given. The key clean-up is the same
for both formats:

- wrapper prefixes are stripped, repeatedly: ``module.`` (DataParallel/DDP), ``_orig_mod.`` (``torch.compile``);
- a method's or classifier's state dict (``backbone.*``, ``head.*``, ``key_encoder.*`` ...) keeps its
  ``backbone.*`` entries, prefix removed;
- a classifier's ``fc.*`` is dropped (torchvision's and Hara et al.'s video ResNets end with one).

Nested checkpoints (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped for torch files. Nothing is ever
downloaded and nothing is unpickled beyond tensors and plain values.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import safetensors.torch
from torch import Tensor, nn

from ..serialization import CheckpointReadError, one_line, safe_torch_load

# Prefixes that wrappers add in front of parameter names: DDP/DataParallel, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Where checkpoints of other projects nest their state dict, tried in this order.
_NESTED = ("state_dict", "model", "backbone")


def read_weights(path: str | Path) -> Any:
    """The object a weights file holds: a dict of tensors for ``.safetensors``; for a torch file whatever it
    holds (a state dict, or a checkpoint dict around one), read with ``weights_only=True``.

    Raises:
        ValueError: no such file.
        CheckpointReadError (a ValueError): the file is truncated or not in its format (one line naming it).
        UnsafeCheckpointError: a torch file that names Python code.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights file '{path}' does not exist (give the path of a local .pt, .pth or "
                                ".safetensors file; nothing is downloaded)")
    if path.suffix == ".safetensors":
        try:
            return safetensors.torch.load_file(str(path))
        except Exception as e:  # noqa: BLE001 -- safetensors raises its own error types
            raise CheckpointReadError(f"weights file '{path}' cannot be read as safetensors "
                                      f"({type(e).__name__}: {one_line(e, 160)})") from None
    return safe_torch_load(path, label="weights file")


def state_dict_of(obj: Any, path: str | Path) -> dict[str, Tensor]:
    """The mapping of names to tensors in ``obj`` (what :func:`read_weights` returned), unnested.

    Raises:
        ValueError: ``obj`` holds no such mapping (one line naming ``path``).
    """
    for key in _NESTED:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"weights file '{path}' does not hold a state dict (a mapping of names to tensors)")
    return obj


def backbone_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with wrapper prefixes stripped, reduced to its ``backbone.*`` entries when it has any (prefix
    removed), and without a classifier's ``fc.*``."""
    cleaned = {}
    for k, v in state.items():
        while k.startswith(WRAPPER_PREFIXES):
            k = k[len(next(p for p in WRAPPER_PREFIXES if k.startswith(p))):]
        cleaned[k] = v
    if any(k.startswith("backbone.") for k in cleaned):
        cleaned = {k[len("backbone."):]: v for k, v in cleaned.items() if k.startswith("backbone.")}
    return {k: v for k, v in cleaned.items() if not k.startswith("fc.")}


def load_state(model: nn.Module, state: dict[str, Tensor], path: str | Path) -> nn.Module:
    """Load ``state`` (already :func:`backbone_state`-cleaned) into ``model`` in place, all or nothing.

    Raises:
        ValueError: a parameter or buffer of ``model`` is missing from ``state`` or has another shape. The first
            line names the first such key (in the model's order: conv1 before layer4) and how many there are;
            the lines below list them all. Nothing is loaded then.
    Warns:
        UserWarning listing keys in the file that the model does not have.
    """
    own = model.state_dict()
    problems = [(k, "missing from the file" if k not in state else
                 f"file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}")
                for k in own if k not in state or state[k].shape != own[k].shape]
    if problems:
        first, why = problems[0]
        missing = [k for k, w in problems if w == "missing from the file"]
        mismatched = [f"{k}: {w}" for k, w in problems if w != "missing from the file"]
        lines = ([f"missing keys ({len(missing)}): " + ", ".join(missing)] if missing else []) + \
                ([f"shape mismatches ({len(mismatched)}): " + "; ".join(mismatched)] if mismatched else [])
        raise ValueError(f"weights: '{path}' does not fit this backbone ({len(problems)} of {len(own)} entries); "
                         f"first mismatched key {first}: {why}\n  " + "\n  ".join(lines))
    unexpected = sorted(k for k in state if k not in own)
    if unexpected:
        warnings.warn(f"weights: ignoring {len(unexpected)} unexpected keys in '{path}': {', '.join(unexpected)}")
    model.load_state_dict(state, strict=False)
    return model


def load_backbone_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a local weights file into ``model`` (in place) and return it: torchvision video-ResNet state dicts,
    Hara et al.'s checkpoints (``{"state_dict": {"module.conv1.weight": ...}}``), our method checkpoints,
    DDP/compiled ones, in ``.pt``/``.pth`` or ``.safetensors`` (see the module docstring for the key rules)."""
    return load_state(model, backbone_state(state_dict_of(read_weights(path), path)), path)
