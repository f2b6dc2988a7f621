"""Label efficiency in `videocontrast demo` (issue 21): every encoder with 1, 5 and 10 labelled training videos per
class (those every class has) and with all labels. One tiny demo (8 synthetic classes of 6 training videos: 1 and
5 per class exist, 10 does not) is shared by the tests here; the verdict's wording is tested on hand-built
numbers."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import videocontrast.demo.baselines as demo
from videocontrast.cli import main
from videocontrast.demo.baselines import label_counts
from videocontrast.demo.verdict import verdict

from test_cli import TINY

# TINY with 8 videos per class: 6 training + 2 test videos per class (synthetic test_fraction 0.25)
LE_TINY = [*(a for a in TINY if not a.startswith("data.synthetic_videos_per_class=")),
           "data.synthetic_videos_per_class=8"]
ENCODERS = ("pretrained", "random_init", "random_init_rgb", "supervised")


@pytest.fixture(scope="module")
def le_run(tmp_path_factory):
    """The demo, with every label-subset probe's training videos recorded (the real run_linear/run_knn, spied on)
    and its printed output."""
    out = tmp_path_factory.mktemp("le") / "run"
    data = tmp_path_factory.mktemp("le-data") / "synthetic"
    seen: list[tuple[str, str, frozenset[str]]] = []

    def spy(kind, real):
        def wrapped(enc, device, out_dir, cache_dir=None, subsets=None, **kw):
            if subsets is not None:
                seen.append((kind, Path(out_dir).relative_to(out).as_posix(), frozenset(subsets.train)))
            return real(enc, device, out_dir, cache_dir, subsets=subsets, **kw)
        return wrapped

    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setattr(demo, "run_linear", spy("linear", demo.run_linear))
        mp.setattr(demo, "run_knn", spy("knn", demo.run_knn))
        assert main(["demo", "--out", str(out), f"data.root={data}", *LE_TINY]) == 0
    return out, data, seen, printed.getvalue()


def split_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def test_label_counts_skip_what_the_smallest_class_lacks():
    labels = np.array([0] * 12 + [1] * 7 + [2] * 30)
    assert label_counts(labels) == ([1, 5], [10], 7)
    assert label_counts(np.array([0] * 10 + [1] * 10)) == ([1, 5, 10], [], 10)
    assert label_counts(np.array([0, 1, 1, 1])) == ([1], [5, 10], 1)


def test_results_json_has_the_section_aligned_and_in_fractions(le_run):
    out, data, _, _ = le_run
    res = json.loads((out / "results.json").read_text())
    le = res["label_efficiency"]
    smallest = min(len(list(d.iterdir())) for d in (data / "train").iterdir())  # 6 training videos per class
    assert le["labels_per_class"] == [n for n in (1, 5, 10) if n <= smallest] == [1, 5]
    assert le["skipped"] == [10] and le["smallest_class"] == smallest
    assert "10 labelled videos per class skipped" in le["note"] and f"has {smallest} training videos" in le["note"]
    for name in ENCODERS:  # residual input: random init on RGB is there too
        for metric in ("linear_top1", "knn_top1"):
            values = le[name][metric]
            assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values), (name, metric, values)
    # each count's strongest baseline is the best of the baselines' curves there, its margin and interval with it
    for i, best in enumerate(le["best_baseline"]):
        top = max(le[b]["linear_top1"][i] for b in ENCODERS[1:])
        assert le[best]["linear_top1"][i] == top
        assert le["margin"][i] == pytest.approx(le["pretrained"]["linear_top1"][i] - top)
        low, high = le["margin_ci95"][i]
        assert -1 <= low <= le["margin"][i] <= high <= 1


def test_subsets_are_nested_balanced_and_the_same_for_every_encoder(le_run):
    out, data, seen, _ = le_run
    one, five = (split_lines(out / "label_efficiency" / f"{n}_per_class" / "labelled_split.txt") for n in (1, 5))
    per_class = {n: {} for n in (1, 5)}
    for n, lines in ((1, one), (5, five)):
        for line in lines:
            rel, label = line.split()
            per_class[n][label] = per_class[n].get(label, 0) + 1
    assert per_class[1] == {str(c): 1 for c in range(1, 9)} and per_class[5] == {str(c): 5 for c in range(1, 9)}
    assert set(one) < set(five)
    # every encoder's linear probe and kNN of one count learnt from the same videos: those of its split file
    for n, lines in ((1, one), (5, five)):
        calls = [(kind, where, vids) for kind, where, vids in seen if where.startswith(f"label_efficiency/{n}_")]
        assert sorted((k, w.rsplit("/", 1)[1]) for k, w, _ in calls) == sorted(
            (k, e) for k in ("linear", "knn") for e in ENCODERS)
        assert len({vids for *_, vids in calls}) == 1
        assert {Path(p).resolve().relative_to(data.resolve()).as_posix() for p in calls[0][2]} == {
            line.split()[0] for line in lines}


def test_the_supervised_baseline_of_a_subset_trains_on_its_videos_alone(le_run):
    out, _, _, _ = le_run
    res = json.loads((out / "results.json").read_text())
    all_steps = res["supervised"]["training"]["steps"]
    for n, train in zip(res["label_efficiency"]["labels_per_class"], res["label_efficiency"]["training"]):
        run = out / "label_efficiency" / f"{n}_per_class" / "supervised" / "train"
        info = json.loads((run / "finetune.json").read_text())
        assert info["protocol"]["train_videos"] == 8 * n  # 8 classes
        assert info["protocol"]["augment"] == "crop"  # the supervised augmentation, not pretraining's
        # as many steps as the all-labels run, at least 30 passes: batches of 8 (optim.batch_size) over 8n videos
        epochs = max(30, all_steps // n)
        assert train["epochs_planned"] == epochs
        # the time limit is a guard that a loaded machine can reach first: then fewer epochs ran, each of n steps
        assert train["steps"] == train["epochs"] * n and train["epochs"] <= epochs
        assert train["checkpoint"].startswith(str(run))


def test_the_training_videos_are_decoded_once_for_pretraining_and_every_supervised_baseline(le_run):
    _, _, _, printed = le_run
    # pretraining's frame cache is the one the all-labels and every subset's supervised baseline read
    decoded = [line for line in printed.splitlines() if line.startswith("[videocontrast] data.cache=")]
    assert len(decoded) == 1 and " 48 videos" in decoded[0], decoded


def test_the_demo_prints_the_curve_and_the_verdict_leads_with_few_labels(le_run):
    out, _, _, printed = le_run
    res = json.loads((out / "results.json").read_text())
    lines = printed.splitlines()
    at = lines.index("label efficiency: linear top-1 by labelled training videos per class")
    head, *rows = lines[at + 1: at + 6]
    assert head.split()[0] == "encoder" and head.split()[1:] == ["1", "per", "class", "5", "per", "class", "all",
                                                                 "labels"]
    le = res["label_efficiency"]
    for row, name in zip(rows, ENCODERS):
        cells = row.split()
        assert cells[-3:] == [f"{100 * le[name]['linear_top1'][0]:.1f}%", f"{100 * le[name]['linear_top1'][1]:.1f}%",
                              f"{100 * res[name]['linear_top1']:.1f}%"]
    text = res["verdict"]
    assert text.startswith("With 5 labelled videos per class, pretrained")
    from videocontrast.demo.verdict import BASELINE_NAMES

    assert f"for the strongest baseline, {BASELINE_NAMES[le['best_baseline'][1]]}" in text.split(". ")[0]
    assert text.index("With all labels, pretraining") > text.index("With 5 labelled")
    assert text in printed


def test_the_report_shows_the_label_efficiency_plot(le_run):
    out, _, _, _ = le_run
    page = (out / "report.html").read_text()
    assert 'src="label_efficiency.png"' in page and "Label efficiency" in page
    assert (out / "label_efficiency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # a second demo run (~15 s on 2 cores)
def test_a_demo_run_before_label_efficiency_reuses_its_pretraining_and_adds_the_section(le_run, tmp_path, capsys):
    out, data, _, _ = le_run
    old = tmp_path / "run"
    shutil.copytree(out, old)
    res = json.loads((old / "results.json").read_text())
    for k in ("label_efficiency",):
        res.pop(k)
    res["timings"] = {k: v for k, v in res["timings"].items() if not k.startswith("label_efficiency")}
    (old / "results.json").write_text(json.dumps(res))
    shutil.rmtree(old / "label_efficiency")
    (old / "label_efficiency.png").unlink()
    ckpt = old / "pretrain" / "checkpoints" / "last.pt"
    before = ckpt.stat().st_mtime_ns
    assert main(["demo", "--out", str(old), f"data.root={data}", *LE_TINY]) == 0
    said = capsys.readouterr().out
    assert "reusing the finished pretraining run" in said and ckpt.stat().st_mtime_ns == before
    # the all-labels baseline is reused: only the videos of the largest subset (5 of each of 8 classes) are decoded
    decoded = [line for line in said.splitlines() if line.startswith("[videocontrast] data.cache=")]
    assert len(decoded) == 1 and " 40 videos" in decoded[0], decoded
    again = json.loads((old / "results.json").read_text())
    assert again["label_efficiency"]["labels_per_class"] == [1, 5]
    assert "label-efficiency supervised training" in again["reruns"][-1]["said"]
    assert again["timings"]["label_efficiency_supervised"] >= 0 and (old / "label_efficiency.png").is_file()
    # the same seed chose the same subsets again
    for n in (1, 5):
        rel = Path("label_efficiency") / f"{n}_per_class" / "labelled_split.txt"
        assert split_lines(old / rel) == split_lines(out / rel)


def few(counts, **curves):
    return {"labels_per_class": counts, **{k: {"linear_top1": v, "knn_top1": v} for k, v in curves.items()}}


def hand_results(label_efficiency, **extra):
    enc = lambda x: {"linear_top1": x, "knn_top1": x, "R@1": x, "R@5": x}  # noqa: E731
    return {"dataset": {"name": "ucf101", "split": 1, "num_classes": 6, "train_videos": 590, "test_videos": 232},
            "pretrain": {"epochs": 80, "epochs_planned": 80, "cut_by_time_limit": False},
            "pretrained": enc(0.60), "random_init": enc(0.45), "supervised": enc(0.59),
            "label_efficiency": label_efficiency, **extra}


def test_the_verdict_names_the_strongest_baseline_at_the_lead_count():
    le = few([1, 5, 10], pretrained=[0.30, 0.48, 0.52], random_init=[0.25, 0.35, 0.36],
             supervised=[0.20, 0.31, 0.42])
    le["margin_ci95"] = [[-0.1, 0.2], [0.05, 0.21], [0.0, 0.2]]
    text = verdict(hand_results(le))
    # at 5 per class random init (35%) is the strongest baseline, not supervised (31%) as with all labels
    assert text.startswith("With 5 labelled videos per class, pretrained 48.0% vs 35.0% linear-probe top-1 for the "
                           "strongest baseline, random init (+13.0 points; 95% interval +5.0 to +21.0 points, above 0).")
    assert "With 1 per class, 30.0% vs 25.0% for random init (+5.0 points); with 10 per class, 52.0% vs 42.0% for " \
           "supervised from scratch (+10.0 points)." in text
    assert "With all labels, pretraining did NOT clearly beat the strongest baseline: linear-probe top-1 60.0% vs " \
           "59.0% for the strongest baseline, supervised from scratch (+1.0 points), within 2 points." in text
    assert text.index("With all labels") > text.index("with 10 per class")


def test_the_verdict_leads_with_the_largest_count_when_5_is_missing_and_says_without_interval():
    le = few([1], pretrained=[0.30], random_init=[0.20], supervised=[0.33])
    le["note"] = "5 and 10 labelled videos per class skipped: the smallest class has 3 training videos."
    text = verdict(hand_results(le))
    assert text.startswith("With 1 labelled video per class, pretrained 30.0% vs 33.0% linear-probe top-1 for the "
                           "strongest baseline, supervised from scratch on the same videos (-3.0 points; without an "
                           "interval")
    assert le["note"] in text
    # without the section the verdict is the all-labels one, as before
    plain = hand_results(None)
    plain.pop("label_efficiency")
    assert verdict(plain).startswith("Pretraining did NOT clearly beat the strongest baseline")
