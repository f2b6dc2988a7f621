"""How well ``videocontrast curate`` does on real clips: duplicates vs UCF101 groups, selection vs random, outliers.

Reads embedding folders that ``videocontrast embed`` wrote (one row per video) and runs the same functions the
``curate`` commands run (``videocontrast.search.curate``). Three measurements, each a subcommand:

``duplicates EMB [EMB ...]``
    Near-duplicates have a ground truth in UCF101: clips of one group (``v_Class_gXX_cYY``: one person, one
    scene) are near copies of each other (with ``--root``: the groups ``data.groups`` finds there, e.g. a
    ``clips.csv``'s ``source_group``). For each folder: precision and recall of the pairs that
    ``duplicate_groups`` puts in one group against the same-group pairs (``data.groups.source_group``), at the
    ``--auto`` (Otsu) threshold and over a sweep of thresholds (the precision-recall curve, ``--plot``).
``select EMB --test-list FILE | --test-folder test``
    The labelling queue: from the training rows, queues of N = classes x n videos (``--per-class``) by each
    strategy; a linear probe (``eval.linear.linear_probe``: logistic regression, C by grouped CV where the queue
    allows it, else fixed) trained on the queue's embeddings and labels, top-1 on the test rows. ``random`` is the
    mean of ``--draws`` seeded draws (and their spread); ``typical`` too (its k-means is seeded); ``diverse`` is
    deterministic.
``outliers EMB --planted EMB2``
    Plants ``--count`` rows of another collection (seeded, spread over its classes) into EMB, ranks all by the
    ``curate outliers`` score and counts the planted rows in the top ``--top``.

Usage (the folders as ``docs/curate.md`` builds them)::

    PYTHONPATH=. python bench/curate_quality.py duplicates emb-ucf-pre emb-ucf-random --plot docs/img/curate_pr.png
    PYTHONPATH=. python bench/curate_quality.py select emb-ucf-pre --root DATA/ucf101-mini/videos \\
        --test-list DATA/ucf101-mini/ucfTrainTestlist/testlist01.txt
    PYTHONPATH=. python bench/curate_quality.py outliers emb-ucf-pre --planted emb-tiny-by-ucf
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from videocontrast.data.groups import source_group, source_groups_of_paths
from videocontrast.eval.linear import linear_probe
from videocontrast.search.curate import duplicate_groups, knn_graph, outlier_scores, select
from videocontrast.search.query import load_collection


def load(folder: str) -> tuple[np.ndarray, list[str], list[str]]:
    col = load_collection(folder, use_index=False)
    labels = [str(x) for x in col.table["label"]] if "label" in col.table else [""] * len(col)
    return col.emb, [str(p) for p in col.table["path"]], labels


# ----------------------------------------------------------------------------- duplicates

def pair_scores(groups: list[np.ndarray], truth: np.ndarray) -> tuple[float, float, int]:
    """Precision, recall and count of the predicted same-group pairs against ``truth`` (a group id per row)."""
    true_pairs = int(sum(c * (c - 1) // 2 for c in np.unique(truth, return_counts=True)[1]))
    pred = hit = 0
    for g in groups:
        pred += len(g) * (len(g) - 1) // 2
        hit += int(sum(c * (c - 1) // 2 for c in np.unique(truth[g], return_counts=True)[1]))
    return (hit / pred if pred else 1.0), (hit / true_pairs if true_pairs else 0.0), pred


def cmd_duplicates(args) -> dict:
    out = {}
    curves = {}
    names = args.names or [Path(f).name for f in args.emb]
    for folder, name in zip(args.emb, names):
        emb, paths, _ = load(folder)
        truth_names = (source_groups_of_paths(paths, args.root, "folder") if args.root else
                       [source_group(Path(p).name, "ucf101") for p in paths])
        truth = np.unique(truth_names, return_inverse=True)[1]
        graph = knn_graph(emb)
        auto = duplicate_groups(emb, None, graph=graph)
        p, r, n_pred = pair_scores(auto.groups, truth)
        sweep = []
        # Thresholds at quantiles of the neighbour similarities: a random encoder's all lie above 0.98.
        for t in np.unique(np.clip(np.quantile(graph[0], np.linspace(0.0, 1.0, 81)), -1.0, 1.0)):
            d = duplicate_groups(emb, float(t), graph=graph)
            sp, sr, _ = pair_scores(d.groups, truth)
            sweep.append((float(t), sp, sr))
        curves[name] = sweep
        best_f1 = max(sweep, key=lambda x: 2 * x[1] * x[2] / max(x[1] + x[2], 1e-12))
        out[name] = {"rows": len(emb), "true_pairs": int(sum(c * (c - 1) // 2 for c in np.bincount(truth))),
                     "auto_threshold": round(auto.threshold, 4), "groups": len(auto.groups),
                     "predicted_pairs": n_pred, "precision": round(p, 4), "recall": round(r, 4),
                     "best_f1_threshold_on_this_set": {"threshold": best_f1[0], "precision": round(best_f1[1], 4),
                                                       "recall": round(best_f1[2], 4)}}
        print(json.dumps({name: out[name]}), flush=True)
    if args.plot:
        from videocontrast.eval.plots import new_figure
        from videocontrast.fileio import save_figure

        fig, ax = new_figure((5, 4))
        for name, sweep in curves.items():
            ax.plot([s[2] for s in sweep], [s[1] for s in sweep], marker=".", label=name)
            a = out[name]
            ax.scatter([a["recall"]], [a["precision"]], marker="*", s=120, zorder=3)
        ax.set_xlabel("recall of same-group pairs")
        ax.set_ylabel("precision")
        ax.set_title("curate duplicates vs UCF101 groups (star: --auto)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8)
        save_figure(fig, args.plot)
    return out


# ----------------------------------------------------------------------------- selection

def test_rows(paths: list[str], root: str | None, test_list: str | None, test_folder: str | None) -> np.ndarray:
    if test_list:
        listed = {line.split()[0].replace("\\", "/").lower() for line in open(test_list) if line.strip()}
        rel = [Path(os.path.relpath(p, root)).as_posix().lower() for p in paths]
        return np.array([r in listed for r in rel])
    return np.array([test_folder in Path(p).parts for p in paths])


def probe_top1(emb, y, queue, test, classes) -> float:
    if len(np.unique(y[queue])) < 2:  # one class in the queue: every test video gets it
        return float(np.mean(y[test] == y[queue][0]))
    ids = np.arange(len(emb))
    r = linear_probe({"feats": emb[queue], "labels": y[queue], "video_ids": ids[queue]},
                     {"feats": emb[test], "labels": y[test], "video_ids": ids[test]}, classes)
    return float(r["video_top1"])


def cmd_select(args) -> dict:
    emb, paths, labels = load(args.emb)
    classes = sorted(set(labels))
    y = np.array([classes.index(x) for x in labels])
    is_test = test_rows(paths, args.root, args.test_list, args.test_folder)
    train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    if len(test) == 0 or len(train) == 0:
        raise SystemExit(f"{args.emb}: {len(train)} training and {len(test)} test rows; check --test-list/--root")
    out = {"emb": args.emb, "classes": len(classes), "train": len(train), "test": len(test),
           "all_labels": round(100 * probe_top1(emb, y, train, test, classes), 1), "rows": []}
    print(json.dumps({k: out[k] for k in ("classes", "train", "test", "all_labels")}), flush=True)
    for n in args.per_class:
        budget = len(classes) * n
        if budget > len(train):
            out["rows"].append({"per_class": n, "budget": budget, "note": f"more than the {len(train)} training rows"})
            print(json.dumps(out["rows"][-1]), flush=True)
            continue
        row = {"per_class": n, "budget": budget}
        for strategy in ("diverse", "typical", "random"):
            seeds = [0] if strategy == "diverse" else list(range(args.draws))
            accs = []
            for s in seeds:
                q = train[select(emb[train], budget, strategy, s)]
                accs.append(probe_top1(emb, y, q, test, classes))
            row[strategy] = round(100 * float(np.mean(accs)), 1)
            if len(accs) > 1:
                row[f"{strategy}_range"] = [round(100 * min(accs), 1), round(100 * max(accs), 1)]
        row["classes_covered"] = {s: int(len(np.unique(y[train[select(emb[train], budget, s, 0)]])))
                                  for s in ("diverse", "typical", "random")}
        out["rows"].append(row)
        print(json.dumps(row), flush=True)
    return out


# ----------------------------------------------------------------------------- outliers

def cmd_outliers(args) -> dict:
    emb, paths, _ = load(args.emb)
    extra, extra_paths, extra_labels = load(args.planted)
    rng = np.random.default_rng(args.seed)
    by_class: dict[str, list[int]] = {}
    for i, lab in enumerate(extra_labels):
        by_class.setdefault(lab, []).append(i)
    order = [rng.permutation(v).tolist() for v in by_class.values()]
    picks = [o[i] for i in range(max(map(len, order))) for o in order if i < len(o)][: args.count]  # round-robin
    allemb = np.concatenate([emb, extra[picks]])
    planted = np.arange(len(emb), len(allemb))
    score = outlier_scores(knn_graph(allemb)[0])
    rank = np.argsort(-score, kind="stable")
    top = set(rank[: args.top].tolist())
    found = int(sum(p in top for p in planted))
    ranks = sorted(int(np.flatnonzero(rank == p)[0]) + 1 for p in planted)
    out = {"emb": args.emb, "planted_from": args.planted, "rows": len(allemb), "planted": len(planted),
           "top": args.top, "planted_in_top": found, "planted_ranks": ranks,
           "chance_in_top": round(args.top * len(planted) / len(allemb), 2)}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("duplicates")
    d.add_argument("emb", nargs="+")
    d.add_argument("--plot")
    d.add_argument("--names", nargs="+", help="legend names, one per folder")
    d.add_argument("--root", help="the dataset root, for groups from its clips.csv (default: UCF101 file names)")
    s = sub.add_parser("select")
    s.add_argument("emb")
    s.add_argument("--root")
    s.add_argument("--test-list")
    s.add_argument("--test-folder", default="test")
    s.add_argument("--per-class", type=int, nargs="+", default=[1, 2, 5])
    s.add_argument("--draws", type=int, default=5)
    o = sub.add_parser("outliers")
    o.add_argument("emb")
    o.add_argument("--planted", required=True)
    o.add_argument("--count", type=int, default=10)
    o.add_argument("--top", type=int, default=20)
    o.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args()
    out = {"duplicates": cmd_duplicates, "select": cmd_select, "outliers": cmd_outliers}[args.cmd](args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
