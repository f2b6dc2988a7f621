"""``videocontrast demo``: the whole system end to end in one command.

Generate (or read) a dataset, pretrain videoSimCLR, then evaluate side by side, with the same linear probe, kNN and
retrieval: the pretrained encoder; the same architecture at random initialisation on the same input (and on RGB
when the demo's input is not RGB); and the same backbone trained supervised from scratch (cross-entropy on the
training labels, which pretraining never saw) for the same wall-clock budget as pretraining. It writes
``OUT/results.json`` plus ``OUT/report.html`` and says plainly how pretraining did against the strongest baseline.

A demo folder holds one demo: rerunning the same command reuses (or continues) its pretraining and says so, and
keeps the first run's timings; a demo with other settings is refused (``--fresh`` starts over in the folder, or
choose another ``--out``). ``--fresh`` removes only the outputs the folder's ``demo.json`` records as written by a
demo, and refuses a folder holding a demo output's name that no demo recorded (someone else's ``cache/`` or
``results.json``), before any work.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..build.components import (backbone_from_config, cache_frames, dataset_root, describe_augment, eval_loader, finetune_aug,
                    labeled_dataset)
from ..config import MAX_EPOCHS, Config, ConfigError
from ..data.datasets import VideoDataset
from ..data.subsets import SubsetSpec, Subsets, plan_subsets, restrict
from .report import (embedding_plot, encoder_rows, label_efficiency_plot, label_efficiency_rows, loss_curve,
                          write_report)
from ..engine.device import resolve_device
from ..engine.run import RunFolderError, config_changes, refused_changes, run_lock, stored_run
from ..engine.train import pretrain
from ..fileio import atomic_write_text
from ..names import input_frames
from ..eval.finetune import finetune
from ..eval.features import same_clips
from ..eval.metrics import paired_bootstrap_interval
from ..eval.run import (Encoder, class_names, features, knn_monitor, load_weights, run_knn, run_linear, run_retrieve,
                       scored_features)
from .verdict import BASELINES, best_baseline, margins, verdict

# What a demo writes into its folder. The names it created are recorded in MANIFEST when it starts, and `--fresh`
# removes those and nothing else: a folder whose outputs no demo recorded is refused, never emptied.
DEMO_OUTPUTS = ("pretrain", "pretrained", *BASELINES, "cache", "results.json", "report.html", "loss.png",
                "embeddings.png", "label_efficiency", "label_efficiency.png", "val")
MANIFEST = "demo.json"
SUMMARY_KEYS = ("linear_top1", "linear_top5", "linear_video_top1", "knn_top1", "knn_video_top1",
                "R@1", "R@5", "R@10")
RESUME_HINT = "re-run the same command to continue"
# Label efficiency: every encoder with this many labelled training videos per class (those every class has), the
# subsets nested and the same for every encoder (data.subsets.label_subset, seeded by train.seed), plus all labels.
LABEL_COUNTS = (1, 5, 10)
LABEL_DIR = "label_efficiency"  # OUT/label_efficiency/<N>_per_class/: split files, probes, supervised baseline
VAL_DIR = "val"  # OUT/val/: the validation split of `demo --val` (val_split.txt, labelled_split.txt, subsets.json)
# The supervised baseline of a label subset plans as many optimisation steps as the all-labels baseline took (and at
# least SUBSET_MIN_EPOCHS passes over its videos): measured on `demo --quick`, that fits each subset (final training
# loss 0.03, 0.03, 0.12 at 1, 5, 10 per class, like the all-labels run's 0.14), while the planning by wall-clock time
# of the all-labels run, from a first 1-step epoch's inflated time, stopped them at 30-70 steps unfitted (loss
# 0.6-1.5) and scored them 20+ points lower at 5 and 10 per class. Their time limits together are this share of
# pretraining's wall-clock time (the all-labels baseline's budget), split by their batch size (a step's cost), each
# at least SUBSET_LIMIT_FLOOR_S. On `demo --quick` (340 all-labels steps) a share of 1.0 let them run 159/214/174
# steps (loss 0.013/0.006/0.10, +85 s); 0.5 runs 153/126/116 (loss 0.001/0.015/0.24, +50 s; supervised top-1 at 10
# per class 53% vs 59%, within the 48 test videos' noise) and keeps `demo --quick` near its budget.
SUBSET_BUDGET_SHARE = 0.5
SUBSET_MIN_EPOCHS = 30
SUBSET_LIMIT_FLOOR_S = 10.0
SUBSET_SAVE_STEPS = 50  # a subset's run of 1-step epochs writes its checkpoint about every this many steps


def _score(res: dict, key: str) -> Any:
    """``res[key]``, or its validation name ``val_<key>`` (eval.run names scores on a validation split so)."""
    return res[key] if key in res else res.get(f"val_{key}")


def _summary(linear: dict, knn: dict, retr: dict) -> dict[str, float]:
    """The demo's scores of one encoder (on the test split, or on the validation split with ``demo --val``:
    ``results.json``'s ``evaluated_on`` says which)."""
    return {"linear_top1": _score(linear, "top1"), "linear_top5": _score(linear, "top5"),
            "linear_video_top1": _score(linear, "video_top1"), "knn_top1": _score(knn, "top1"),
            "knn_video_top1": _score(knn, "video_top1"), "R@1": _score(retr, "R@1"), "R@5": _score(retr, "R@5"),
            "R@10": _score(retr, "R@10")}


# `demo --quick`'s pretraining time limit: the all-labels supervised baseline gets as long, the label subsets'
# baselines half of it together, and the evaluations of four encoders the rest of its 3-minute budget. At 90 s it
# took 208 s on the 2 cores.
QUICK_PRETRAIN_S = 60.0


def quick_config(cfg: Config) -> Config:
    """The ``--quick`` variant: fewer synthetic clips and epochs, at most :data:`QUICK_PRETRAIN_S` of pretraining
    (and so of the supervised baseline's training)."""
    cfg.data.synthetic_videos_per_class = min(cfg.data.synthetic_videos_per_class, 24)
    cfg.train.epochs = min(cfg.train.epochs, 60)
    cfg.train.time_limit_s = cfg.train.time_limit_s or QUICK_PRETRAIN_S
    cfg.optim.batch_size = min(cfg.optim.batch_size, 32)
    cfg.eval.cv_folds = min(cfg.eval.cv_folds, 3)
    return cfg


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


def run_demo(cfg: Config, out: Path, quick: bool = False, quiet: bool = False, fresh: bool = False,
             command: str | None = None) -> dict[str, Any]:
    """The demo into ``out``; ``fresh`` first removes a previous demo there.

    ``command`` is the command line that reruns this demo (without ``--fresh``): printed and stored when the time
    limit cut pretraining, since running it again continues the pretraining.

    Raises:
        ConfigError: ``out`` holds a demo run with other settings (and ``fresh`` is False).
        RunFolderError: ``out`` is a pretraining run folder, in use, not writable or full; with ``fresh``, it holds
            outputs no demo recorded (:func:`check_clearable`).
    """
    if quick:
        cfg = quick_config(cfg)
    out = Path(out)
    if (out / "checkpoints" / "last.pt").exists():
        raise RunFolderError(f"'{out}' holds a pretrain run ({out / 'checkpoints' / 'last.pt'}), not a demo; "
                             "choose another --out")
    with run_lock(out):
        if fresh:
            check_clearable(out)  # before any work: nothing a demo did not write is removed
        previous = None if fresh else stored_run(out / "pretrain")
        if previous is not None:
            # eval.* may change on a resume of pretraining, but eval.finetune_augment is what the supervised
            # baseline in this folder trained with
            refused = [*refused_changes(previous.config, cfg),
                       *(c for c in config_changes(previous.config, cfg) if c.field == "eval.finetune_augment")]
            if refused:
                raise ConfigError(f"'{out}' holds a demo run with different settings "
                                  f"({'; '.join(map(str, refused))}); rerun with --fresh to start over or choose "
                                  "another --out")
        t0 = time.perf_counter()
        root = dataset_root(cfg)  # generates the synthetic set once
        # fail before pretraining (and before --fresh removes anything); `--val` never reads the test split
        for subset in ("train",) if cfg.data.val_fraction else ("train", "test"):
            eval_loader(cfg, subset)
        data_s = time.perf_counter() - t0
        if fresh:
            removed = clear_demo(out)
            if removed and not quiet:
                print(f"--fresh: removed the previous demo in {out} ({', '.join(removed)})", flush=True)
        record_outputs(out)
        previous_results = None if fresh else _read_results(out)
        if not fresh and previous is not None and previous.checkpoint is not None and not quiet:
            where, done = out / "pretrain", previous.epochs_done
            print(f"reusing the finished pretraining run in {where} ({done} epochs)" if done >= cfg.train.epochs
                  else f"continuing the pretraining run in {where} from epoch {done} of {cfg.train.epochs}",
                  flush=True)
        return _run_demo(cfg, out, quiet, root, t0, data_s, previous_results,
                         command or "the same `videocontrast demo` command (without --fresh)")




def _read_results(out: Path) -> dict[str, Any] | None:
    """The previous run's ``results.json`` in ``out`` (None when absent or unreadable)."""
    try:
        res = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return None
    return res if isinstance(res, dict) else None


def rgb_config(cfg: Config) -> Config:
    """``cfg`` on RGB input with as many frames as the network sees in ``cfg`` (residual and ``both`` clips of T
    frames are T - 1 frames)."""
    rgb = copy.deepcopy(cfg)
    rgb.data.clip_len = input_frames(cfg.data.input, cfg.data.clip_len)
    rgb.data.input = "rgb"
    return rgb


def _history_seconds(history: list[dict[str, Any]]) -> float:
    return float(sum(h.get("time_s", 0.0) for h in history))


def train_supervised_baseline(cfg: Config, device: torch.device, run_dir: Path, budget_s: float,
                              quiet: bool = False, train_set: Callable[[], VideoDataset] | None = None,
                              max_steps: int | None = None, min_epochs: int = 1,
                              limit_s: float | None = None, budget_grew: bool = True) -> dict[str, Any]:
    """Supervised from scratch: ``cfg``'s backbone at random init trained with cross-entropy on the training labels
    (:class:`~videocontrast.methods.Supervised` on the engine's :func:`~videocontrast.engine.train.fit`, through
    :func:`~videocontrast.eval.finetune.finetune` with the backbone at the classifier's lr) within the wall-clock
    budget pretraining took (``budget_s``, seconds of training epochs).

    A supervised epoch costs about half a contrastive one (one view, no projection head), so the run uses its whole
    budget: after the first epoch it plans as many epochs as fit (:func:`plan_supervised_epochs`) and trains them
    with a complete cosine schedule; the time limit stays as a guard. A run already in ``run_dir`` continues with
    its planned epochs and the budget left, or is reused when finished or out of budget.

    It trains with its own augmentation (``eval.finetune_augment``, see :func:`~videocontrast.build.components.finetune_aug`),
    not pretraining's; a finished run in ``run_dir`` that trained with another is refused, not reused.

    ``train_set`` gives the labelled videos it learns from (called only when it trains; default: every training
    video). With ``max_steps`` (a label subset's run) it plans that many optimisation steps (at least
    ``min_epochs`` epochs) instead of filling ``budget_s``, which is then its time limit (at least ``limit_s``).

    Returns:
        ``checkpoint`` (path), ``epochs``, ``epochs_planned``, ``time_s`` (training seconds, all runs), ``budget_s``,
        ``optimizer``, ``lr``, ``augment`` (``eval.finetune_augment``), ``augment_spatial`` (that augmentation in
        words), ``trained_now`` (False when reused).

    Raises:
        ConfigError: ``run_dir`` holds a run trained with another augmentation.
    """
    sup = copy.deepcopy(cfg)
    sup.train.knn_every = 0
    stored = stored_run(run_dir)
    augment = finetune_aug(sup)
    if stored is not None and stored.checkpoint is not None and stored.config.aug != augment:
        changed = [c for c in config_changes(stored.config, dataclasses.replace(sup, aug=augment))
                   if c.field.startswith("aug.")]
        raise ConfigError(f"'{run_dir}' holds a supervised baseline trained with another augmentation than "
                          f"eval.finetune_augment={sup.eval.finetune_augment} gives ({'; '.join(map(str, changed))}; "
                          "runs made before that setting existed trained with the pretraining augmentation, "
                          "eval.finetune_augment=pretrain): rerun with --fresh to start over or choose another --out")
    spent = _history_seconds(stored.history) if stored is not None else 0.0
    left = (budget_s if limit_s is None else max(limit_s, budget_s)) - spent
    # a new run starts planned as long as pretraining (>= 2, so the 1-epoch warm-up spans the first epoch) and
    # re-plans after its first epoch; a stored run keeps the epochs it planned
    planning = stored is None or stored.checkpoint is None
    sup.eval.finetune_epochs = max(cfg.train.epochs, 2) if planning else stored.config.train.epochs
    info = {"budget_s": budget_s, "optimizer": sup.eval.finetune_optimizer, "lr": sup.eval.finetune_lr,
            "augment": sup.eval.finetune_augment,
            "augment_spatial": describe_augment(dataclasses.replace(sup, aug=augment))}
    # out of budget: less left than its last epoch took (the time limit would stop it before another)
    last_epoch_s = stored.history[-1].get("time_s", 0.0) if not planning and stored.history else 0.0
    # A run its time limit stopped is out of budget too, unless the budget grew since (pretraining continued):
    # the limit counts wall-clock seconds (checkpoints, the loader's start) that the epoch times above leave out,
    # so `left` can exceed an epoch when the limit had no room for one.
    stopped = not planning and bool(stored.history) and bool(stored.history[-1].get("time_limit_reached"))
    if not planning and (stored.final or left <= last_epoch_s or (stopped and not budget_grew)):
        return {**info, "checkpoint": str(stored.checkpoint), "epochs": stored.epochs_done,
                "epochs_planned": sup.eval.finetune_epochs, "time_s": spent, **_fit_stats(stored.history),
                "trained_now": False}
    sup.train.time_limit_s = max(left, 1e-3)
    data = train_set() if train_set is not None else labeled_dataset(sup, "train", "finetune")
    per_epoch = max(1, len(data) // max(1, min(sup.optim.batch_size, len(data))))  # drop_last batches
    if max_steps is not None:
        sup.train.save_every = max(sup.train.save_every, SUBSET_SAVE_STEPS // per_epoch)

    def plan(first_s: float) -> int:
        if max_steps is None:
            return plan_supervised_epochs(budget_s, first_s)
        return max(1, min(max(min_epochs, max_steps // per_epoch), MAX_EPOCHS))

    backbone = backbone_from_config(sup, seed=sup.train.seed).to(device)
    res = finetune(backbone, sup, run_dir, data, None, backbone_lr_ratio=1.0,
                   kind="supervised", quiet=quiet, resume_hint="re-run the same demo command to continue it",
                   plan_epochs=plan if planning else None)
    return {**info, "checkpoint": res["checkpoint"], "epochs": len(res["history"]),
            "epochs_planned": res["epochs_planned"], "time_s": _history_seconds(res["history"]),
            **_fit_stats(res["history"]), "trained_now": True}


def _fit_stats(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Optimisation steps and the last epoch's training loss of a run's ``history`` (how well it fitted)."""
    last = history[-1] if history else {}
    return {"steps": int(last.get("step", 0)), "final_loss": last.get("loss")}


def plan_supervised_epochs(budget_s: float, first_epoch_s: float) -> int:
    """As many epochs as fit in 90% of ``budget_s`` at the first epoch's pace (at least 1). The margin is for the
    spread of epoch times (on a shared 2-core machine one epoch took 3.5 s, the next fifty 3.0-5.0 s) and what the
    time limit counts besides epochs (checkpoint writes), so that the plan usually runs to its end rather than
    being cut a few epochs short by the time limit, which stays as the guard."""
    return max(1, int(0.9 * budget_s // max(first_epoch_s, 1e-6)))


def _evaluate(name: str, enc: Encoder, device: torch.device, out: Path, val: Subsets | None = None
              ) -> dict[str, Any]:
    """Linear probe, kNN and retrieval of ``enc`` (outputs in ``out/name``, features cached in ``out/cache``),
    scored on the test split, or with ``val`` trained on its training videos and scored on its validation split."""
    edir = out / name
    edir.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    lin = run_linear(enc, device, edir, cache, subsets=val)
    knn = run_knn(enc, device, edir, cache, subsets=val)
    retr = run_retrieve(enc, device, edir, cache, subsets=val)
    return {**_summary(lin, knn, retr), "encoder": enc.description, "predictions": lin.get("predictions"),
            "protocol": {"linear": lin["protocol"], "knn": knn["protocol"], "retrieval": retr["protocol"]}}


class SharedFrames:
    """The labelled training videos the supervised baselines learn from, decoded once (``data.cache``) for all of
    them: the all-labels run and every label subset's read one frame cache (kept in ``folder`` when on disk).

    ``decoded`` is pretraining's frame cache (``pretrain(...)["frame_cache"]``, None when pretraining was reused and
    decoded nothing): the same training videos at the same frame size, so it is read instead of decoding them again.
    Otherwise the videos are decoded only when a run first asks for them, so a rerun whose runs are all finished
    decodes nothing; when the first to ask is a label subset's run, only the videos of :attr:`expected` (the largest
    subset's, which holds the smaller ones) are decoded. A video outside the cache is read from its file."""

    def __init__(self, cfg: Config, folder: Path, decoded: Any = None) -> None:
        self.cfg, self.folder = cfg, folder
        self.expected: set[str] | None = None  # the videos the subset runs will ask for (None: every video)
        self._full: VideoDataset | None = None
        self._cache: Any = None
        self._decoded = decoded

    def subset(self, keep: set[str] | None = None) -> VideoDataset:
        """Every training video (``keep`` None) or those whose path is in ``keep``, on the shared cache."""
        if self._full is None:
            self._full = labeled_dataset(self.cfg, "train", "finetune")
            cover = (self._full if keep is None or self.expected is None
                     else restrict(self._full, self.expected | keep))
            given = self._decoded
            if (given is not None and given.box == cover.frame_box
                    and all(r.path in given.index for r in cover.records)):  # (a bad video: never filled)
                cover.frame_cache = given
            else:
                cache_frames(self.cfg, cover, self.folder)
            self._cache = cover.frame_cache
        part = self._full if keep is None else restrict(self._full, keep)
        if part.frame_cache is None:
            part.frame_cache = self._cache  # indexed by path: a dataset reads the cached videos it holds
        return part


def validation_split(cfg: Config, folder: Path) -> Subsets | None:
    """``demo --val`` (``data.val_fraction``): the validation split carved out of the training videos (grouped by
    source, seeded by ``train.seed``; written to / reused from ``folder``), scored instead of the test split by
    every encoder, the supervised baselines trained on the other training videos only; None without it.
    Pretraining uses every training video either way (it reads no labels)."""
    if not cfg.data.val_fraction:
        return None
    ds = labeled_dataset(cfg, "train", "eval")
    return plan_subsets(ds.records, ds.classes, dataset_root(cfg), cfg.data.dataset,
                        SubsetSpec(val_fraction=cfg.data.val_fraction, seed=cfg.train.seed), folder)


def label_counts(labels: np.ndarray) -> tuple[list[int], list[int], int]:
    """The counts of :data:`LABEL_COUNTS` every class present in ``labels`` (one per training video) has, those
    skipped for being larger than the smallest class, and the smallest class's count."""
    smallest = int(np.unique(np.asarray(labels), return_counts=True)[1].min())
    return ([n for n in LABEL_COUNTS if n <= smallest], [n for n in LABEL_COUNTS if n > smallest], smallest)


def skipped_note(skipped: list[int], smallest: int) -> str:
    """'10 labelled videos per class skipped: the smallest class has 7 training videos.' ('' when none)."""
    if not skipped:
        return ""
    return (f"{' and '.join(map(str, skipped))} labelled videos per class skipped: the smallest class has "
            f"{smallest} training video{'s' if smallest != 1 else ''}.")


def label_efficiency(pre_cfg: Config, out: Path, device: torch.device, encoders: dict[str, Encoder],
                     frames: SharedFrames, budget_s: float, max_steps: int, quiet: bool,
                     now: dict[str, float], reused: list[str], budget_grew: bool = True,
                     val: Subsets | None = None) -> dict[str, Any]:
    """Every encoder with 1, 5 and 10 labelled training videos per class (:data:`LABEL_COUNTS`, those every class
    has): the frozen encoders' linear probe and kNN on the rows of their cached features that belong to the
    subset's videos (no forward pass), and the supervised baseline trained from scratch on the subset's videos
    (the frames of :class:`SharedFrames`) for ``max_steps`` optimisation steps (at least :data:`SUBSET_MIN_EPOCHS`
    passes), the subsets' runs sharing ``budget_s`` seconds of time limit in proportion to their batch size.

    The subsets are chosen once per count by ``train.seed`` (:func:`~videocontrast.data.subsets.plan_subsets`,
    nested: 1 per class inside 5 inside 10) and written to ``OUT/label_efficiency/<N>_per_class/`` as split files,
    reused by a rerun; every encoder is scored on the same videos: the test split, or with ``val`` (``demo --val``)
    its validation split, the subsets then drawn from the other training videos. Adds its seconds to ``now``
    (``label_efficiency_supervised``, ``label_efficiency_probes``) and what it reused to ``reused``.

    Returns:
        results.json's ``label_efficiency``: ``labels_per_class``, per encoder ``linear_top1``/``knn_top1`` lists
        aligned with it, ``best_baseline``/``margin``/``margin_ci95`` per count, the supervised runs (``training``),
        the linear probe's C selection (``linear_selection``), the split files, ``skipped`` and ``note``.
    """
    ds = labeled_dataset(pre_cfg, "train", "eval")
    held_out = val.val if val is not None else set()
    counts, skipped, smallest = label_counts(np.array([r.label for r in ds.records if r.path not in held_out]))
    res: dict[str, Any] = {"labels_per_class": counts, "skipped": skipped, "smallest_class": smallest,
                           "note": skipped_note(skipped, smallest), "seed": pre_cfg.train.seed,
                           **{name: {"linear_top1": [], "knn_top1": []} for name in encoders},
                           "training": [], "linear_selection": [], "split_files": [], "best_baseline": [],
                           "margin": [], "margin_ci95": []}
    sup_s = probe_s = 0.0
    reused_counts = []
    cache = out / "cache"
    chosen = {n: plan_subsets(ds.records, ds.classes, dataset_root(pre_cfg), pre_cfg.data.dataset,
                              SubsetSpec(labels_per_class=n, val_fraction=pre_cfg.data.val_fraction if val else 0.0,
                                         seed=pre_cfg.train.seed), out / LABEL_DIR / f"{n}_per_class")
              for n in counts}
    frames.expected = set().union(*(s.train for s in chosen.values()))
    batch = {n: min(pre_cfg.optim.batch_size, len(s.train)) for n, s in chosen.items()}  # a step's cost
    for n, subsets in chosen.items():
        share = budget_s * batch[n] / max(1, sum(batch.values()))
        here = out / LABEL_DIR / f"{n}_per_class"
        res["split_files"].append(subsets.summary["labelled_split"])
        t = time.perf_counter()
        train = train_supervised_baseline(pre_cfg, device, here / "supervised" / "train", share, quiet,
                                          train_set=lambda: frames.subset(subsets.train), max_steps=max_steps,
                                          min_epochs=SUBSET_MIN_EPOCHS, limit_s=SUBSET_LIMIT_FLOOR_S,
                                          budget_grew=budget_grew)
        sup_s += time.perf_counter() - t
        if not train["trained_now"]:
            reused_counts.append(n)
        res["training"].append({k: v for k, v in train.items() if k != "trained_now"})
        t = time.perf_counter()
        scored: dict[str, dict[str, Any]] = {}
        for name, enc in encoders.items():
            if name == "supervised":  # the baseline trained on this subset's videos, not on all labels
                enc = load_weights(train["checkpoint"], pre_cfg, device)
            lin = run_linear(enc, device, here / name, cache, subsets=subsets)
            knn = run_knn(enc, device, here / name, cache, subsets=subsets)
            res[name]["linear_top1"].append(_score(lin, "top1"))
            res[name]["knn_top1"].append(_score(knn, "top1"))
            scored[name] = {"linear_top1": _score(lin, "top1"), "predictions": lin.get("predictions")}
            if name == "pretrained":
                res["linear_selection"].append(lin["protocol"].get("selection"))
        best = best_baseline(scored)
        res["best_baseline"].append(best)
        res["margin"].append(scored["pretrained"]["linear_top1"] - scored[best]["linear_top1"])
        res["margin_ci95"].append(margin_interval(scored["pretrained"], scored[best], seed=pre_cfg.train.seed))
        probe_s += time.perf_counter() - t
    now["label_efficiency_supervised"] = sup_s
    now["label_efficiency_probes"] = probe_s
    if counts and reused_counts == counts:
        reused.append(f"label-efficiency supervised training ({', '.join(map(str, counts))} per class)")
    return res


def margin_interval(a: dict[str, Any], b: dict[str, Any], seed: int = 0) -> list[float] | None:
    """95% paired bootstrap interval (test videos resampled) of encoder ``a``'s linear top-1 minus ``b``'s, from
    their ``predictions_linear.npz``; None when a file is missing or the two answered different test clips."""
    try:
        with np.load(a["predictions"], allow_pickle=False) as fa, np.load(b["predictions"], allow_pickle=False) as fb:
            pa, pb = ({k: f[k] for k in ("video_ids", "labels", "pred")} for f in (fa, fb))
    except (KeyError, TypeError, OSError, ValueError):
        return None
    if not same_clips(pa, pb):
        return None
    low, high = paired_bootstrap_interval(pa["pred"] == pa["labels"], pb["pred"] == pb["labels"], pa["video_ids"],
                                          seed=seed)
    return [low, high]


def _run_demo(cfg: Config, out: Path, quiet: bool, root: Path, t0: float, data_s: float,
              previous: dict[str, Any] | None, command: str) -> dict[str, Any]:
    now: dict[str, float] = {"data": data_s}  # this run's seconds per step
    reused: list[str] = []
    device = resolve_device(cfg.train.device)
    t = time.perf_counter()
    before = stored_run(out / "pretrain")
    # the kNN monitor scores the test split: not with `--val`, whose point is that the test split is not looked at
    monitor = None if cfg.data.val_fraction else knn_monitor(cfg, device)
    run = pretrain(cfg, out / "pretrain", resume=True, quiet=quiet, monitor=monitor, resume_hint=RESUME_HINT)
    now["pretrain"] = time.perf_counter() - t
    pre_cfg: Config = run["config"]
    planned = pre_cfg.train.epochs
    pretrained_now = not (before is not None and before.checkpoint is not None
                          and (before.epochs_done >= planned or before.epochs_done == run["epochs"]))
    if not pretrained_now:
        reused.append(f"pretraining ({run['epochs']} epochs)")
    cut = run["epochs"] < planned
    pretrain_info = {"epochs": run["epochs"], "epochs_planned": planned, "steps": run["steps"],
                     "time_s": _history_seconds(run["history"]), "cut_by_time_limit": cut,
                     "time_limit_s": pre_cfg.train.time_limit_s, "history": run["history"]}
    if cut:
        pretrain_info["continue_command"] = command

    # -- the encoders, evaluated the same way
    val = validation_split(pre_cfg, out / VAL_DIR)
    t = time.perf_counter()
    frames = SharedFrames(pre_cfg, out / "supervised", decoded=run.get("frame_cache"))
    sup = train_supervised_baseline(pre_cfg, device, out / "supervised" / "train", pretrain_info["time_s"], quiet,
                                    train_set=(lambda: frames.subset(val.train)) if val else frames.subset,
                                    budget_grew=pretrained_now)
    now["supervised_training"] = time.perf_counter() - t
    if not sup["trained_now"]:
        reused.append(f"supervised training ({sup['epochs']} epochs)")
    specs = {"pretrained": (run["checkpoint"], pre_cfg), "random_init": ("random", pre_cfg)}
    if pre_cfg.data.input != "rgb":
        specs["random_init_rgb"] = ("random", rgb_config(pre_cfg))
    specs["supervised"] = (sup["checkpoint"], pre_cfg)
    results: dict[str, Any] = {}
    feature_sets: dict[str, dict] = {}
    fingerprints: dict[str, str] = {}
    encoders: dict[str, Encoder] = {}
    for name, (spec, enc_cfg) in specs.items():
        t = time.perf_counter()
        enc = encoders[name] = load_weights(spec, enc_cfg, device)
        fingerprints[name] = enc.fingerprint
        results[name] = _evaluate(name, enc, device, out, val)
        feature_sets[name] = scored_features(enc, device, out / "cache", val)
        now[f"eval_{name}"] = time.perf_counter() - t
        if previous and (previous.get("fingerprints") or {}).get(name) == enc.fingerprint:
            reused.append(f"features of {name}")
    results["supervised"]["training"] = {k: v for k, v in sup.items() if k != "trained_now"}
    results["label_efficiency"] = label_efficiency(
        pre_cfg, out, device, encoders, frames, SUBSET_BUDGET_SHARE * pretrain_info["time_s"],
        max(1, int(sup.get("steps") or 0)), quiet, now, reused, budget_grew=pretrained_now, val=val)
    names = class_names(pre_cfg)  # every class the split files list (101 for UCF101 even when few are on disk)
    train_feats = features(encoders["pretrained"], "train", device, out / "cache")
    classes = [names[int(c)] for c in np.unique(train_feats["labels"])]  # those with training videos
    train_videos = int(len(np.unique(train_feats["video_ids"])))
    results["dataset"] = {"name": pre_cfg.data.dataset,
                          "split": pre_cfg.data.split if pre_cfg.data.dataset in ("ucf101", "hmdb51") else None,
                          "classes": classes, "num_classes": len(classes),
                          "train_videos": train_videos - (len(val.val) if val else 0),
                          "test_videos": int(len(np.unique(feature_sets["pretrained"]["video_ids"]))),
                          "chance": 1.0 / max(1, len(classes)),
                          "evaluated_on": "validation" if val else "test"}
    if val:  # the scored videos are the validation split's ("test_videos" counts them); the test split is unread
        results["dataset"]["validation"] = {**val.summary, "described": val.describe_val()}
    results["evaluated_on"] = "validation" if val else "test"
    best = best_baseline(results)
    results["best_baseline"] = best
    results["margin_vs_best"] = results["pretrained"]["linear_top1"] - results[best]["linear_top1"]
    results["margin_ci95"] = margin_interval(results["pretrained"], results[best], seed=pre_cfg.train.seed)
    results["margins_by_metric"] = margins(results)
    results["margin_linear_top1"] = results["pretrained"]["linear_top1"] - results["random_init"]["linear_top1"]
    results["pretrain"] = pretrain_info
    results["verdict"] = verdict(results)
    results["config"] = pre_cfg.to_dict()
    results["dataset_root"] = str(root)
    results["fingerprints"] = fingerprints
    results["protocol"] = results["pretrained"]["protocol"]["linear"]
    now["total"] = time.perf_counter() - t0
    continued = before is not None and before.checkpoint is not None and before.epochs_done < planned
    results["timings"], said = _timings(previous, now, reused, run["epochs"] if continued else None)
    results["reruns"] = [*(previous or {}).get("reruns", []), *([{"timings": now, "reused": reused, "said": said}]
                                                               if previous else [])]
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=str))
    loss_curve(run["history"], out / "loss.png")
    label_efficiency_plot(results, out / "label_efficiency.png")
    embedding_plot({k: feature_sets[k] for k in ("pretrained", best)}, names, out / "embeddings.png")
    report = write_report(out, results)
    if not quiet:
        _print_summary(results, said, report, out)
    return results


def _timings(previous: dict[str, Any] | None, now: dict[str, float], reused: list[str],
             continued_to: int | None) -> tuple[dict[str, float], str]:
    """The timings to keep: a rerun keeps the first run's seconds for every step it reused and adds the seconds
    of new work (pretraining continued to epoch ``continued_to`` adds to the first run's); returns them and the
    sentence that says so ('' on a first run)."""
    if not previous or not isinstance(previous.get("timings"), dict):
        return dict(now), ""
    kept = dict(previous["timings"])
    new_work: list[str] = []
    added = 0.0
    for step, secs in now.items():
        if step in ("data", "total"):
            continue
        if step == "pretrain":
            if continued_to is not None:
                kept[step] = kept.get(step, 0.0) + secs
                added += secs
                new_work.append(f"pretraining continued to epoch {continued_to} (+{secs:.0f}s)")
        elif step in ("supervised_training", "label_efficiency_supervised"):
            tag = "supervised" if step == "supervised_training" else "label-efficiency supervised"
            if not any(r.startswith(tag) for r in reused) or step not in kept:
                kept[step] = kept.get(step, 0.0) + secs
                added += secs
                new_work.append(f"{tag} training (+{secs:.0f}s)")
        elif step == "label_efficiency_probes":
            if step not in kept or not any(r.startswith("label-efficiency") for r in reused):
                added += secs - kept.get(step, 0.0)
                kept[step] = secs
                new_work.append(f"label-efficiency probes ({secs:.0f}s)")
        elif not any(r == f"features of {step[len('eval_'):]}" for r in reused) or step not in kept:
            added += secs - kept.get(step, 0.0)
            kept[step] = secs
            new_work.append(f"evaluation of {step[len('eval_'):]} ({secs:.0f}s)")
    kept["total"] = kept.get("total", 0.0) + added
    said = (f"rerun into the same folder: reused {', '.join(reused) or 'nothing'}"
            + (f"; new work: {', '.join(new_work)}" if new_work else "")
            + f"; timings kept from the first run{' plus the new work' if new_work else ''} (this rerun took "
              f"{now['total']:.0f}s)")
    return kept, said


def _print_summary(results: dict[str, Any], said: str, report: Path, out: Path) -> None:
    rows = encoder_rows(results)
    cols = ["encoder", "linear probe top-1", "kNN top-1", "retrieval R@1", "retrieval R@5",
            "pretrained ahead by (linear top-1)"]
    heads = ["encoder", "linear top-1", "kNN top-1", "R@1", "R@5", "pretrained ahead by"]
    widths = [max(len(h), *(len(r[c]) for r in rows)) for c, h in zip(cols, heads)]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(heads, widths))))
    for r in rows:
        print("  ".join(r[c].ljust(w) if i == 0 else r[c].rjust(w) for i, (c, w) in enumerate(zip(cols, widths))))
    le = label_efficiency_rows(results)
    if le:
        heads = list(le[0])
        widths = [max(len(h), *(len(r[h]) for r in le)) for h in heads]
        print("label efficiency: linear top-1 by labelled training videos per class")
        for r in [dict(zip(heads, heads)), *le]:
            print("  ".join(r[h].ljust(w) if i == 0 else r[h].rjust(w) for i, (h, w) in enumerate(zip(heads, widths))))
    print(results["verdict"])
    if said:
        print(said)
    print(f"total {results['timings']['total']:.0f}s; report: {report}; results: {out / 'results.json'}")
