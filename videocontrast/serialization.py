"""Reading torch files (checkpoints, weights) without ever running code from them.

``torch.load`` with ``weights_only=False`` unpickles arbitrary objects, and unpickling runs whatever callables
the file names, so a downloaded or planted ``.pt`` could execute code. Every torch file videocontrast reads goes
through :func:`safe_torch_load`: ``weights_only=True`` always, a small allowlist of NumPy number rebuilders for
checkpoints written before format version 2, and a one-line refusal (never a fallback) for anything else.
It sits below models and engine, which both read torch files.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointReadError(ValueError, RuntimeError):
    """A checkpoint or weights file cannot be used; the message (one line) names it and what to do.

    A ValueError so the command line reports it as ``videocontrast CMD: error: ...`` (exit code 2) instead of
    a traceback; also a RuntimeError, which is what callers caught before it existed.
    """


class UnsafeCheckpointError(CheckpointReadError):
    """The file holds Python objects that only a full unpickle could rebuild, and a full unpickle runs
    whatever code the file names. videocontrast never does that, whoever wrote the file."""


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


def one_line(text: object, limit: int = 300) -> str:
    """Collapse an error message to one line of at most ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unpickler_reason(error: Exception) -> str:
    """The first sentence of what torch says went wrong (its weights-only messages run to a page)."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    text = " ".join(text.split())
    return one_line(text.split(". ", 1)[0].rstrip("."), 200)


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
