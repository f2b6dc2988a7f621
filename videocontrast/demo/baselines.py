"""What the pretrained encoder is compared with: the supervised baseline trained from scratch (the same budget as
pretraining, its own augmentation), every encoder's linear, kNN and retrieval scores, the label-efficiency subsets
(1, 5, 10 labelled videos per class, each with its own supervised baseline, all reading one frame cache) and the
paired bootstrap interval of a margin."""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..build.components import (backbone_from_config, cache_frames, dataset_root, describe_augment, finetune_aug,
                                labeled_dataset)
from ..config import MAX_EPOCHS, Config, ConfigError
from ..data.datasets import VideoDataset
from ..data.subsets import SubsetSpec, Subsets, plan_subsets, restrict
from ..engine.run import config_changes, stored_run
from ..eval.finetune import finetune
from ..eval.features import same_clips
from ..eval.metrics import paired_bootstrap_interval
from ..build.encoder import Encoder, load_weights
from ..eval.run import run_knn, run_linear, run_retrieve
from .verdict import best_baseline


SUMMARY_KEYS = ("linear_top1", "linear_top5", "linear_video_top1", "knn_top1", "knn_video_top1",
                "R@1", "R@5", "R@10")


# Label efficiency: every encoder with this many labelled training videos per class (those every class has), the
# subsets nested and the same for every encoder (data.subsets.label_subset, seeded by train.seed), plus all labels.
LABEL_COUNTS = (1, 5, 10)


LABEL_DIR = "label_efficiency"  # OUT/label_efficiency/<N>_per_class/: split files, probes, supervised baseline


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


def history_seconds(history: list[dict[str, Any]]) -> float:
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
    spent = history_seconds(stored.history) if stored is not None else 0.0
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
            "epochs_planned": res["epochs_planned"], "time_s": history_seconds(res["history"]),
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


def evaluate_encoder(name: str, enc: Encoder, device: torch.device, out: Path, val: Subsets | None = None
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
