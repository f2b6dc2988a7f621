"""``videocontrast ablate``: a grid over named config fields, like the thesis's Tables 3-5 and Figs. 5-6.

Each cell (one combination) pretrains in ``OUT/cells/<name>/`` and is evaluated; its results are stored in
``OUT/cells/<name>/cell.json``. A finished cell is never recomputed and an interrupted cell resumes from
its checkpoint, so an interrupted grid continues where it stopped.

With ``data.val_fraction`` (``--val``) every cell is scored on a validation split of its training videos (grouped by
source, seeded by the cell's ``train.seed``; ``OUT/cells/<name>/<eval>_val/val_split.txt``), never on the test split:
the table's columns are then ``linear_val_top1``, ... and its title says so. Pretraining ignores the split.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import json
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..config import Config, ConfigError, apply_overrides, validate
from ..engine.device import resolve_device
from ..engine.run import check_writable, resume_config, stored_run
from ..engine.train import pretrain
from .run import COMMANDS, knn_monitor, resolve_encoder, training_subsets
from .plots import new_figure
from ..fileio import atomic_write_text, save_figure
from ..names import ABLATE_SCORES, percent


def parse_grid(items: list[str]) -> list[tuple[str, list[str]]]:
    """``["aug.temporal=none,shift", "data.clip_len=8,16"]`` -> ``[("aug.temporal", ["none", "shift"]), ...]``.

    Raises:
        ConfigError: an item without ``=``, without a value, or a field given twice.
    """
    axes = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid '{item}' is not of the form field=v1,v2 (e.g. aug.temporal=none,shift)")
        key, values = item.split("=", 1)
        key = key.strip()
        vals = [v for v in values.split(",") if v.strip() != ""]
        if not key or not vals:
            raise ConfigError(f"--grid '{item}' gives {'no field' if not key else 'no values'}; write field=v1,v2 "
                              "(e.g. aug.temporal=none,shift)")
        if key in (a for a, _ in axes):
            raise ConfigError(f"--grid names {key} twice; give all its values in one field=v1,v2")
        if len(set(vals)) < len(vals):
            raise ConfigError(f"--grid '{item}' repeats a value; give each once")
        axes.append((key, vals))
    if not axes:
        raise ConfigError("--grid needs at least one field=v1,v2")
    return axes


def cell_name(combo: dict[str, str]) -> str:
    return "__".join(f"{k.split('.')[-1]}-{v}" for k, v in combo.items()).replace("/", "_")


# The evaluations a cell can run (eval.run.COMMANDS that read cached features; fine-tuning trains a run of its own).
CELL_EVALS = ("linear", "knn", "retrieve")


def check_evals(evals: list[str]) -> list[str]:
    """The names of ``--eval``, each one of :data:`CELL_EVALS`.

    Raises:
        ConfigError: naming the unknown ones and the choices.
    """
    names = [e.strip() for e in evals]
    unknown = [e for e in names if e not in CELL_EVALS]
    if unknown or not names:
        raise ConfigError(f"--eval {','.join(names)}: {', '.join(repr(e) for e in unknown) or 'nothing given'} is not "
                          f"an evaluation of a cell; choose from {', '.join(CELL_EVALS)} (comma-separated)")
    return names


def grid_cells(cfg: Config, grid: list[str]) -> list[tuple[dict[str, str], Config]]:
    """Every combination of the grid, as ``(combo, config)``, each validated (so a bad value is an error before
    the first cell trains). Two cells whose folder names coincide would share results: refused."""
    axes = parse_grid(grid)
    combos = [dict(zip([a for a, _ in axes], values)) for values in itertools.product(*[v for _, v in axes])]
    cells, names = [], {}
    for combo in combos:
        c = copy.deepcopy(cfg)
        apply_overrides(c, [f"{k}={v}" for k, v in combo.items()])
        try:
            validate(c)
        except ConfigError as e:
            raise ConfigError(f"--grid cell {', '.join(f'{k}={v}' for k, v in combo.items())}: {e}") from None
        name = cell_name(combo)
        if name in names:
            raise ConfigError(f"--grid cells {names[name]} and {combo} would share the folder cells/{name}; give "
                              "values that differ after '/' is replaced by '_'")
        names[name] = combo
        cells.append((combo, c))
    return cells


def run_ablation(cfg: Config, grid: list[str], out: Path, evals: list[str] = ("linear", "knn")) -> str:
    """Pretrain and evaluate every cell of ``grid`` into ``out`` (see the module docstring); returns the table.
    The grid, every cell's settings and the evaluation names are checked before the first cell trains."""
    evals = check_evals(list(evals))
    cells = grid_cells(cfg, grid)
    scored_on = _scored_on(cfg)
    axes = list(cells[0][0])
    check_writable(out)
    rows: list[dict[str, Any]] = []
    bar = None  # cells done / total; shown from the first finished cell on (each cell pretrains quietly)
    try:
        for combo, c in cells:
            cdir = out / "cells" / cell_name(combo)
            done = cdir / "cell.json"
            row = json.loads(done.read_text()) if done.exists() else None
            # a cell scored on another split (test vs a validation split) is evaluated again, its pretraining kept
            if row is not None and row.get("scored_on", "test") == scored_on and _reusable(_pretrain_config(c),
                                                                                        cdir / "pretrain"):
                rows.append(row)
            else:
                rows.append(_run_cell(combo, c, cdir, out, evals))
            bar = _advance(bar, len(cells), cell_name(combo))
    finally:
        if bar is not None:
            bar.close()
    return write_tables(rows, out, axes, caption=_caption(cfg))


def _scored_on(cfg: Config) -> str:
    return f"validation {cfg.data.val_fraction:g}" if cfg.data.val_fraction else "test"


def _caption(cfg: Config) -> str:
    """What the table's scores are on."""
    if not cfg.data.val_fraction:
        return "Scores on the test split."
    return (f"Scores on a validation split ({100 * cfg.data.val_fraction:g}% of each cell's training videos, grouped "
            "by source, stratified by class); the test split was not used.")


def _pretrain_config(c: Config) -> Config:
    """A cell's pretraining settings: the evaluation's subsets left out (pretraining uses every training video),
    so that a grid scored on a validation split shares its pretraining with the same grid scored on test."""
    p = copy.deepcopy(c)
    p.data.val_fraction, p.data.labels_per_class, p.data.label_fraction = 0.0, 0, 0.0
    return p


def _reusable(c: Config, run_dir: Path) -> bool:
    """Whether a finished cell's results stand for ``c``: its run has the same settings (a difference a resume
    refuses is an error naming each field; more epochs mean the cell trains on). A cell.json without its run
    folder is trusted as it is."""
    stored = stored_run(run_dir)
    if stored is None:
        return True
    resume_config(stored.config, c, run_dir)  # raises ResumeConfigError on a refused difference
    return c.train.epochs <= stored.config.train.epochs


def _run_cell(combo: dict[str, str], c: Config, cdir: Path, out: Path, evals: list[str]) -> dict[str, Any]:
    """Pretrain one cell (resuming its checkpoint), evaluate it and store ``cdir/cell.json``."""
    device = resolve_device(c.train.device)
    pc = _pretrain_config(c)
    run = pretrain(pc, cdir / "pretrain", resume=True, quiet=True, monitor=knn_monitor(pc, device))
    enc = resolve_encoder(run["checkpoint"], run["config"], device, cdir)
    row: dict[str, Any] = {**combo, "final_loss": run["history"][-1]["loss"] if run["history"] else None}
    for name in evals:
        # validation scores in a folder of their own: a grid scored on test later keeps them, and vice versa
        edir = cdir / (f"{name}_val" if c.data.val_fraction else name)
        subsets = training_subsets(c, edir)  # the cell's own seed and dataset
        res = COMMANDS[name](enc, device, edir, out / "cache", subsets=subsets)
        for k in ABLATE_SCORES:
            for key in (k, f"val_{k}"):
                if key in res:
                    row[f"{name}_{key}"] = res[key]
    row["scored_on"] = _scored_on(c)
    done = cdir / "cell.json"
    done.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(done, json.dumps(row, indent=2))
    return row


def _advance(bar: tqdm | None, total: int, name: str) -> tqdm:
    """Count one more finished cell, creating the bar at the first (nothing is drawn before a cell is done, so
    an error in the first cell stays the only line on stderr)."""
    if bar is None:
        return tqdm(total=total, initial=1, desc="ablate", unit="cell", postfix=f"done: {name}", dynamic_ncols=True)
    bar.set_postfix_str(f"done: {name}", refresh=False)
    bar.update(1)
    return bar


def write_tables(rows: list[dict[str, Any]], out: Path, axes: list[str], caption: str = "") -> str:
    """Markdown + CSV tables and a bar chart of every metric column; ``caption`` (what the scores are on) heads
    the markdown table and titles the chart."""
    out.mkdir(parents=True, exist_ok=True)
    cols = list(dict.fromkeys(k for r in rows for k in r if k != "scored_on"))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for k in cols:
            v = r.get(k, "")
            cells.append(f"{v:.3f}" if k == "final_loss" and isinstance(v, float) else
                         percent(v) if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(([caption, ""] if caption else []) + lines)
    atomic_write_text(out / "results.md", table + "\n")
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "results.csv", text.getvalue())
    metrics = [k for k in cols if k not in axes and k != "final_loss"]
    labels = [" / ".join(str(r[a]) for a in axes) for r in rows]
    fig, ax = new_figure((max(5, 1.2 * len(rows) * max(1, len(metrics)) / 2), 3.5), dpi=110)
    width = 0.8 / max(1, len(metrics))
    for j, m in enumerate(metrics):
        ax.bar([i + j * width for i in range(len(rows))], [100 * r.get(m, 0) for r in rows], width, label=m)
    ax.set_xticks([i + width * (len(metrics) - 1) / 2 for i in range(len(rows))])
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("%")
    ax.legend(fontsize=7)
    ax.set_title(" x ".join(axes) + (" (validation split)" if "validation" in caption else ""))
    fig.tight_layout()
    save_figure(fig, out / "results.png")
    return table
