"""Choose the real-clip recipe on validation splits of every real dev set, several seeds each (issue 21).

Not a test. For every variant (the ``demo-real`` preset plus overrides) and every dev set, runs
``videocontrast ablate --val --grid train.seed=0,1,2`` into ``OUT/<dataset>/<variant>/``: each seed pretrains on all
training videos (no labels) and is scored by the linear probe and kNN on a validation split carved from the
training videos, grouped by source and drawn by that seed. The test splits are never read. Random initialisation of
the same input is scored on the same validation splits (``linear``/``knn --checkpoint random --val``). Finished
cells are reused, so an interrupted search continues. Then prints one Markdown table: per variant and dev set, the
mean and range over seeds of validation linear top-1 (and kNN top-1)::

    PYTHONPATH=. python bench/recipe_search.py --out runs/search
    PYTHONPATH=. python bench/recipe_search.py --out runs/search --table-only

The dev sets are those of ``../shared/data`` (README there); ``ucf101-tiny-mp4`` is read through a train/test
folder of links made as CONFIG.md shows (``--tiny runs/tiny``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

DATA = Path("../shared/data")
# The variants tried: each is demo-real with these overrides (see the preset's comment and issue 21's note).
VARIANTS = {
    "demo-real": [],  # RGB, no colour jitter or grayscale, crops of >= half the frame
    "rgb-jitter0.5": ["aug.jitter=true", "aug.gray=true", "aug.strength=0.5"],
    "residual": ["data.input=residual"],
    "both": ["data.input=both"],  # the frames and their differences, 6 channels
    "rgb-jitter1.0-scale0.3": ["aug.jitter=true", "aug.gray=true", "aug.strength=1.0", "aug.min_scale=0.3"],
}


def datasets(tiny: Path) -> dict[str, list[str]]:
    mini = DATA / "ucf101-mini"
    return {
        "ucf101-mini": ["--dataset", "ucf101", "--root", str(mini / "videos"), "--splits",
                        str(mini / "ucfTrainTestlist"), "--split", "1"],
        "fight-detection": ["--dataset", "folder", "--root", str(DATA / "fight-detection")],
        # 15 training videos: a validation split of 40% (6 videos) and batches of 5
        "ucf101-tiny-mp4": ["--dataset", "folder", "--root", str(tiny), "data.val_fraction=0.4",
                            "optim.batch_size=5"],
    }


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Flags and ``field=value`` overrides apart (overrides go after every flag)."""
    over = [a for a in args if "=" in a and not a.startswith("-")]
    return [a for a in args if a not in over], over


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def search(out: Path, tiny: Path, seeds: list[int], variants: list[str], sets: list[str]) -> None:
    exe = [sys.executable, "-m", "videocontrast"]
    for name in sets:
        flags, over = split_args(datasets(tiny)[name])
        for seed in seeds:  # random init of each input on each seed's validation split
            inputs = {"rgb", *(o.split("=")[1] for v in variants for o in VARIANTS[v] if o.startswith("data.input="))}
            for inp in sorted(inputs):
                extra = [] if inp == "rgb" else [f"data.input={inp}"]
                for cmd in ("linear", "knn"):
                    rdir = out / name / f"random-{inp}" / f"seed-{seed}" / cmd
                    if not (rdir / "results.json").exists():
                        run(exe + [cmd, "--checkpoint", "random", "--config", "demo-real", *flags, "--val",
                                   "--out", str(rdir), *over, *extra, f"train.seed={seed}"])
        for v in variants:
            run(exe + ["ablate", "--config", "demo-real", *flags, "--val", "--grid",
                       "train.seed=" + ",".join(map(str, seeds)), "--out", str(out / name / v), *over,
                       *VARIANTS[v]])


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    pct = [100 * v for v in values]
    return f"{statistics.mean(pct):.1f} ({min(pct):.1f}-{max(pct):.1f})" if len(pct) > 1 else f"{pct[0]:.1f}"


def scores(out: Path, name: str, row: str, seeds: list[int], key: str) -> list[float]:
    vals = []
    for s in seeds:
        if row.startswith("random-"):
            f = out / name / row / f"seed-{s}" / key.split("_")[0] / "results.json"
            if f.exists():
                r = json.loads(f.read_text())
                vals.append(r.get("val_top1", r.get("top1")))
        else:
            f = out / name / row / "cells" / f"seed-{s}" / "cell.json"
            if f.exists():
                vals.append(json.loads(f.read_text())[key])
    return vals


def table(out: Path, seeds: list[int], variants: list[str], sets: list[str]) -> str:
    rows = [*variants, "random-rgb", "random-residual", "random-both"]
    head = "| recipe | " + " | ".join(f"{n} linear | {n} kNN" for n in sets) + " |"
    lines = ["Validation top-1 (clip level), mean (min-max) over seeds " + ", ".join(map(str, seeds)), "",
             head, "|---|" + "---|---|" * len(sets)]
    for r in rows:
        cells = [cell(scores(out, n, r, seeds, k)) for n in sets for k in ("linear_val_top1", "knn_val_top1")]
        if any(c != "-" for c in cells):
            lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tiny", type=Path, default=Path("runs/tiny"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--sets", nargs="+", default=["ucf101-mini", "fight-detection", "ucf101-tiny-mp4"])
    p.add_argument("--table-only", action="store_true")
    a = p.parse_args()
    if not a.table_only:
        search(a.out, a.tiny, a.seeds, a.variants, a.sets)
    print(table(a.out, a.seeds, a.variants, a.sets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
