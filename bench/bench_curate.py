"""``curate`` at scale: duplicates, outliers and selection on 10^4-10^5 feature-like vectors, time and memory.

The vectors are the index bench's ``features`` kind (``bench_index.vectors``: clustered, power-law spectrum,
L2-normalised, D = 512), the shape of an embedding folder that ``videocontrast embed`` writes. For each size:

- the neighbour graph (k = 10 nearest rows of every row) exact (chunked ``top_k``) and through an IVF index
  (``build_index(kind="ivf")``, build time included), with the IVF graph's recall@10 against the exact one;
- ``duplicate_groups`` (--auto) and ``outlier_scores`` on that graph;
- ``select`` with each strategy at the given budget.

Memory is the peak of what NumPy allocated in the step (``tracemalloc``, which NumPy reports to), beside the
``N x N`` float32 matrix the step never builds. Times are wall seconds on this machine, one run each: compare
rows of one run, not runs of different hours.

Usage::

    PYTHONPATH=. python bench/bench_curate.py                     # 10^4 and 10^5, budget 1000
    PYTHONPATH=. python bench/bench_curate.py --sizes 20000 --budget 200 --exact-up-to 20000
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from typing import Any, Callable

import numpy as np

from bench_index import vectors
from videocontrast.search.curate import NEIGHBOURS, duplicate_groups, knn_graph, outlier_scores, select
from videocontrast.search.index import build_index


def measured(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``fn()``, its wall seconds and the peak MiB it allocated."""
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, seconds, peak


def bench(n: int, budget: int, exact_up_to: int, seed: int) -> list[dict[str, Any]]:
    x = vectors("features", n, 512, seed)
    rows: list[dict[str, Any]] = []

    def row(step: str, seconds: float, peak: float, **extra: Any) -> None:
        rows.append({"rows": n, "step": step, "seconds": round(seconds, 2), "peak_MiB": round(peak, 1),
                     "n_x_n_MiB": round(n * n * 4 / 2**20), **extra})
        print(json.dumps(rows[-1]), flush=True)

    exact = None
    if n <= exact_up_to:
        exact, s, p = measured(lambda: knn_graph(x, NEIGHBOURS, progress=True))
        row("neighbour graph, exact", s, p)
    index, s_build, p_build = measured(lambda: build_index(x, "ivf", seed=seed)[0])
    graph, s, p = measured(lambda: knn_graph(x, NEIGHBOURS, index=index, progress=True))
    extra = {}
    if exact is not None:
        extra["recall@10_vs_exact"] = round(float(np.mean([len(set(a) & set(b)) / NEIGHBOURS
                                                           for a, b in zip(graph[1], exact[1])])), 4)
    row("neighbour graph, IVF (build + search)", s_build + s, max(p_build, p), **extra)
    dup, s, p = measured(lambda: duplicate_groups(x, None, graph=graph))
    row("duplicates --auto (on the graph)", s, p, threshold=round(dup.threshold, 4), groups=len(dup.groups),
        keep=len(dup.keep))
    _, s, p = measured(lambda: outlier_scores(graph[0]))
    row("outlier scores (on the graph)", s, p)
    for strategy in ("diverse", "typical", "random"):
        _, s, p = measured(lambda: select(x, budget, strategy, seed, sims=graph[0], progress=True))
        row(f"select --strategy {strategy} --budget {budget}", s, p)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--exact-up-to", type=int, default=100_000, help="largest size to build the exact graph for")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    rows = [r for n in args.sizes for r in bench(n, args.budget, args.exact_up_to, args.seed)]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
