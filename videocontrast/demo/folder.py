"""A demo's output folder: which outputs a demo wrote (``demo.json``), whether a folder may be cleared for a fresh
run (only what a demo wrote, never a user's other files), and its stored results."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any


from ..engine.run import RunFolderError, run_lock
from ..fileio import atomic_write_text
from .verdict import BASELINES


# What a demo writes into its folder. The names it created are recorded in MANIFEST when it starts, and `--fresh`
# removes those and nothing else: a folder whose outputs no demo recorded is refused, never emptied.
DEMO_OUTPUTS = ("pretrain", "pretrained", *BASELINES, "cache", "results.json", "report.html", "loss.png",
                "embeddings.png", "label_efficiency", "label_efficiency.png", "val")


MANIFEST = "demo.json"


def recorded_outputs(out: Path) -> list[str]:
    """The outputs :data:`MANIFEST` in ``out`` records as a demo's (only names of :data:`DEMO_OUTPUTS`: a manifest
    is a file in a folder anyone may write, so it cannot make --fresh remove anything else); [] without one."""
    if not (out / MANIFEST).is_file() and _demo_before_manifests(out):
        return [n for n in DEMO_OUTPUTS if _present(out / n)]
    try:
        data = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return []
    names = data.get("outputs") if isinstance(data, dict) else None
    return [n for n in DEMO_OUTPUTS if isinstance(names, list) and n in names]


def _demo_before_manifests(out: Path) -> bool:
    """``out`` is a demo folder written before demos recorded their outputs: a pretraining run in ``pretrain/``
    and a ``results.json`` with a demo's verdict and margins (what no other command writes)."""
    try:
        results = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return False
    return ((out / "pretrain" / "config.yaml").is_file() and isinstance(results, dict)
            and {"verdict", "margin_vs_best", "pretrained", "random_init"} <= results.keys())


def record_outputs(out: Path) -> None:
    """Record in ``out/MANIFEST`` the outputs this demo may write: those recorded already and those not there yet
    (so never a file or folder that was there before any demo)."""
    recorded = recorded_outputs(out)
    names = [n for n in DEMO_OUTPUTS if n in recorded or not _present(out / n)]
    atomic_write_text(out / MANIFEST, json.dumps({"written_by": "videocontrast demo", "outputs": names}, indent=2)
                      + "\n")


def _present(p: Path) -> bool:
    return p.exists() or p.is_symlink()


def check_clearable(out: Path) -> None:
    """Raise :class:`RunFolderError` when ``out`` holds a demo output name that no demo recorded there (see
    :data:`MANIFEST`): ``--fresh`` would remove something a demo did not write."""
    recorded = recorded_outputs(out)
    foreign = [n for n in DEMO_OUTPUTS if _present(out / n) and n not in recorded]
    if foreign:
        why = "no demo recorded them" if (out / MANIFEST).is_file() else f"it has no {MANIFEST}: no demo wrote it"
        raise RunFolderError(f"--fresh removes only what a demo wrote in '{out}', and it holds "
                             f"{', '.join(foreign)} ({why}); move them away or choose another --out")


def clear_demo(out: Path) -> list[str]:
    """Remove a previous demo's outputs from ``out``: the names its :data:`MANIFEST` records, after
    :func:`check_clearable`; returns the names removed. A symbolic link is removed, not what it points to."""
    check_clearable(out)
    removed = []
    for name in recorded_outputs(out):
        p = out / name
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            with run_lock(p) if name == "pretrain" else contextlib.nullcontext():  # not while another run trains
                shutil.rmtree(p)
        else:
            continue
        removed.append(name)
    return removed


def read_results(out: Path) -> dict[str, Any] | None:
    """The previous run's ``results.json`` in ``out`` (None when absent or unreadable)."""
    try:
        res = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return None
    return res if isinstance(res, dict) else None
