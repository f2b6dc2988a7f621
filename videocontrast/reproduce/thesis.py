"""The thesis's results as data: for each table and figure, its layout, what runs behind each cell, and the
number the thesis prints there (``videocontrast reproduce`` runs and writes them; see :mod:`videocontrast.reproduce.run`).

A table is a :class:`Table` of :class:`Cell` s; a cell names one evaluation :class:`Job` (an encoder, an
evaluation, a dataset) and the thesis's number, transcribed from ``thesis.txt`` (Tables 1-5; the figures give no
numbers in the text, so a figure's cell holds the thesis number only where a table or the text states the same
experiment's value, with the source named). An encoder (:class:`Enc`) is a pretraining run (:class:`Pretrain`: a
preset plus overrides), ``random`` init, the ``supervised`` baseline (cross-entropy on the evaluation dataset's
training labels), or the Kinetics checkpoint given with ``--kinetics``. Runs are named by what they are, so tables
that need the same run share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
