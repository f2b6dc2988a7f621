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

import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..build.components import (check_dataset, dataset_root, eval_loader, labeled_dataset, make_folder_split,
                                wants_folder_split)
from ..config import Config, ConfigError
from ..data.subsets import SubsetSpec, Subsets, plan_subsets
from .report import (embedding_plot, encoder_rows, label_efficiency_plot, label_efficiency_rows, loss_curve,
                          write_report)
from ..engine.device import resolve_device
from ..engine.run import (RunFolderError, config_changes, epochs_done_phrase, refused_changes, run_lock, run_number,
                          stored_run, time_limit_stops)
from ..engine.train import pretrain
from ..fileio import atomic_write_text
from ..names import input_frames
from ..build.encoder import Encoder, load_weights
from ..eval.run import class_names, features, knn_monitor, scored_features
from .verdict import best_baseline, margins, verdict
from .baselines import (SUBSET_BUDGET_SHARE, SharedFrames, evaluate_encoder, history_seconds, label_efficiency,
                        margin_interval, train_supervised_baseline)
from .folder import check_clearable, clear_demo, read_results, record_outputs

RESUME_HINT = "re-run the same command to continue"
VAL_DIR = "val"  # OUT/val/: the validation split of `demo --val` (val_split.txt, labelled_split.txt, subsets.json)
# OUT/splits/: the test split drawn for a folder of class subfolders without train/ and test/ (train.txt, test.txt,
# split.json); not a demo output that --fresh removes: it is drawn again in place, so the check before any work
# reads the split that the run then uses
SPLITS_DIR = "splits"


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
    # the inputs first: a wrong --root or --device is the user's mistake to see, not a refusal about --out, and
    # nothing is written to --out for a run that cannot start
    resolve_device(cfg.train.device)
    check_dataset(cfg)
    split_here = wants_folder_split(cfg)
    if split_here:  # recorded in the run's config, so a rerun is compared (and evaluated) with the same split
        cfg.data.splits = str(out / SPLITS_DIR)
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
        if split_here:
            make_folder_split(cfg, out / SPLITS_DIR, redraw=fresh, quiet=quiet)
        # fail before pretraining (and before --fresh removes anything); `--val` never reads the test split
        for subset in ("train",) if cfg.data.val_fraction else ("train", "test"):
            eval_loader(cfg, subset)
        data_s = time.perf_counter() - t0
        if fresh:
            removed = clear_demo(out)
            if removed and not quiet:
                print(f"--fresh: removed the previous demo in {out} ({', '.join(removed)})", flush=True)
        record_outputs(out)
        previous_results = None if fresh else read_results(out)
        if not fresh and previous is not None and previous.checkpoint is not None and not quiet:
            where, done = out / "pretrain", previous.epochs_done
            print(f"reusing the finished pretraining run in {where} ({done} epochs)" if done >= cfg.train.epochs
                  else f"continuing the pretraining run in {where}: {epochs_done_phrase(done, cfg.train.epochs)}",
                  flush=True)
        return _run_demo(cfg, out, quiet, root, t0, data_s, previous_results,
                         command or "the same `videocontrast demo` command (without --fresh)")


def rgb_config(cfg: Config) -> Config:
    """``cfg`` on RGB input with as many frames as the network sees in ``cfg`` (residual and ``both`` clips of T
    frames are T - 1 frames)."""
    rgb = copy.deepcopy(cfg)
    rgb.data.clip_len = input_frames(cfg.data.input, cfg.data.clip_len)
    rgb.data.input = "rgb"
    return rgb


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
                     "time_s": history_seconds(run["history"]), "cut_by_time_limit": cut,
                     "time_limit_s": pre_cfg.train.time_limit_s, **_runs_of(run["history"], pretrained_now),
                     "history": run["history"]}
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
        results[name] = evaluate_encoder(name, enc, device, out, val)
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
    earlier_s = history_seconds(before.history) if continued else 0.0
    results["timings"], said = _timings(previous, now, reused, run["epochs"] if continued else None, earlier_s)
    # a rerun is one into a folder that held this demo's work: its results, or only its pretraining (a demo stopped
    # before its report)
    rerun = previous is not None or (before is not None and before.checkpoint is not None)
    results["reruns"] = [*(previous or {}).get("reruns", []), *([{"timings": now, "reused": reused, "said": said}]
                                                               if rerun else [])]
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=str))
    loss_curve(run["history"], out / "loss.png")
    label_efficiency_plot(results, out / "label_efficiency.png")
    embedding_plot({k: feature_sets[k] for k in ("pretrained", best)}, names, out / "embeddings.png")
    report = write_report(out, results)
    if not quiet:
        _print_summary(results, said, report, out)
    return results


def _runs_of(history: list[dict[str, Any]], trained_now: bool) -> dict[str, Any]:
    """How the pretraining's seconds add up over the runs that trained it: ``time_s`` (its epochs, all runs) can pass
    ``time_limit_s``, which each run counts afresh; ``time_s_this_run`` is what this run trained."""
    runs = run_number(history)
    return {"runs": runs, "time_limit_stops": time_limit_stops(history),
            "time_s_this_run": history_seconds([h for h in history if h.get("run", 1) == runs]) if trained_now
            else 0.0,
            "time_limit_counts": "each run of the command (a rerun continues with a new limit); time_s counts the "
                                 "epochs of all runs"}


def _timings(previous: dict[str, Any] | None, now: dict[str, float], reused: list[str],
             continued_to: int | None, earlier_s: float = 0.0) -> tuple[dict[str, float], str]:
    """The timings to keep: a rerun keeps the first run's seconds for every step it reused and adds the seconds
    of new work (pretraining continued to epoch ``continued_to`` adds to the first run's); returns them and the
    sentence that says so ('' on a first run). A rerun whose folder has the pretraining but no results (a demo
    stopped before its report) has only this run's timings, plus ``earlier_s``, the epochs' seconds the earlier
    runs' pretraining took."""
    if not previous or not isinstance(previous.get("timings"), dict):
        if continued_to is None:
            return dict(now), (f"rerun into the same folder: reused {', '.join(reused)}; the earlier run left no "
                               "results, so the timings are this run's" if reused else "")
        kept = {**now, "pretrain": now["pretrain"] + earlier_s, "total": now["total"] + earlier_s}
        return kept, (f"rerun into the same folder: pretraining continued to epoch {continued_to} "
                      f"(+{now['pretrain']:.0f}s after {earlier_s:.0f}s of earlier epochs); the earlier run left no "
                      "results, so the other timings are this run's")
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
