"""Atomic checkpoints: a run killed at any moment leaves the last complete checkpoint intact.

The file holds everything needed to continue bit-for-bit: model (with MoCo's momentum encoder and
queue as buffers), optimiser, scaler, epoch, global step, RNG states and the resolved config.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Bump when the layout changes; load_checkpoint upgrades older versions or says why it cannot.
CHECKPOINT_VERSION = 1


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    state = {"version": CHECKPOINT_VERSION, **state}
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old or the new file, never half
    return path


class NotACheckpointError(RuntimeError):
    """The file is a readable torch file but not a videocontrast checkpoint (e.g. a plain state dict)."""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by any version of videocontrast, with a clear error when it cannot."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist (expected a .pt file written by "
                                "`videocontrast pretrain`, e.g. RUN_DIR/checkpoints/last.pt)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated or not a torch file
        raise RuntimeError(f"checkpoint '{path}' cannot be read ({type(e).__name__}: {e}); "
                           "it may be truncated: use an earlier checkpoint of the run") from e
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise NotACheckpointError(f"'{path}' is not a videocontrast checkpoint (no 'model' and 'config' "
                                  "entries). For a plain backbone state dict use model.weights=PATH instead")
    version = state.get("version", 0)
    if version > CHECKPOINT_VERSION:
        raise RuntimeError(f"checkpoint '{path}' has format version {version}, newer than this videocontrast "
                           f"(reads up to {CHECKPOINT_VERSION}): upgrade with `pip install -U videocontrast`")
    return state
