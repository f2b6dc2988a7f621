"""Atomic checkpoints: a run killed at any moment leaves the last complete checkpoint intact.

The file holds everything needed to continue bit-for-bit: model (with MoCo's momentum encoder and
queue as buffers), optimiser, scaler, epoch, global step, RNG states and the resolved config.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Bump when the layout changes; load_checkpoint upgrades older versions or says why it cannot.
# 2: RNG states and every other non-tensor value are plain Python (no NumPy objects), so the file loads with
#    torch.load(weights_only=True) and no allowlist.
CHECKPOINT_VERSION = 2


class CheckpointReadError(ValueError, RuntimeError):
    """A checkpoint or weights file cannot be used; the message (one line) names it and what to do.

    A ValueError so the command line reports it as ``videocontrast CMD: error: ...`` (exit code 2) instead of
    a traceback; also a RuntimeError, which is what callers caught before it existed.
    """


class UnsafeCheckpointError(CheckpointReadError):
    """The file holds Python objects that only a full unpickle could rebuild, and a full unpickle runs
    whatever code the file names. videocontrast never does that, whoever wrote the file."""


class NotACheckpointError(CheckpointReadError):
    """The file is a readable torch file but not a videocontrast checkpoint (e.g. a plain state dict)."""


def _numpy_function(name: str) -> Any:
    """``numpy._core.multiarray.<name>`` (NumPy 2), else ``numpy.core.multiarray.<name>`` (NumPy 1)."""
    core = getattr(np, "_core", None)
    if core is None or not hasattr(core, "multiarray"):
        core = np.core
    return getattr(core.multiarray, name)


def _numpy_safe_globals() -> list[Any]:
    """What the restricted unpickler may use to rebuild NumPy arrays and scalars of plain number types.

    Version 1 checkpoints hold ``np.random.get_state()`` (a tuple with a uint32 array) and NumPy float
    learning rates. These functions and classes only turn bytes into numbers: with them the file is still
    read by torch's weights-only unpickler, which calls nothing else. Both module paths are listed because
    a file written under NumPy 1 names ``numpy.core`` and one written under NumPy 2 ``numpy._core``.
    """
    allowed: list[Any] = [np.ndarray, np.dtype]
    for name in ("_reconstruct", "scalar"):
        fn = _numpy_function(name)
        allowed += [(fn, f"numpy.core.multiarray.{name}"), (fn, f"numpy._core.multiarray.{name}")]
    for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
              np.float16, np.float32, np.float64):
        dtype_class = type(np.dtype(t))
        if dtype_class is not np.dtype:  # NumPy >= 1.25: one class per dtype, which BUILD checks
            allowed.append(dtype_class)
    return allowed


def _one_line(text: str, limit: int = 300) -> str:
    """Collapse an error message to one line of at most ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unpickler_reason(error: Exception) -> str:
    """The first sentence of what torch says went wrong (its weights-only messages run to a page)."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    text = " ".join(text.split())
    return _one_line(text.split(". ", 1)[0].rstrip("."), 200)


def _disallowed_globals(path: Path) -> list[str]:
    """The Python callables/classes a (zip-format) torch file names beyond what the safe loader allows.

    Read by disassembling the pickle, which executes nothing; empty when the file cannot be disassembled.
    Must run inside the same ``safe_globals`` context as the load so that the NumPy allowlist counts.
    """
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # not a zip-format torch file, truncated, ...
        return []


_REFUSAL_HINTS = ("global", "allowlist", "unrecognized function")


def safe_torch_load(path: str | Path, map_location: str | torch.device = "cpu", label: str = "checkpoint") -> Any:
    """``torch.load`` that can never run code from the file.

    Always ``weights_only=True`` (tensors, containers, numbers, strings), plus the NumPy number types that
    version 1 checkpoints hold. There is no fallback to a full unpickle: a file that needs one is refused.

    Raises:
        UnsafeCheckpointError: the file names other Python callables or classes (one line naming the file
            and them).
        CheckpointReadError: the file is truncated or not a torch file.
    """
    path = Path(path)
    with torch.serialization.safe_globals(_numpy_safe_globals()):
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            names = _disallowed_globals(path)
            reason = _unpickler_reason(e)
            if names or any(h in reason.lower() for h in _REFUSAL_HINTS):
                raise UnsafeCheckpointError(_unsafe_message(path, label, names, reason)) from None
            error = e
        except Exception as e:  # a truncated file, not a torch file, ...
            error = e
    raise CheckpointReadError(f"{label} '{path}' cannot be read ({type(error).__name__}: "
                              f"{_unpickler_reason(error)}); it may be truncated or not a PyTorch file: "
                              "use an earlier checkpoint of the run or download it again") from error


def _unsafe_message(path: Path, label: str, names: list[str], reason: str) -> str:
    what = (f"it names Python code ({', '.join(names)}) that only a full unpickle would call" if names
            else f"reading it would need a full unpickle ({reason})")
    return (f"{label} '{path}' refused: {what}, and a full unpickle runs code from the file; videocontrast "
            "reads only tensors and plain values. If you trust the file's source, re-save just its tensors, "
            "e.g. torch.save(torch.load(PATH, weights_only=False)['model'], 'weights.pt'), and pass that")


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


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(_numpy_rng_from_plain(_numpy_rng_to_plain(state["numpy"])))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, fsync, then rename.

    NumPy values are stored as Python numbers and lists so the file loads with ``weights_only=True``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    state = {"version": CHECKPOINT_VERSION, **_plain(state)}
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old or the new file, never half
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
    state = safe_torch_load(path, map_location)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise NotACheckpointError(f"'{path}' is not a videocontrast checkpoint (no 'model' and 'config' "
                                  "entries). For a plain backbone state dict use model.weights=PATH instead")
    version = state.get("version", 0)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointReadError(f"checkpoint '{path}' has format version {version!r}, which this videocontrast "
                                  f"cannot read (it reads up to {CHECKPOINT_VERSION}): if the file comes from a "
                                  "newer videocontrast, upgrade with `pip install -U videocontrast`")
    return _upgrade(state)
