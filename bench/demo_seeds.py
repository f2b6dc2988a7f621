"""`videocontrast demo` over several seeds, and a table of every encoder's mean and spread (README, issue 11).

Not a test. Runs the demo once per seed into ``PREFIX-s<seed>/`` (a seed whose folder already holds a finished
demo is reused, as the demo itself reuses its runs), then prints a Markdown table: per encoder and metric, the
mean over seeds and the range (min-max), and the pretrained encoder's margin over the strongest baseline per seed::

    PYTHONPATH=. python bench/demo_seeds.py --prefix runs/demo-ucf --seeds 0 1 2 -- \\
        --dataset ucf101 --root ../shared/data/ucf101-mini/videos \\
        --splits ../shared/data/ucf101-mini/ucfTrainTestlist --split 1
    PYTHONPATH=. python bench/demo_seeds.py --prefix runs/demo-ucf --seeds 0 1 2 --table-only

Everything after ``--`` goes to ``videocontrast demo`` (the seed is added as ``train.seed=<seed>``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from videocontrast.demo.verdict import BASELINE_NAMES, BASELINES
from videocontrast.names import VERDICT_METRICS as METRICS  # the demo scores the verdict weighs


def cell(values: list[float]) -> str:
    pct = [100 * v for v in values]
    if len(pct) == 1:
        return f"{pct[0]:.1f}"
    return f"{statistics.mean(pct):.1f} ({min(pct):.1f}-{max(pct):.1f})"


def interval(result: dict) -> str:
    """', 95% -4.6..+11.2' from the demo's ``margin_ci95`` (absent in results of demos before it existed)."""
    ci = result.get("margin_ci95")
    return f", 95% {100 * ci[0]:+.1f}..{100 * ci[1]:+.1f}" if ci else ""


def table(results: list[dict]) -> str:
    lines = ["| encoder | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for key in ("pretrained", *BASELINES):
        if all(key in r for r in results):
            lines.append(f"| {BASELINE_NAMES[key]} | " + " | ".join(cell([r[key][m] for r in results]) for m in METRICS) + " |")
    margins = [100 * r["margin_vs_best"] for r in results]
    lines.append("")
    lines.append("pretrained minus the strongest baseline (linear top-1, points), per seed: "
                 + ", ".join(f"{m:+.1f} ({r['best_baseline']}{interval(r)})" for m, r in zip(margins, results))
                 + f"; mean {statistics.mean(margins):+.1f}")
    sup = [r["supervised"].get("training", {}) for r in results]
    pre = [r.get("pretrain", {}) for r in results]
    lines.append("pretraining epochs / seconds per seed: " + ", ".join(
        f"{p.get('epochs')}/{p.get('epochs_planned')} in {p.get('time_s', 0):.0f}s" for p in pre))
    lines.append("supervised epochs / seconds per seed: " + ", ".join(
        f"{s.get('epochs')}/{s.get('epochs_planned')} in {s.get('time_s', 0):.0f}s" for s in sup))
    lines.append("demo total seconds per seed: " + ", ".join(f"{r['timings']['total']:.0f}" for r in results))
    lines += ["", *label_table(results)]
    return "\n".join(lines)


def label_table(results: list[dict]) -> list[str]:
    """Linear top-1 by labelled videos per class (the demo's label_efficiency), mean and range over seeds, with
    all labels as the last column; [] when a seed has no such section or the seeds evaluated other counts."""
    sections = [r.get("label_efficiency") for r in results]
    if not all(isinstance(s, dict) and s.get("labels_per_class") for s in sections):
        return []
    counts = sections[0]["labels_per_class"]
    if any(s["labels_per_class"] != counts for s in sections):
        return []
    lines = ["linear top-1 by labelled training videos per class:", "",
             "| encoder | " + " | ".join(f"{n} per class" for n in counts) + " | all |",
             "|---|" + "---|" * (len(counts) + 1)]
    for key in ("pretrained", *BASELINES):
        if all(key in s and key in r for s, r in zip(sections, results)):
            cols = [cell([s[key]["linear_top1"][i] for s in sections]) for i in range(len(counts))]
            lines.append(f"| {BASELINE_NAMES[key]} | " + " | ".join(cols)
                         + f" | {cell([r[key]['linear_top1'] for r in results])} |")
    for i, n in enumerate(counts):
        ms = [100 * s["margin"][i] for s in sections]
        lines.append(f"{n} per class: pretrained minus the strongest baseline, per seed: "
                     + ", ".join(f"{m:+.1f} ({s['best_baseline'][i]})" for m, s in zip(ms, sections))
                     + f"; mean {statistics.mean(ms):+.1f}")
    return lines


def main() -> int:
    argv = sys.argv[1:]
    demo_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", required=True, help="run folders are PREFIX-s<seed>")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--table-only", action="store_true", help="only read the finished runs")
    args = parser.parse_args(own)
    results = []
    for seed in args.seeds:
        out = Path(f"{args.prefix}-s{seed}")
        if not args.table_only:
            cmd = [sys.executable, "-m", "videocontrast", "demo", "--out", str(out), *demo_args, f"train.seed={seed}"]
            print("$", " ".join(cmd), flush=True)
            if subprocess.call(cmd) != 0:
                print(f"seed {seed}: the demo failed; see its output above", file=sys.stderr)
                return 1
        path = out / "results.json"
        if not path.is_file():
            print(f"seed {seed}: no {path}", file=sys.stderr)
            return 1
        results.append(json.loads(path.read_text()))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
