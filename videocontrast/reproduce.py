"""``videocontrast reproduce``: the runs behind each results table and figure of the thesis, and the table itself
with two numbers per cell, ours and the thesis's.

A table is a :class:`Table` of :class:`Cell` s; a cell names one evaluation :class:`Job` (an encoder, an
evaluation, a dataset) and the thesis's number, transcribed from ``thesis.txt`` (Tables 1-5; the figures give no
numbers in the text, so a figure's cell holds the thesis number only where a table or the text states the same
experiment's value, with the source named). An encoder is a pretraining run (:class:`Pretrain`: a preset plus
overrides), ``random`` init, the ``supervised`` baseline (cross-entropy on the evaluation dataset's training
labels), or the Kinetics checkpoint given with ``--kinetics``.

Everything runs in ``OUT/runs/<encoder>/``: pretraining in ``pretrain/`` (continued when interrupted, skipped
when finished), each evaluation in ``<eval>-<dataset>/results.json`` (reused when it was computed from the same
weights). Tables share encoders by name, so ``table4`` after ``table3`` reuses its spatial-only runs. A cell
whose dataset or checkpoint was not given says so and still shows the thesis's number.

``--scale smoke`` runs the same chain tiny: a 3D ResNet with one block per stage and 8 channels at 16x16, one
optimiser step per epoch, one epoch, a few videos per class (split files written to ``OUT/smoke-splits``).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .config import Config, load_config
from .engine.checkpoint import NotACheckpointError, load_checkpoint
from .engine.device import resolve_device
from .engine.run import refused_changes, stored_run
from .engine.train import pretrain
from .eval.features import weights_fingerprint
from .eval.report import default_frame_reader, retrieval_figure
from .eval.run import COMMANDS, Encoder, load_weights, train_supervised, write_results

SCALES = ("full", "smoke")
REPRO_DATASETS = ("ucf101", "hmdb51")
SHORT = {"ucf101": "UCF", "hmdb51": "HMDB"}
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


# ----------------------------------------------------------------------------- what a table is


@dataclass(frozen=True)
class Pretrain:
    """A pretraining run: ``preset`` + ``overrides`` (its dataset is the preset's ``data.dataset``)."""

    name: str
    preset: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Enc:
    """What a cell evaluates: ``kind`` ``pretrain`` (``run``), ``random``, ``supervised`` or ``kinetics``; the
    last three take their architecture and clip settings from ``preset`` + ``overrides``."""

    kind: str
    name: str
    run: Pretrain | None = None
    preset: str = "ucf101-simclr"
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Job:
    encoder: Enc
    eval: str  # linear | finetune | retrieve
    dataset: str  # the evaluation dataset: ucf101 | hmdb51


@dataclass(frozen=True)
class Cell:
    job: Job | None  # None: a published number of another method (the thesis's only)
    thesis: float | None  # percent; None: the thesis states no number for it
    source: str = ""  # where the thesis number comes from, when not this table


@dataclass
class Table:
    name: str
    title: str
    preset: str  # the preset its runs start from (CONFIG.md)
    label_cols: tuple[str, ...]
    value_cols: tuple[str, ...]
    rows: list[tuple[tuple[str, ...], tuple[Cell | None, ...]]] = field(default_factory=list)  # None: no such cell
    figure: str | None = None  # bars | retrieval
    note: str = ""


def _ablation(ds: str, clip_len: int = 16, spatial: str = "chunk", temporal: str = "none", shift: int = 0,
              spatial_aug: bool = True) -> Pretrain:
    """A 56x56 ablation run of section 5 (preset ``<ds>-ablation-56``)."""
    ovr = [f"data.clip_len={clip_len}", f"aug.spatial_mode={spatial}", f"aug.temporal={temporal}"]
    if temporal == "shift":
        ovr.append(f"aug.max_shift={shift}")
    if not spatial_aug:  # Fig. 6 "Only Shift": no random spatial transformation at all
        ovr += ["aug.crop=false", "aug.flip=false", "aug.jitter=false", "aug.gray=false", "aug.blur=false"]
    name = f"{ds}-56-r{clip_len}-{spatial}-{temporal}{shift if temporal == 'shift' else ''}"
    return Pretrain(name + ("" if spatial_aug else "-nospatial"), f"{ds}-ablation-56", tuple(ovr))


def _baselines(ds: str, clip_len: int) -> dict[str, Enc]:
    arch = (f"data.clip_len={clip_len}",)
    return {"supervised": Enc("supervised", f"supervised-{ds}-56-r{clip_len}", preset=f"{ds}-ablation-56",
                              overrides=arch),
            "random": Enc("random", f"random-56-r{clip_len}", preset=f"{ds}-ablation-56", overrides=arch),
            "kinetics": Enc("kinetics", f"kinetics-56-r{clip_len}", preset=f"{ds}-ablation-56", overrides=arch)}


def _pre(run: Pretrain) -> Enc:
    return Enc("pretrain", run.name, run=run)


def _lin(enc: Enc, ds: str, thesis: float | None, source: str = "") -> Cell:
    return Cell(Job(enc, "linear", ds), thesis, source)


def _moco56(ds: str, k: int) -> Pretrain:
    return Pretrain(f"{ds}-56-moco-v1-k{k}", f"{ds}-moco-v1",
                    ("data.size=56", "data.decode_size=64", "optim.batch_size=256", "train.epochs=100",
                     f"method.queue_size={k}"))


def build_tables() -> dict[str, Table]:
    """Every table and figure, with the thesis's numbers (percent) as printed in thesis.txt."""
    t: dict[str, Table] = {}
    ucf, hmdb = "ucf101", "hmdb51"

    # Table 1: linear evaluation (section 4.1); SimCLR 100 epochs, MoCo 200, 224x224.
    tab = Table("table1", "Table 1: linear evaluation (top-1)", "ucf101-simclr",
                ("Pre-training method", "Pre-training on"), ("UCF Acc@1", "HMDB Acc@1"))
    for label, preset, on, thesis in (
            ("videoSimCLR Temp. Shift", "ucf101-simclr", "UCF", (44.4, 21.8)),
            ("videoSimCLR Temp. Shift", "hmdb51-simclr", "HMDB", (35.9, 20.1)),
            ("videoMOCO V1 K=8192", "ucf101-moco-v1", "UCF", (40.3, 19.7)),
            ("videoMOCO V2 K=8192", "ucf101-moco-v2", "UCF", (41.4, 20.5)),
            ("videoMOCO V1 K=1024", "hmdb51-moco-v1", "HMDB", (32.6, 16.7)),
            ("videoMOCO V2 K=1024", "hmdb51-moco-v2", "HMDB", (34.2, 18.4))):
        enc = _pre(Pretrain(preset, preset))
        tab.rows.append(((label, on), (_lin(enc, ucf, thesis[0]), _lin(enc, hmdb, thesis[1]))))
    for label, kind, thesis in (("Random init", "random", (20.6, 10.2)), ("Supervised", "supervised", (37.4, 14.7))):
        encs = {ds: Enc(kind, f"{kind}-{ds}-224-r16" if kind == "supervised" else "random-224-r16",
                        preset=f"{ds}-simclr") for ds in (ucf, hmdb)}
        tab.rows.append(((label, "-"), (_lin(encs[ucf], ucf, thesis[0]), _lin(encs[hmdb], hmdb, thesis[1]))))
    t[tab.name] = tab

    # Table 2: fine-tuning the whole network (section 4.2): 150 epochs, backbone lr = head lr / 10.
    tab = Table("table2", "Table 2: fine-tuning the whole network (top-1)", "ucf101-simclr",
                ("Method", "Architecture", "Extra data"), ("UCF Acc", "HMDB Acc"),
                note="Rows other than videoSimCLR, Random init and Kinetics are published results the thesis "
                     "quotes; they are not rerun.")
    for label, arch, extra, thesis in (
            ("3D RotNet [24]", "3D Resnet18", "yes", (62.9, None)),
            ("3D Cubic Puzzles [28]", "3D Resnet18", "yes", (65.8, 33.7)),
            ("DPC [17]", "3D Resnet18", "yes", (68.2, 34.5)),
            ("Shuffle & Learn [38]", "CaffeNet", "no", (50.2, 18.1)),
            ("OPN [34]", "VGG M2048", "no", (51.9, 23.8)),
            ("VideoGAN [56]", "C3D", "no", (52.1, None)),
            ("AoT [59]", "AlexNet", "no", (55.3, None))):
        tab.rows.append(((label, arch, extra), tuple(Cell(None, v) for v in thesis)))
    simclr = _pre(Pretrain("ucf101-simclr", "ucf101-simclr"))
    tab.rows.append((("videoSimCLR (ours)", "3D Resnet18", "no"),
                     (Cell(Job(simclr, "finetune", ucf), 56.7), Cell(Job(simclr, "finetune", hmdb), 28.6))))
    for label, extra, thesis in (("DPC [17]", "no", (60.6, None)), ("TCE [30]", "no", (68.2, 31.7))):
        tab.rows.append(((label, "2D Resnet50" if label.startswith("TCE") else "3D Resnet18", extra),
                         tuple(Cell(None, v) for v in thesis)))
    for label, kind, thesis in (("Random init [26]", "random", (38.6, 16.1)), ("Kinetics [19]", "kinetics", (84.4, 56.4))):
        enc = Enc(kind, f"{kind}-224-r16")
        tab.rows.append(((label, "3D Resnet18", "-"),
                         (Cell(Job(enc, "finetune", ucf), thesis[0]), Cell(Job(enc, "finetune", hmdb), thesis[1]))))
    t[tab.name] = tab

    # Table 3: UCF101, 56x56, Random 8 / 16, per-frame vs per-clip (chunk) spatial transformation.
    tab = Table("table3", "Table 3: spatial transformation per frame or per clip, UCF101, 56x56 (top-1)",
                "ucf101-ablation-56", ("Sampling Method", "Pretraining Method"),
                ("UCF101 Acc@1 Frame", "UCF101 Acc@1 Chunk"),
                note="Supervised and Kinetics do not depend on the spatial mode: one run fills both columns.")
    thesis3 = {8: {"supervised": (28.8, 28.8), "simclr": (22.6, 29.5), "kinetics": (29.4, 35.1)},
               16: {"supervised": (29.4, 29.4), "simclr": (22.1, 32.0), "kinetics": (43.3, 43.3)}}
    for m in (8, 16):
        base = _baselines(ucf, m)
        th = thesis3[m]
        tab.rows.append(((f"Random {m}", "Supervised UCF"),
                         tuple(_lin(base["supervised"], ucf, v) for v in th["supervised"])))
        tab.rows.append(((f"Random {m}", "videoSimCLR"),
                         tuple(_lin(_pre(_ablation(ucf, m, mode)), ucf, v)
                               for mode, v in zip(("frame", "chunk"), th["simclr"]))))
        tab.rows.append(((f"Random {m}", "Kinetics 700"), tuple(_lin(base["kinetics"], ucf, v) for v in th["kinetics"])))
    t[tab.name] = tab

    # Table 4: temporal shift before the spatial transformation, 56x56, Random 16.
    tab = Table("table4", "Table 4: random temporal shift before the spatial transformation, 56x56 (top-1)",
                "ucf101-ablation-56", ("Temporal Shift Type",), ("UCF101 Acc@1", "HMDB51 Acc@1"))
    for label, s, thesis in (("None", 0, (32.0, 13.7)), ("Random [-4, 4]", 4, (31.6, 14.7)),
                             ("Random [-8, 8]", 8, (32.8, 13.5)), ("Random [-16, 16]", 16, (31.3, 11.8))):
        runs = {ds: _ablation(ds, 16, "chunk", "shift" if s else "none", s) for ds in (ucf, hmdb)}
        tab.rows.append(((label,), (_lin(_pre(runs[ucf]), ucf, thesis[0]), _lin(_pre(runs[hmdb]), hmdb, thesis[1]))))
    t[tab.name] = tab

    # Table 5: videoMoCo v1 queue size K, 56x56 (HMDB51 bottom half of each cell, UCF101 top half).
    tab = Table("table5", "Table 5: videoMoCo v1 queue size K, 56x56 (top-1)", "ucf101-moco-v1",
                ("Queue size K",), ("HMDB51 Acc@1", "UCF101 Acc@1"),
                note="K in {512, 1024, 2048} for HMDB51 and {1024, 4096, 8192} for UCF101; a blank cell is a K "
                     "the thesis did not run on that dataset.")
    hmdb5, ucf5 = {512: 10.1, 1024: 12.1, 2048: 10.9}, {1024: 24.9, 4096: 25.4, 8192: 26.1}
    for k in (512, 1024, 2048, 4096, 8192):
        tab.rows.append(((str(k),), (_lin(_pre(_moco56(hmdb, k)), hmdb, hmdb5[k]) if k in hmdb5 else None,
                                     _lin(_pre(_moco56(ucf, k)), ucf, ucf5[k]) if k in ucf5 else None)))
    t[tab.name] = tab

    # Fig. 4: retrieval among the UCF101 test videos (projection head output, cosine, 3 neighbours).
    tab = Table("fig4", "Fig. 4: nearest-neighbour retrieval on the UCF101 test set (test queries test)",
                "ucf101-simclr", ("Embeddings",), ("UCF101 R@1", "UCF101 R@5"), figure="retrieval",
                note="Fig. 4 is qualitative (3 queries, 3 neighbours each): the thesis gives no R@k. The PNG shows "
                     "the same 3 test queries for each encoder with their 3 nearest other test videos.")
    for label, enc in (("videoSimCLR (UCF101)", simclr), ("Kinetics", Enc("kinetics", "kinetics-224-r16"))):
        job = Job(enc, "retrieve", ucf)
        tab.rows.append(((label,), (Cell(job, None), Cell(job, None))))
    t[tab.name] = tab

    # Fig. 5: supervised vs videoSimCLR (spatial only, per clip) vs Kinetics, Random 8/16, 56x56, both datasets.
    tab = Table("fig5", "Fig. 5: three pre-training methods, Random 8 / 16, 56x56 (top-1)", "ucf101-ablation-56",
                ("Pre-training",), ("HMDB51 Random 8", "HMDB51 Random 16", "UCF101 Random 8", "UCF101 Random 16"),
                figure="bars",
                note="Fig. 5 is a bar chart without printed values: the UCF101 thesis numbers are Table 3's chunk "
                     "column (the same runs), HMDB51 videoSimCLR Random 16 is Table 4's None row and supervised "
                     "HMDB51 the 12% of Table 5's caption; the rest are not stated in the text.")
    th5 = {"Supervised": {(ucf, 8): 28.8, (ucf, 16): 29.4, (hmdb, 16): (12.0, "Table 5 caption")},
           "videoSimCLR": {(ucf, 8): 29.5, (ucf, 16): 32.0, (hmdb, 16): (13.7, "Table 4")},
           "Kinetics": {(ucf, 8): 35.1, (ucf, 16): 43.3}}
    for label in ("Supervised", "videoSimCLR", "Kinetics"):
        cells = []
        for ds in (hmdb, ucf):
            for m in (8, 16):
                enc = (_pre(_ablation(ds, m)) if label == "videoSimCLR" else
                       _baselines(ds, m)["supervised" if label == "Supervised" else "kinetics"])
                v = th5[label].get((ds, m))
                v, src = v if isinstance(v, tuple) else (v, "Table 3" if v is not None else "")
                cells.append(_lin(enc, ds, v, src))
        tab.rows.append(((label,), tuple(cells)))
    t[tab.name] = tab

    # Fig. 6: temporal transformations before the spatial one (Random 16, 56x56; shift s = 8 UCF101, 4 HMDB51).
    tab = Table("fig6", "Fig. 6: temporal transformations before the spatial transformation, 56x56 (top-1)",
                "ucf101-ablation-56", ("Pre-training",), ("UCF101 Acc@1", "HMDB51 Acc@1"), figure="bars",
                note="Fig. 6 is a bar chart without printed values: Spatial only and Shift are Table 4's None and "
                     "best-shift rows, Supervised is Table 3 (UCF101) and Table 5's caption (HMDB51); the rest are "
                     "not stated in the text. Shift uses s = 8 on UCF101 and s = 4 on HMDB51 (section 5.4).")
    best = {ucf: 8, hmdb: 4}
    none = (None, "")
    rows6 = (("Spatial only", lambda ds: _pre(_ablation(ds)), ((32.0, "Table 4"), (13.7, "Table 4"))),
             ("Shift", lambda ds: _pre(_ablation(ds, temporal="shift", shift=best[ds])),
              ((32.8, "Table 4"), (14.7, "Table 4"))),
             ("Drop", lambda ds: _pre(_ablation(ds, temporal="drop")), (none, none)),
             ("Reverse", lambda ds: _pre(_ablation(ds, temporal="reverse")), (none, none)),
             ("Shuffle", lambda ds: _pre(_ablation(ds, temporal="shuffle")), (none, none)),
             ("Only Shift (no spatial)", lambda ds: _pre(_ablation(ds, temporal="shift", shift=best[ds],
                                                                     spatial_aug=False)), (none, none)),
             ("Random Init", lambda ds: _baselines(ds, 16)["random"], (none, none)),
             ("Supervised", lambda ds: _baselines(ds, 16)["supervised"],
              ((29.4, "Table 3"), (12.0, "Table 5 caption"))))
    for label, make, thesis in rows6:
        tab.rows.append(((label,), tuple(_lin(make(ds), ds, v, src) for ds, (v, src) in zip((ucf, hmdb), thesis))))
    t[tab.name] = tab
    return t


TABLES = build_tables()
TABLE_NAMES = tuple(TABLES)


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
        # plain state dict) of the thesis's backbone; either way evaluated with the table's clip settings.
        try:
            load_checkpoint(self.kinetics)
        except NotACheckpointError:
            arch = copy.deepcopy(cfg)
            arch.model.backbone, arch.model.weights = "hara_r3d_18", None
            return load_weights(self.kinetics, arch, device)
        loaded = load_weights(self.kinetics, cfg, device)
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
        (out / "classInd.txt").write_text((splits / "classInd.txt").read_text())
        for name, n in (("trainlist01.txt", per_class[0]), ("testlist01.txt", per_class[1])):
            kept, count = [], {}
            for line in (splits / name).read_text().splitlines():
                rel = line.split()[0] if line.strip() else ""
                cls = rel.split("/")[0]
                if rel and (root / rel).is_file() and count.get(cls, 0) < n:
                    count[cls] = count.get(cls, 0) + 1
                    kept.append(line.strip())
            (out / name).write_text("".join(f"{k}\n" for k in kept))
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
            (out / path.name).write_text("".join(f"{x}\n" for x in lines))
    return DataSource(root, out)


# ----------------------------------------------------------------------------- writing the table


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}%"


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
    ours: list[list[float | str | None]] = []
    for _, cells in table.rows:
        row = []
        for i, c in enumerate(cells):
            if c is None or c.job is None:
                row.append(None if c is None else "published")
                continue
            r = results[c.job]
            metric = METRIC[c.job.eval] if c.job.eval != "retrieve" else table.value_cols[i].split()[-1]
            row.append(r if isinstance(r, str) else 100 * float(r[metric]))
        ours.append(row)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / f"{name}.md", "csv": out / f"{name}.csv"}
    paths["md"].write_text(_markdown(table, ours, rep))
    _csv(paths["csv"], table, ours)
    if table.figure == "bars":
        paths["png"] = _bars(out / f"{name}.png", table, ours)
    elif table.figure == "retrieval":
        paths["png"] = _retrieval_png(out / f"{name}.png", table, results)
    return paths


def _ours_text(v: float | str | None) -> str:
    return "" if v is None else v if isinstance(v, str) else f"{v:.1f}%"


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
            texts.append(f"{_ours_text(v) if v != 'published' else '-'} / {_pct(c.thesis)}{mark}")
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
                vals += ["" if v is None else v if isinstance(v, str) else f"{v:.2f}",
                         "" if c is None or c.thesis is None else f"{c.thesis:.1f}"]
            w.writerow([*labels, *vals])


def _bars(path: Path, table: Table, ours: list[list[Any]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [" ".join(labels) for labels, _ in table.rows]
    fig, axes = plt.subplots(1, len(table.value_cols), figsize=(3.2 * len(table.value_cols) + 1, 3.6), dpi=110,
                             squeeze=False)
    for j, col in enumerate(table.value_cols):
        ax = axes[0][j]
        x = range(len(groups))
        mine = [v if isinstance(v, float) else math.nan for v in (row[j] for row in ours)]
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
    fig.savefig(path)
    plt.close(fig)
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
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(4, 1))
        fig.text(0.5, 0.5, "not run", ha="center")
        fig.savefig(path)
        plt.close(fig)
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
