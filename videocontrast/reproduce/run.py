"""``videocontrast reproduce``: the runs behind each results table and figure of the thesis, and the table itself
with two numbers per cell, ours and the thesis's. What runs behind a cell, and the thesis's number there, is
:mod:`videocontrast.reproduce.thesis`.

Everything runs in ``OUT/runs/<encoder>/``: pretraining in ``pretrain/`` (continued when interrupted, skipped
when finished), each evaluation in ``<eval>-<dataset>/results.json`` (reused when it was computed from the same
weights). Tables share encoders by name, so ``table4`` after ``table3`` reuses its spatial-only runs. A cell
whose dataset or checkpoint was not given says so and still shows the thesis's number.

``--scale smoke`` runs the same chain tiny: a 3D ResNet with one block per stage and 8 channels at 16x16, half
the clip length, one optimiser step, one epoch, a few videos per class (split files in ``OUT/smoke-splits``).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..config import Config, load_config
from ..engine.device import resolve_device
from ..engine.run import refused_changes, stored_run
from ..engine.train import pretrain
from ..eval.plots import new_figure
from ..eval.report import default_frame_reader, retrieval_figure
from ..build.encoder import Encoder, load_weights
from ..eval.run import COMMANDS, train_supervised, write_results
from .thesis import TABLE_NAMES, TABLES, Job, Pretrain, Table
from ..fileio import atomic_write_text, save_figure
from ..names import SCALES, percent

# Every config of a smoke run gets these on top of its preset and the table's overrides.
SMOKE = ("model.backbone=r3d_small", "model.width=8", "model.layers=[1,1,1,1]", "model.head_hidden=32",
         "data.size=16", "data.decode_size=20", "data.num_workers=0", "data.eval_clips=1", "optim.batch_size=4",
         "optim.warmup_epochs=0", "train.epochs=1", "train.max_steps_per_epoch=1", "train.log_every=1",
         "train.keep_every=0", "eval.cv_folds=2", "eval.linear_cs=[0.01,0.1]", "eval.finetune_epochs=1",
         "eval.finetune_warmup_epochs=0", "eval.batch_size=8")
SMOKE_VIDEOS = (3, 2)  # smoke scale: training and test videos kept per class
# Thesis section 4: linear evaluation sees the whole frame resized ("from 320x240 to ... 224x224"); Fig. 4
# retrieves among the test videos with the projection head's output.
EVAL_OVERRIDES = {"linear": ("eval.linear_input=resize",), "retrieve": ("eval.retrieval_protocol=thesis",),
                  "finetune": ()}
METRIC = {"linear": "top1", "finetune": "top1", "retrieve": "R@1"}  # the number a cell shows


# ----------------------------------------------------------------------------- running the jobs


@dataclass(frozen=True)
class DataSource:
    root: Path
    splits: Path | None


class Reproduction:
    """Runs jobs into ``out`` (resumably) for the datasets given; a job that needs something absent is skipped
    with the reason."""

    def __init__(self, out: str | Path, data: dict[str, DataSource], kinetics: str | None = None,
                 scale: str = "full", device: str | None = None, quiet: bool | None = None) -> None:
        if scale not in SCALES:
            raise ValueError(f"--scale '{scale}' is not one of {SCALES}")
        self.out, self.scale, self.kinetics, self.device_flag = Path(out), scale, kinetics, device
        self.quiet = scale == "smoke" if quiet is None else quiet
        self.data = {ds: self._source(ds, src) for ds, src in data.items() if src is not None}
        self._checkpoints: dict[str, str] = {}

    def _source(self, ds: str, src: DataSource) -> DataSource:
        if not src.root.is_dir():
            raise FileNotFoundError(f"--{ds} '{src.root}' is not a folder; give the folder of {ds.upper()}'s "
                                    "class folders")
        if src.splits is not None and not src.splits.is_dir():
            raise FileNotFoundError(f"--{ds}-splits '{src.splits}' is not a folder; give the official split-file "
                                    "folder (or leave it out to look next to the videos)")
        return smoke_splits(ds, src, self.out / "smoke-splits" / ds) if self.scale == "smoke" else src

    # -- configs and encoders
    def config(self, preset: str, overrides: tuple[str, ...], dataset: str, extra: tuple[str, ...] = ()) -> Config:
        src = self.data[dataset]
        flags = [f"data.dataset={dataset}", f"data.root={src.root}"]
        if src.splits is not None:
            flags.append(f"data.splits={src.splits}")
        if self.device_flag:
            flags.append(f"train.device={self.device_flag}")
        cfg = load_config(preset, [*overrides, *(SMOKE if self.scale == "smoke" else ()), *flags, *extra])
        if self.scale == "smoke":  # half the clip length (Random 8 / 16 -> 4 / 8): the chain, not the numbers
            cfg.data.clip_len = max(2, cfg.data.clip_len // 2)
        return cfg

    def missing(self, job: Job) -> str | None:
        """Why ``job`` cannot run here (a dataset or the Kinetics checkpoint not given), else None."""
        need = {job.dataset}
        if job.encoder.kind == "pretrain":
            need.add(load_config(job.encoder.run.preset, ["data.root=/"]).data.dataset)
        for ds in sorted(need):
            if ds not in self.data:
                return f"not run (no --{ds})"
        if job.encoder.kind == "kinetics" and not self.kinetics:
            return "not run (no --kinetics)"
        return None

    def pretrained(self, run: Pretrain) -> str:
        """The checkpoint of ``run``: trained now, continued, or (finished with these settings) reused as it is."""
        if run.name in self._checkpoints:
            return self._checkpoints[run.name]
        dataset = load_config(run.preset, ["data.root=/"]).data.dataset
        cfg = self.config(run.preset, run.overrides, dataset)
        folder = self.out / "runs" / run.name / "pretrain"
        stored = stored_run(folder)
        if (stored is not None and stored.final and stored.config.train.epochs == cfg.train.epochs
                and not refused_changes(stored.config, cfg)):
            path = str(stored.checkpoint)
        else:
            path = pretrain(cfg, folder, resume=True, quiet=self.quiet)["checkpoint"]
        self._checkpoints[run.name] = path
        return path

    def encoder(self, job: Job, cfg: Config, device: torch.device) -> Encoder:
        enc = job.encoder
        if enc.kind == "pretrain":
            return load_weights(self.pretrained(enc.run), cfg, device)
        if enc.kind == "random":
            return load_weights("random", cfg, device)
        if enc.kind == "supervised":  # its run folder is continued, or reused when finished (eval.finetune)
            return load_weights(train_supervised(cfg, device, self.out / "runs" / enc.name / "supervised"), cfg,
                                device)
        # kinetics: one of our checkpoints (its own architecture), else external weights (Hara et al.'s format or a
        # plain state dict) of the thesis's backbone; either way evaluated with the table's clip settings. The file
        # is read once, by the one resolver.
        arch = copy.deepcopy(cfg)
        arch.model.backbone, arch.model.weights = "hara_r3d_18", None
        loaded = load_weights(self.kinetics, arch, device)
        if loaded.kind == "checkpoint":
            for name in ("clip_len", "size", "decode_size", "stride"):
                setattr(loaded.cfg.data, name, getattr(cfg.data, name))
        return loaded

    # -- one job
    def run(self, job: Job) -> dict[str, Any]:
        """``job``'s results (``results.json`` of its folder), computed unless already there for these weights."""
        enc = job.encoder
        preset = enc.run.preset if enc.kind == "pretrain" else enc.preset
        overrides = enc.run.overrides if enc.kind == "pretrain" else enc.overrides
        cfg = self.config(preset, overrides, job.dataset, EVAL_OVERRIDES[job.eval])
        device = resolve_device(cfg.train.device)
        encoder = self.encoder(job, cfg, device)
        folder = self.out / "runs" / enc.name / f"{job.eval}-{job.dataset}"
        done = folder / "results.json"
        if done.is_file():
            res = json.loads(done.read_text())
            if res.get("weights") == encoder.fingerprint:
                return res
        if job.eval == "finetune":
            res = COMMANDS["finetune"](encoder, device, folder)
        elif job.eval == "retrieve":  # Fig. 4 shows 3 queries
            res = COMMANDS["retrieve"](encoder, device, folder, self.out / "cache", report_queries=3)
        else:  # (a smoke run skips the linear probe's confusion-matrix PNG: out_dir None)
            where = None if self.scale == "smoke" and job.eval == "linear" else folder
            res = COMMANDS[job.eval](encoder, device, where, self.out / "cache")
        res["weights"] = encoder.fingerprint
        write_results(folder, res)
        return res


def smoke_splits(ds: str, src: DataSource, out: Path, per_class: tuple[int, int] = SMOKE_VIDEOS) -> DataSource:
    """Split files keeping the first ``per_class`` (train, test) videos of each class that exist on disk, written
    to ``out`` (the official format, so the dataset code reads them like the real ones)."""
    root = src.root
    names = ("ucfTrainTestlist",) if ds == "ucf101" else ("testTrainMulti_7030_splits", "test_train_splits",
                                                             "splits")
    splits = src.splits or next((c for n in names for c in (root / n, root.parent / n) if c.is_dir()), None)
    if splits is None:
        raise FileNotFoundError(f"no split files next to --{ds} '{root}'; pass --{ds}-splits DIR")
    out.mkdir(parents=True, exist_ok=True)
    if ds == "ucf101":
        atomic_write_text(out / "classInd.txt", (splits / "classInd.txt").read_text())
        for name, n in (("trainlist01.txt", per_class[0]), ("testlist01.txt", per_class[1])):
            kept, count = [], {}
            for line in (splits / name).read_text().splitlines():
                rel = line.split()[0] if line.strip() else ""
                cls = rel.split("/")[0]
                if rel and (root / rel).is_file() and count.get(cls, 0) < n:
                    count[cls] = count.get(cls, 0) + 1
                    kept.append(line.strip())
            atomic_write_text(out / name, "".join(f"{k}\n" for k in kept))
    else:
        for path in sorted(splits.glob("*_test_split1.txt")):
            cls = path.name[: -len("_test_split1.txt")]
            count, lines = {"1": 0, "2": 0}, []
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) != 2:
                    continue
                keep = parts[1] in count and (root / cls / parts[0]).is_file() and \
                    count[parts[1]] < per_class[int(parts[1]) - 1]
                count[parts[1]] = count.get(parts[1], 0) + keep
                lines.append(f"{parts[0]} {parts[1] if keep else '0'}")
            atomic_write_text(out / path.name, "".join(f"{x}\n" for x in lines))
    return DataSource(root, out)


# ----------------------------------------------------------------------------- writing the table


def run_table(name: str, out: str | Path, rep: Reproduction) -> dict[str, Path]:
    """Run ``name``'s jobs (those that can run here) and write ``out/<name>.md`` and ``.csv`` (and ``.png`` for a
    figure). Returns the written paths."""
    if name not in TABLES:
        raise ValueError(f"unknown table '{name}'; choose one of {', '.join(TABLE_NAMES)}")
    table, out = TABLES[name], Path(out)
    jobs = list(dict.fromkeys(c.job for _, cells in table.rows for c in cells if c is not None and c.job))
    results: dict[Job, dict[str, Any] | str] = {}
    for job in tqdm(jobs, desc=f"reproduce {name}", unit="run", disable=None):
        results[job] = rep.missing(job) or rep.run(job)
    ours: list[list[float | str | None]] = []  # per cell: a fraction, a reason it did not run, or None
    for _, cells in table.rows:
        row = []
        for i, c in enumerate(cells):
            if c is None or c.job is None:
                row.append(None if c is None else "published")
                continue
            r = results[c.job]
            metric = METRIC[c.job.eval] if c.job.eval != "retrieve" else table.value_cols[i].split()[-1]
            row.append(r if isinstance(r, str) else float(r[metric]))  # a fraction, as results.json has it
        ours.append(row)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / f"{name}.md", "csv": out / f"{name}.csv"}
    atomic_write_text(paths["md"], _markdown(table, ours, rep))
    _csv(paths["csv"], table, ours)
    if table.figure == "bars":
        paths["png"] = _bars(out / f"{name}.png", table, ours)
    elif table.figure == "retrieval":
        paths["png"] = _retrieval_png(out / f"{name}.png", table, results)
    return paths


def _ours_text(v: float | str | None) -> str:
    return "" if v is None else v if isinstance(v, str) else percent(v)


def _markdown(table: Table, ours: list[list[Any]], rep: Reproduction) -> str:
    head = [*table.label_cols, *table.value_cols]
    lines = [f"# {table.title}", "",
             f"Each cell: **ours** / thesis. Scale: {rep.scale}. Preset: `{table.preset}` (see CONFIG.md).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    sources = []
    for (labels, cells), row in zip(table.rows, ours):
        texts = []
        for c, v in zip(cells, row):
            if c is None:
                texts.append("")
                continue
            mark = ""
            if c.source:
                sources.append(c.source)
                mark = f" ({c.source})"
            thesis = None if c.thesis is None else c.thesis / 100  # thesis.py holds percent, as printed
            texts.append(f"{_ours_text(v) if v != 'published' else '-'} / {percent(thesis)}{mark}")
        lines.append("| " + " | ".join([*labels, *texts]) + " |")
    lines += ["", "Ours: " + ("clip-level top-1 of the linear probe on the whole frame resized (thesis sec. 4)"
                              if table.name not in ("table2", "fig4") else
                              "clip-level top-1 after fine-tuning" if table.name == "table2" else
                              "R@k of test videos querying the other test videos (thesis retrieval protocol)")
              + ". Thesis: as printed in thesis.txt; '-' where it states no number."]
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines) + "\n"


def _csv(path: Path, table: Table, ours: list[list[Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*table.label_cols, *(f"{c} {who}" for c in table.value_cols for who in ("ours", "thesis"))])
        for (labels, cells), row in zip(table.rows, ours):
            vals = []
            for c, v in zip(cells, row):
                vals += ["" if v is None else v if isinstance(v, str) else f"{100 * v:.2f}",
                         "" if c is None or c.thesis is None else f"{c.thesis:.1f}"]
            w.writerow([*labels, *vals])


def _bars(path: Path, table: Table, ours: list[list[Any]]) -> Path:
    groups = [" ".join(labels) for labels, _ in table.rows]
    fig, axes = new_figure((3.2 * len(table.value_cols) + 1, 3.6), 1, len(table.value_cols), dpi=110, squeeze=False)
    for j, col in enumerate(table.value_cols):
        ax = axes[0][j]
        x = range(len(groups))
        mine = [100 * v if isinstance(v, float) else math.nan for v in (row[j] for row in ours)]
        theirs = [c.thesis if c is not None and c.thesis is not None else math.nan for c in (cells[j] for _, cells
                                                                                            in table.rows)]
        ax.bar([i - 0.2 for i in x], mine, 0.4, label="ours")
        ax.bar([i + 0.2 for i in x], theirs, 0.4, label="thesis")
        ax.set_xticks(list(x))
        ax.set_xticklabels(groups, rotation=35, ha="right", fontsize=7)
        ax.set_title(col, fontsize=9)
        ax.set_ylabel("top-1 (%)")
        if j == 0:
            ax.legend(fontsize=7)
    fig.suptitle(table.title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def _retrieval_png(path: Path, table: Table, results: dict[Job, Any]) -> Path:
    queries = []
    for (labels, cells) in table.rows:
        r = results[cells[0].job]
        if isinstance(r, str):
            continue
        for q in r.get("queries", [])[:3]:
            queries.append({**q, "label_name": f"{q['label_name']} [{labels[0]}]"})
    if not queries:  # nothing ran: an empty figure that says so
        fig, _ = new_figure((4, 1), None)
        fig.text(0.5, 0.5, "not run", ha="center")
        save_figure(fig, path)
        return path
    return retrieval_figure(path, queries, default_frame_reader(64), title=table.title)


def reproduce(table: str, out: str | Path, ucf101: str | Path, ucf101_splits: str | Path | None = None,
              hmdb51: str | Path | None = None, hmdb51_splits: str | Path | None = None,
              kinetics: str | Path | None = None, scale: str = "full", device: str | None = None,
              quiet: bool | None = None) -> dict[str, Path]:
    """The library entry of ``videocontrast reproduce`` (see the module docstring)."""
    if table not in TABLES:
        raise ValueError(f"unknown table '{table}'; choose one of {', '.join(TABLE_NAMES)}")
    if kinetics is not None and not Path(kinetics).is_file():
        raise FileNotFoundError(f"--kinetics '{kinetics}' is not a file; give a Kinetics checkpoint (Hara et al.'s "
                                "format or one of ours)")
    data = {"ucf101": DataSource(Path(ucf101), Path(ucf101_splits) if ucf101_splits else None)}
    if hmdb51 is not None:
        data["hmdb51"] = DataSource(Path(hmdb51), Path(hmdb51_splits) if hmdb51_splits else None)
    rep = Reproduction(out, data, str(kinetics) if kinetics else None, scale, device, quiet)
    os.makedirs(out, exist_ok=True)
    return run_table(table, out, rep)
