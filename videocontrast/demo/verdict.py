"""The demo's verdict: the pretrained encoder against the strongest baseline, in plain sentences.

Pure functions of a results dict (the demo's ``results.json``), so the wording is tested on hand-built numbers.
Every metric is a fraction in ``[0, 1]``; margins are fractions too and printed as percentage points.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..names import METRIC_LABELS, VERDICT_METRICS, percent

# The baselines a demo may evaluate, in the order they are shown; the first one present wins a tie.
BASELINES = ("random_init", "random_init_rgb", "supervised")
BASELINE_NAMES = {
    "pretrained": "pretrained (videoSimCLR)",
    "random_init": "random init",
    "random_init_rgb": "random init on RGB",
    "supervised": "supervised from scratch",
}
# The metrics the verdict weighs, with the words it uses for them: a table's headers (names.METRIC_LABELS), but
# in a sentence the probe is "linear-probe top-1"
METRICS = {m: METRIC_LABELS[m] for m in VERDICT_METRICS} | {"linear_top1": "linear-probe top-1"}
CLEAR_MARGIN = 0.02  # a win by less than 2 points of linear top-1 is not called a win
_TIE = 1e-9


def baselines(results: Mapping[str, Any]) -> list[str]:
    """The baseline keys present in ``results``, in :data:`BASELINES` order."""
    return [b for b in BASELINES if isinstance(results.get(b), Mapping)]


def best_baseline(results: Mapping[str, Any], metric: str = "linear_top1") -> str:
    """The key of the strongest baseline by ``metric`` (ties: the first in :data:`BASELINES` order)."""
    present = [b for b in baselines(results) if results[b].get(metric) is not None]
    if not present:
        raise ValueError(f"results: no baseline with '{metric}' (expected one of {', '.join(BASELINES)})")
    return max(present, key=lambda b: (results[b][metric], -present.index(b)))


def margins(results: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """``{metric: {"best": baseline key, "margin": pretrained - that baseline}}`` for each metric in :data:`METRICS`
    that the pretrained encoder and at least one baseline have; each metric against its own strongest baseline."""
    p = results["pretrained"]
    out = {}
    for m in METRICS:
        if p.get(m) is None or not any(results[b].get(m) is not None for b in baselines(results)):
            continue
        b = best_baseline(results, m)
        out[m] = {"best": b, "margin": float(p[m] - results[b][m])}
    return out


def _pts(x: float) -> str:
    return f"{100 * x:+.1f} points"


def dataset_sentence(dataset: Mapping[str, Any]) -> str:
    """'Dataset: ucf101 split 1, 3 classes, 283 training / 109 test videos; chance level 33.3%.'"""
    k = int(dataset["num_classes"])
    name = str(dataset.get("name", "?")) + (f" split {dataset['split']}" if dataset.get("split") else "")
    scored = scored_split(dataset)
    return (f"Dataset: {name}, {k} classes, {dataset['train_videos']} training / {dataset['test_videos']} {scored} "
            f"videos; chance level {percent(1 / k)}.")


def scored_split(dataset: Mapping[str, Any] | None) -> str:
    """'validation' for a demo scored on a validation split of the training videos (``demo --val``), else 'test'."""
    return "validation" if isinstance(dataset, Mapping) and dataset.get("evaluated_on") == "validation" else "test"


def cut_sentence(pretrain: Mapping[str, Any]) -> str:
    """What to say when the time limit stopped pretraining early; '' when it ran all its epochs."""
    if not pretrain.get("cut_by_time_limit"):
        return ""
    again = pretrain.get("continue_command") or "the same command"
    return (f"Pretraining was cut by the time limit (train.time_limit_s={pretrain.get('time_limit_s', 0):g}) at "
            f"epoch {pretrain['epochs']} of {pretrain['epochs_planned']}: these numbers are for a partly trained "
            f"encoder. Re-running the same command continues it: {again}")


def interval_sentence(interval: tuple[float, float] | list[float], test_videos: int | None = None,
                      split: str = "test") -> str:
    """'The 95% interval of that margin is -4.6 to +8.7 points (paired bootstrap over the 109 test videos): ...'
    (``split``: the scored split's name, 'validation' for ``demo --val``)."""
    low, high = interval
    over = f"the {test_videos} {split} videos" if test_videos else f"the {split} videos"
    if low > 0:
        reading = f"it lies above 0, so the lead is larger than this {split} set's noise"
    elif high < 0:
        reading = f"it lies below 0, so the gap is larger than this {split} set's noise"
    else:
        reading = f"it contains 0, so this {split} set cannot tell the two apart"
    return (f"The 95% interval of that margin is {100 * low:+.1f} to {100 * high:+.1f} points (paired bootstrap "
            f"over {over}): {reading}. Training seeds add their own spread, which this interval does not include.")


def _supervised_standing(p: float, s: float, where: str) -> str:
    """'wins with all labels (95.0% vs 77.5%)' / 'is behind ...' / 'is level ...' (within :data:`CLEAR_MARGIN`)."""
    word = "wins" if s - p > CLEAR_MARGIN else "is behind" if p - s > CLEAR_MARGIN else "is level"
    return f"{word} {where} ({percent(s)} vs {percent(p)})"


def headline(results: Mapping[str, Any]) -> str:
    """The report's first line, one sentence: the pretrained encoder's linear-probe top-1, how far it is ahead of
    random init (and random init on RGB), and where supervised from scratch stands with all labels and with the
    fewest labels the demo evaluated. :func:`verdict` gives the reasoning (intervals, the other metrics)."""
    p = float(results["pretrained"]["linear_top1"])
    vs = [f"{_pts(p - results[b]['linear_top1'])} vs {BASELINE_NAMES[b]} ({percent(results[b]['linear_top1'])})"
          for b in ("random_init", "random_init_rgb")
          if isinstance(results.get(b), Mapping) and results[b].get("linear_top1") is not None]
    text = (f"Pretrained: {percent(p)} linear-probe top-1 on the {scored_split(results.get('dataset'))} split"
            + (", " + " and ".join(vs) if vs else ""))
    sup = results.get("supervised")
    if isinstance(sup, Mapping) and sup.get("linear_top1") is not None:
        text += "; supervised from scratch " + _supervised_standing(p, float(sup["linear_top1"]), "with all labels")
        le = results.get("label_efficiency")
        counts = list(le.get("labels_per_class") or []) if isinstance(le, Mapping) else []
        if counts and isinstance(le.get("supervised"), Mapping) and isinstance(le.get("pretrained"), Mapping):
            n = counts[0]
            text += " and " + _supervised_standing(float(le["pretrained"]["linear_top1"][0]),
                                                   float(le["supervised"]["linear_top1"][0]),
                                                   f"with {n} labelled video{'s' if n != 1 else ''} per class")
    return text + "."


# The count of labelled videos per class the verdict leads with, when the demo evaluated it (else its largest).
LEAD_COUNT = 5


def _interval_words(interval: Any) -> str:
    if not isinstance(interval, (list, tuple)) or len(interval) != 2:
        return "without an interval (the two encoders' test predictions cannot be paired)"
    low, high = interval
    where = "above 0" if low > 0 else "below 0" if high < 0 else "it contains 0: within the test set's noise"
    return f"95% interval {100 * low:+.1f} to {100 * high:+.1f} points, {where}"


def few_label_sentences(results: Mapping[str, Any]) -> list[str]:
    """The label-efficiency result (``results['label_efficiency']``) in sentences: pretrained vs the strongest
    baseline at :data:`LEAD_COUNT` labelled videos per class (or the largest count evaluated) with the margin and
    its interval, the other counts in short, and which counts were skipped; [] without that section."""
    le = results.get("label_efficiency")
    counts = list(le.get("labels_per_class") or []) if isinstance(le, Mapping) else []
    if not counts or not isinstance(le.get("pretrained"), Mapping):
        return []
    present = [b for b in BASELINES if isinstance(le.get(b), Mapping)]

    def at(i: int) -> tuple[str, float, float]:
        best = (le.get("best_baseline") or [None] * len(counts))[i]
        if best not in present:
            best = max(present, key=lambda b: (le[b]["linear_top1"][i], -present.index(b)))
        p, b = le["pretrained"]["linear_top1"][i], le[best]["linear_top1"][i]
        return best, float(p), float(b)

    lead = counts.index(LEAD_COUNT) if LEAD_COUNT in counts else len(counts) - 1
    n = counts[lead]
    best, p, b = at(lead)
    intervals = le.get("margin_ci95") or [None] * len(counts)
    who = BASELINE_NAMES.get(best, best) + (" on the same videos" if best == "supervised" else "")
    out = [f"With {n} labelled video{'s' if n != 1 else ''} per class, pretrained {percent(p)} vs {percent(b)} "
           f"linear-probe top-1 for the strongest baseline, {who} ({_pts(p - b)}; {_interval_words(intervals[lead])})."]
    others = [i for i in range(len(counts)) if i != lead]
    if others:
        out.append("With " + "; with ".join(
            f"{counts[i]} per class, {percent(at(i)[1])} vs {percent(at(i)[2])} for "
            f"{BASELINE_NAMES.get(at(i)[0], at(i)[0])} ({_pts(at(i)[1] - at(i)[2])})" for i in others) + ".")
    if le.get("note"):
        out.append(str(le["note"]))
    return out


def verdict(results: Mapping[str, Any]) -> str:
    """The plain-language verdict: pretrained vs the strongest baseline by linear top-1 (with the margin and, when
    ``margin_ci95`` is there, its interval: a margin whose interval reaches 0 is not called a win), whether kNN and
    retrieval agree, the dataset and chance level, and a note when pretraining was cut short. With a
    ``label_efficiency`` section the few-label result comes first (:func:`few_label_sentences`), then this
    all-labels result."""
    p = results["pretrained"]
    best = best_baseline(results)
    b = results[best]
    margin = float(p["linear_top1"] - b["linear_top1"])
    versus = (f"linear-probe top-1 {percent(p['linear_top1'])} vs {percent(b['linear_top1'])} for the strongest "
              f"baseline, {BASELINE_NAMES.get(best, best)} ({_pts(margin)})")
    interval = results.get("margin_ci95")
    noisy = interval is not None and interval[0] <= 0.0  # the test set cannot rule out no gain
    if margin > CLEAR_MARGIN and not noisy:
        head = f"Pretraining helped: {versus}."
    elif margin > CLEAR_MARGIN:
        head = f"Pretraining did NOT clearly beat the strongest baseline: {versus}, within the test set's noise."
    elif margin >= -CLEAR_MARGIN:
        head = f"Pretraining did NOT clearly beat the strongest baseline: {versus}, within 2 points."
    else:
        head = f"Pretraining did NOT beat the strongest baseline: {versus}."
    few = few_label_sentences(results)
    sentences = [*few, f"With all labels, {head[0].lower()}{head[1:]}" if few else head]
    if interval is not None:
        sentences.append(interval_sentence(interval, (results.get("dataset") or {}).get("test_videos"),
                                           scored_split(results.get("dataset"))))

    by_metric = margins(results)
    ahead = [m for m, v in by_metric.items() if v["margin"] > _TIE]
    behind = [m for m, v in by_metric.items() if v["margin"] < -_TIE]

    def listed(ms: list[str]) -> str:
        return "; ".join(f"{METRICS[m]} ({percent(p[m])} vs {percent(results[by_metric[m]['best']][m])} for "
                         f"{BASELINE_NAMES.get(by_metric[m]['best'], by_metric[m]['best'])})" for m in ms)

    level = [m for m in by_metric if m not in ahead and m not in behind]
    if ahead and behind:
        sentences.append(f"The metrics disagree: pretrained is ahead of every baseline on {listed(ahead)} but "
                         f"behind on {listed(behind)}.")
    elif ahead or behind:
        sentences.append(f"The metrics agree: pretrained is {'ahead of every baseline' if ahead else 'behind'} on "
                         f"{listed(ahead or behind)}.")
    if level:
        sentences.append(f"Level on {', '.join(f'{METRICS[m]} ({percent(p[m])})' for m in level)}.")
    if "supervised" in results:
        augment = ((results["supervised"].get("training") or {}).get("augment")
                   if isinstance(results["supervised"], Mapping) else None)
        whose = "pretraining's" if augment == "pretrain" else "its own"
        sentences.append("Supervised from scratch trains the same backbone with cross-entropy on the training "
                         "labels, which pretraining never saw, for the same wall-clock budget"
                         + (f", with {whose} augmentation (eval.finetune_augment={augment})" if augment else "")
                         + ".")
    if isinstance(results.get("dataset"), Mapping):
        sentences.append(dataset_sentence(results["dataset"]))
        if scored_split(results["dataset"]) == "validation":
            sentences.insert(0, "On a validation split of the training videos (grouped by source), not the test "
                                "split, which this demo did not read:")
    cut = cut_sentence(results.get("pretrain") or {})
    if cut:
        sentences.append(cut)
    return " ".join(sentences)
