"""The demo's HTML report and figures: the verdict, every encoder side by side (percentages), the retrieval grids
of the pretrained encoder and the strongest baseline, the loss curve, an embedding plot and the protocol as a
short table. Every section starts with one sentence on how to read it.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..eval.metrics import video_labels
from ..eval.plots import colormap, new_figure
from ..eval.report import html_page, image_html, table_html
from ..eval.retrieval import video_embeddings
from .verdict import BASELINE_NAMES, baselines, best_baseline, headline, scored_split, verdict
from ..fileio import atomic_write_text, save_figure
from ..names import DEMO_METRICS, METRIC_LABELS, percent

# results.json metric key -> column header
COLUMNS = {k: METRIC_LABELS[k] for k in DEMO_METRICS}


def encoder_rows(results: Mapping[str, Any]) -> list[dict[str, str]]:
    """One row per encoder (pretrained first), metrics as percentages, margins vs pretrained in points."""
    names = ["pretrained", *baselines(results)]
    rows = []
    for name in names:
        r = results[name]
        row = {"encoder": BASELINE_NAMES.get(name, name)}
        row.update({head: percent(r.get(k)) for k, head in COLUMNS.items()})
        if name != "pretrained":
            d = results["pretrained"]["linear_top1"] - r["linear_top1"]
            row["pretrained ahead by (linear top-1)"] = f"{100 * d:+.1f} points"
        else:
            row["pretrained ahead by (linear top-1)"] = ""
        rows.append(row)
    return rows


def label_efficiency_rows(results: Mapping[str, Any]) -> list[dict[str, str]]:
    """One row per encoder: its linear top-1 with 1, 5, 10 labelled training videos per class (those evaluated)
    and with all labels; [] without a ``label_efficiency`` section."""
    le = results.get("label_efficiency")
    if not isinstance(le, Mapping) or not le.get("labels_per_class"):
        return []
    counts = le["labels_per_class"]
    rows = []
    for name in ["pretrained", *baselines(results)]:
        curve = le.get(name)
        if not isinstance(curve, Mapping):
            continue
        row = {"encoder": BASELINE_NAMES.get(name, name)}
        row.update({f"{n} per class": percent(v) for n, v in zip(counts, curve.get("linear_top1", []))})
        row["all labels"] = percent(results[name].get("linear_top1"))
        rows.append(row)
    return rows


def label_efficiency_plot(results: Mapping[str, Any], path: Path) -> Path | None:
    """Linear top-1 against labelled training videos per class (log scale), one line per encoder, its all-labels
    score as a dashed line of the same colour; None (nothing written) without a ``label_efficiency`` section."""
    le = results.get("label_efficiency")
    if not isinstance(le, Mapping) or not le.get("labels_per_class"):
        return None
    counts = le["labels_per_class"]
    fig, ax = new_figure((5.6, 3.6), dpi=110)
    for i, name in enumerate(n for n in ["pretrained", *baselines(results)] if isinstance(le.get(n), Mapping)):
        colour = f"C{i}"
        ax.plot(counts, [100 * v for v in le[name]["linear_top1"]], marker="o", color=colour,
                label=BASELINE_NAMES.get(name, name))
        if isinstance(results[name].get("linear_top1"), (int, float)):
            ax.axhline(100 * results[name]["linear_top1"], color=colour, linestyle="--", linewidth=1, alpha=0.8)
    chance = (results.get("dataset") or {}).get("chance")
    if isinstance(chance, (int, float)):
        ax.axhline(100 * chance, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_xticks(counts)
    ax.set_xticklabels([str(n) for n in counts])
    ax.minorticks_off()
    ax.set_xlabel("labelled training videos per class (dashed: all labels)")
    ax.set_ylabel("linear-probe top-1 (%)")
    ax.set_title("label efficiency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def loss_curve(history: list[dict[str, Any]], path: Path) -> Path:
    fig, ax = new_figure((5, 3.2), dpi=110)
    ax.plot([h["epoch"] for h in history], [h["loss"] for h in history], marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("contrastive loss")
    ax.set_title("pretraining loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def embedding_plot(sets: Mapping[str, Mapping[str, Any]], classes: list[str], path: Path) -> Path:
    """2-D PCA of the test videos' embeddings, coloured by class, one panel per encoder."""
    from sklearn.decomposition import PCA  # heavy, and only the report needs it

    fig, axes = new_figure((5 * len(sets), 4.2), 1, len(sets), dpi=110, squeeze=False)
    for ax, (name, feats) in zip(axes[0], sets.items()):
        emb = video_embeddings(feats["feats"], feats["video_ids"])
        labels = video_labels(np.asarray(feats["labels"]), np.asarray(feats["video_ids"]))
        xy = PCA(n_components=2, random_state=0).fit_transform(emb)
        cmap = colormap("tab10" if len(classes) <= 10 else "tab20")
        for c in np.unique(labels):
            m = labels == c
            ax.scatter(xy[m, 0], xy[m, 1], s=14, color=cmap(int(c) % cmap.N), label=classes[int(c)])
        ax.set_title(f"{BASELINE_NAMES.get(name, name)}: test videos (PCA)")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    save_figure(fig, path)
    return path


def protocol_rows(results: Mapping[str, Any]) -> list[dict[str, str]]:
    """The protocol as a short table: what was trained and how each number was measured."""
    cfg = results.get("config") or {}
    d, m, o, mt = (cfg.get(k, {}) for k in ("data", "model", "optim", "method"))
    ds = results.get("dataset") or {}
    pre = results.get("pretrain") or {}
    prot = (results.get("pretrained") or {}).get("protocol") or {}
    lin, knn, retr = (prot.get(k) or {} for k in ("linear", "knn", "retrieval"))
    rows = [
        ("dataset", f"{ds.get('name', d.get('dataset', '?'))}"
                    + (f" split {ds['split']}" if ds.get("split") else "")
                    + (f", {ds.get('num_classes')} classes ({', '.join(ds.get('classes', [])[:10])}), "
                       f"{ds.get('train_videos')} training / {ds.get('test_videos')} {scored_split(ds)} videos"
                       if ds else "")),
        ("input", f"{d.get('input', 'rgb')} clips of {d.get('clip_len')} frames at stride {d.get('stride')}, "
                  f"{d.get('size')}x{d.get('size')} pixels"),
        ("encoder", f"{m.get('backbone')} width {m.get('width')} layers {m.get('layers')}"),
        ("pretraining", f"{mt.get('name')} (temperature {mt.get('temperature')}), batch {o.get('batch_size')}, "
                        f"{pre.get('epochs')} of {pre.get('epochs_planned')} epochs in {pre.get('time_s', 0):.0f}s"
                        + (" (cut by the time limit)" if pre.get("cut_by_time_limit") else "")),
        ("features", "frozen backbone output (before the projection head); "
                     f"{lin.get('clips_per_video', d.get('eval_clips'))} evenly spaced clips per video, centre crop"),
        ("linear probe", f"{lin.get('classifier', 'logistic regression')}; C={lin.get('C')} chosen by "
                         f"{lin.get('selection', 'cross-validation on the training set')}"),
        ("kNN", f"k={knn.get('k')}, temperature {knn.get('temperature')}, cosine similarity"),
        ("retrieval", "each test video queries all training videos (cosine of video embeddings: the normalised "
                      "mean of normalised clip features); R@k: one of the k nearest has the query's class"),
    ]
    if "random_init_rgb" in results:
        rows.append(("random init on RGB", "the same backbone at random init on RGB clips with as many frames as "
                                           "the pretrained encoder sees"))
    sup = results.get("supervised") or {}
    if sup:
        tr = sup.get("training") or {}
        rows.append(("supervised from scratch",
                     f"the same backbone trained with cross-entropy on the training labels (which pretraining never "
                     f"saw): {tr.get('epochs')} of {tr.get('epochs_planned')} epochs in {tr.get('time_s', 0):.0f}s "
                     f"of a {tr.get('budget_s', 0):.0f}s budget (pretraining's); {tr.get('optimizer')} "
                     f"lr {tr.get('lr')}"
                     + (f"; augmentation {tr['augment']}: {tr.get('augment_spatial')}" if tr.get("augment") else "")))
    le = results.get("label_efficiency") or {}
    if le.get("labels_per_class"):
        runs = "; ".join(f"{n} per class: {t.get('epochs')} epochs, {t.get('steps')} steps in {t.get('time_s', 0):.0f}s, "
                         f"final training loss {t['final_loss']:.3f}" if isinstance(t.get("final_loss"), float) else
                         f"{n} per class: {t.get('epochs')} epochs, {t.get('steps')} steps"
                         for n, t in zip(le["labels_per_class"], le.get("training") or []))
        selection = sorted({str(x) for x in le.get("linear_selection") or []})
        rows.append(("label efficiency",
                     f"{', '.join(map(str, le['labels_per_class']))} labelled training videos per class, chosen by "
                     f"seed {le.get('seed')} (nested, the same videos for every encoder; split files in "
                     "label_efficiency/N_per_class/); the frozen encoders' features are those of all labels, the "
                     "linear probe and kNN see only the subset's videos; linear probe C: "
                     f"{' / '.join(selection) or '?'}; supervised from scratch trained on the subset alone, as many "
                     "optimisation steps as the all-labels baseline (at least 30 passes) within time limits that add up "
                     "to half of pretraining's time: " + runs
                     + (f". {le['note']}" if le.get("note") else "")))
    return [{"what": k, "how": v} for k, v in rows]


# What each row of the result table is, said beside it (a reader meeting "random init on RGB" needs it there).
ROW_MEANINGS = {
    "pretrained": "the 3D CNN after self-supervised pretraining on the training videos (no labels)",
    "random_init": "the same network and input, untrained: what the architecture alone gives",
    "random_init_rgb": "the same network untrained on plain RGB frames, where the pretrained one sees {input}: "
                       "how much the input alone changes",
    "supervised": "the same network trained from scratch on the labels, for pretraining's time: the upper "
                  "reference with all labels",
}


_INPUT_WORDS = {"residual": "frame differences", "both": "frames and their differences"}


def _row_meanings(results: Mapping[str, Any]) -> str:
    mode = ((results.get("config") or {}).get("data") or {}).get("input", "residual")
    items = "".join(f"<dt>{html.escape(BASELINE_NAMES.get(k, k))}</dt><dd>"
                    f"{html.escape(ROW_MEANINGS[k].format(input=_INPUT_WORDS.get(mode, mode)))}</dd>"
                    for k in ("pretrained", *baselines(results)) if k in ROW_MEANINGS)
    return f'<dl class="rows">{items}</dl>'


def _pair(results: Mapping[str, Any], best: str) -> str:
    """The two retrieval grids one below the other at the page's width (side by side their captions were too
    small to read)."""
    blocks = []
    for name in ("pretrained", best):
        blocks.append(f'<h3>{html.escape(BASELINE_NAMES.get(name, name))}</h3><p><a href="{name}/retrieval.html">'
                      f'full retrieval page</a> · <a href="{name}/confusion_linear.png">linear-probe confusion '
                      "matrix</a></p>"
                      + image_html(f"{name}/img/retrieval.png", f"nearest training videos of test queries ({name})"))
    return "".join(blocks)


def write_report(out: Path, results: Mapping[str, Any]) -> Path:
    """``out/report.html`` from the demo's results (figures already written next to it)."""
    best = best_baseline(results)
    t = results.get("timings") or {}
    timing_rows = [{"step": k.replace("_", " "), "seconds": f"{v:.0f}"} for k, v in t.items()]
    reruns = results.get("reruns") or []
    rerun_note = (f"<p>{html.escape(reruns[-1]['said'])}</p>" if reruns and reruns[-1].get("said") else "")
    sections = [
        ("Result", f'<p class="headline"><b>{html.escape(headline(results))}</b></p>'
                   '<div class="beside">' + table_html(encoder_rows(results)) + _row_meanings(results) + "</div>"
                   f"<p>Each row is one encoder measured the same way on the {scored_split(results.get('dataset'))} "
                   "split; higher is better, and the last column is how far the pretrained encoder is ahead of "
                   f"that row.</p><p>{html.escape(verdict(results))}</p>"),
    ]
    le_rows = label_efficiency_rows(results)
    if le_rows:
        note = (results.get("label_efficiency") or {}).get("note")
        sections.append(("Label efficiency", f"<p>Linear-probe top-1 on the {scored_split(results.get('dataset'))} "
                         "split when only a few training "
                         "videos per class are labelled (the same videos for every encoder; supervised from scratch "
                         "is trained on just those), and with all labels: self-supervised pretraining should matter "
                         "most on the left.</p>"
                         + (f"<p>{html.escape(note)}</p>" if note else "")
                         + image_html("label_efficiency.png", "linear top-1 against labelled videos per class")
                         + table_html(le_rows)))
    sections += [
        (f"Retrieval: pretrained vs the strongest baseline ({BASELINE_NAMES.get(best, best)})",
         "<p>Each row is a test video (left) and its nearest training videos; a green border means the same class, "
         "red another class.</p>" + _pair(results, best)),
        ("Pretraining loss", "<p>The contrastive loss should fall; a curve still falling steeply means more epochs "
                             "would help.</p>" + image_html("loss.png", "pretraining loss per epoch")),
        ("Embeddings", "<p>Test videos projected to 2-D (PCA), one colour per class: separated clusters mean the "
                       "features tell the classes apart without labels.</p>"
                       + image_html("embeddings.png", "PCA of test-video embeddings")),
        ("How these numbers were obtained", "<p>What was trained and how each number was measured.</p>"
                                            + table_html(protocol_rows(results))),
        ("Timings", "<p>Seconds per step of the demo (from its first run when a rerun reused the work).</p>"
                    + rerun_note + table_html(timing_rows)),
    ]
    path = out / "report.html"
    atomic_write_text(path, html_page("videocontrast demo", sections))
    return path
