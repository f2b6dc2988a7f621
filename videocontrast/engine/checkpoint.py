"""Atomic checkpoints: a run killed at any moment leaves the last complete checkpoint intact.

The file holds everything needed to continue bit-for-bit: model (with MoCo's momentum encoder and
queue as buffers), optimiser, scaler, epoch, global step, RNG states and the resolved config.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileio import atomic_write
from ..serialization import CheckpointReadError, UnsafeCheckpointError, safe_torch_load  # noqa: F401 (re-exported)

# Bump when the layout changes; load_checkpoint upgrades older versions or says why it cannot.
# 2: RNG states and every other non-tensor value are plain Python (no NumPy objects), so the file loads with
#    torch.load(weights_only=True) and no allowlist.
CHECKPOINT_VERSION = 2


class NotACheckpointError(CheckpointReadError):
    """The file is a readable torch file but not a videocontrast checkpoint (e.g. a plain state dict)."""


def _plain(obj: Any) -> Any:
    """``obj`` with NumPy scalars and arrays turned into Python numbers and lists.

    Containers without NumPy values are returned as they are (the same object), so a state dict keeps its
    OrderedDict type and ``_metadata``.
    """
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, dict):
        items = {k: _plain(v) for k, v in obj.items()}
        if all(items[k] is v for k, v in obj.items()):
            return obj
        out = type(obj)(items) if type(obj) is not dict else items
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        items = [_plain(v) for v in obj]
        if all(a is b for a, b in zip(items, obj)):
            return obj
        return items if isinstance(obj, list) else tuple(items)
    return obj


def _numpy_rng_to_plain(state: Any) -> dict[str, Any]:
    """``np.random.get_state()`` (a tuple holding a uint32 array) as a dict of Python ints, lists and floats."""
    if isinstance(state, dict):  # already plain
        return state
    name, key, pos, has_gauss, cached = state
    return {"bit_generator": str(name), "key": np.asarray(key, dtype=np.uint32).tolist(), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_rng_from_plain(state: dict[str, Any]) -> tuple:
    return (state["bit_generator"], np.asarray(state["key"], dtype=np.uint32), state["pos"], state["has_gauss"],
            state["cached_gaussian"])


def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from, as tensors and plain Python values (a checkpoint must not need NumPy
    objects: they would need a full unpickle to load)."""
    state = {"python": random.getstate(), "numpy": _numpy_rng_to_plain(np.random.get_state()),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> list[str]:
    """Restore what :func:`rng_state` saved, as far as this machine allows.

    The CUDA generators are restored for the GPUs this process sees, up to as many as the checkpoint holds: a
    checkpoint written where more (or any) GPUs were visible resumes on fewer, or on a CPU, instead of failing
    (``torch.cuda.set_rng_state_all`` raises when a saved GPU is missing).

    Returns:
        one line per state that could not be restored (for the caller to say once); empty when all was.
    """
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(_numpy_rng_from_plain(_numpy_rng_to_plain(state["numpy"])))
    torch.set_rng_state(state["torch"])
    saved = list(state.get("cuda") or [])
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for i, gpu_state in enumerate(saved[:have]):
        torch.cuda.set_rng_state(gpu_state, i)
    if len(saved) <= have:
        return []
    return [f"the checkpoint holds the CUDA random state of {len(saved)} GPU(s) and this process sees {have}: "
            f"{'GPU 0' if have == 1 else f'GPUs 0-{have - 1}' if have else 'none'} restored, the others not (the "
            "clip sampling and augmentation draw from their own seeded generators, not from these)"]


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (:func:`~videocontrast.fileio.atomic_write`: a temporary file in the
    same folder, fsync, then rename; a symbolic link planted at ``path`` is replaced, its target untouched).

    NumPy values are stored as Python numbers and lists so the file loads with ``weights_only=True``. When the
    write fails (a full disk) or is interrupted, the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"version": CHECKPOINT_VERSION, **_plain(state)}
    atomic_write(path, lambda f: torch.save(state, f), fsync=True)
    return path


def _upgrade(state: dict[str, Any]) -> dict[str, Any]:
    """A version 0/1 checkpoint in the current layout: NumPy RNG state and NumPy numbers made plain."""
    if state.get("version", 0) < 2:
        rng = state.get("rng")
        if isinstance(rng, dict) and "numpy" in rng:
            state["rng"] = {**rng, "numpy": _numpy_rng_to_plain(rng["numpy"])}
        state = {**_plain(state), "version": CHECKPOINT_VERSION}
    return state


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by any version of videocontrast, with a one-line error when it cannot.

    Never unpickles arbitrary objects (see :func:`safe_torch_load`); older checkpoints are upgraded in memory.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist (expected a .pt file written by "
                                "`videocontrast pretrain`, e.g. RUN_DIR/checkpoints/last.pt)")
    return as_checkpoint(safe_torch_load(path, map_location), path)


def is_checkpoint(obj: Any) -> bool:
    """Whether ``obj`` (a loaded torch file) is a videocontrast checkpoint rather than a plain state dict."""
    return isinstance(obj, dict) and "model" in obj and "config" in obj


def as_checkpoint(state: Any, path: str | Path) -> dict[str, Any]:
    """``state``, the object read from ``path``, as a checkpoint of the current layout (see
    :func:`load_checkpoint`); for a caller that has read the file already and must not read it twice."""
    if not is_checkpoint(state):
        raise NotACheckpointError(f"'{path}' is not a videocontrast checkpoint (no 'model' and 'config' "
                                  "entries). For a plain backbone state dict use model.weights=PATH instead")
    version = state.get("version", 0)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointReadError(f"checkpoint '{path}' has format version {version!r}, which this videocontrast "
                                  f"cannot read (it reads up to {CHECKPOINT_VERSION}): if the file comes from a "
                                  "newer videocontrast, upgrade with `pip install -U videocontrast`")
    return _upgrade(state)
