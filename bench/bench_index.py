"""Exact vs approximate FAISS search at the encoder's dimension: build time, memory, queries/s, recall@10.

Two kinds of vectors, all L2-normalised, D = 512 (r3d_18's feature size):

- ``random``: i.i.d. Gaussian directions, the worst case for any index (no structure to exploit);
- ``features``: feature-like: 1 cluster per ~1000 vectors (video collections hold near-duplicates, shots of one
  scene, one action), each cluster an anisotropic Gaussian (clusters overlap: centres spread 1.5x the within-cluster spread) whose per-axis spread decays as a power law
  (CNN features have a fast-decaying spectrum), around a shared mean direction (features after a ReLU are far
  from zero-mean), then normalised.

For every size the exact index (``IndexFlatIP``) and the approximate ones are built and queried side by side
(same queries, one after the other, the median of ``--repeats`` runs) so a machine shared with other jobs
slows both alike; the speedup column is the ratio. Queries are fresh draws from the same distribution, not
rows of the database. Memory is the size of the serialised index (what it holds in RAM).

Usage::

    PYTHONPATH=. python bench/bench_index.py                          # 10^4 and 10^5
    PYTHONPATH=. python bench/bench_index.py --sizes 1000000 --data features --queries 100 --repeats 1
    PYTHONPATH=. python bench/bench_index.py --sizes 1000000 --data random --nprobe 64 256 --queries 100 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import faiss
import numpy as np

from videocontrast.search.index import build_index, search_index


def vectors(kind: str, n: int, d: int, seed: int) -> np.ndarray:
    """``(n, d)`` float32 unit vectors of ``kind`` (random | features); see the module docstring."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        x = rng.standard_normal((n, d), dtype=np.float32)
    else:
        crng = np.random.default_rng(12345)  # clusters shared by database and queries
        n_clusters = max(10, n // 1000)
        spectrum = (np.arange(1, d + 1, dtype=np.float32) ** -0.7)  # per-axis spread, power-law decay
        basis = np.linalg.qr(crng.standard_normal((d, d)))[0].astype(np.float32)
        centres = crng.standard_normal((n_clusters, d), dtype=np.float32) * spectrum * 1.5 + 1.5 * spectrum
        x = np.empty((n, d), np.float32)
        for s in range(0, n, 100_000):  # in chunks: 10^6 x 512 temporaries would double the memory
            m = min(100_000, n - s)
            c = rng.integers(0, n_clusters, m)
            x[s:s + m] = (centres[c] + rng.standard_normal((m, d), dtype=np.float32) * spectrum) @ basis
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def index_bytes(index) -> int:
    """What the index holds: the stored codes (+ 8-byte ids in inverted lists) and the coarse centroids."""
    if isinstance(index, faiss.IndexIVF):
        return index.ntotal * (index.code_size + 8) + index.nlist * index.d * 4
    if isinstance(index, faiss.IndexHNSW):
        return index.ntotal * (index.d * 4 + index.hnsw.nb_neighbors(0) * 4)
    return index.ntotal * index.d * 4


def timed_search(index, q: np.ndarray, k: int, repeats: int) -> tuple[float, np.ndarray]:
    times, rows = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, rows = search_index(index, q, k)
        times.append(time.perf_counter() - t0)
    return len(q) / statistics.median(times), rows


def recall_at(rows: np.ndarray, truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(rows, truth)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--data", nargs="+", default=["random", "features"], choices=["random", "features"])
    ap.add_argument("--kinds", nargs="+", default=["ivf"], choices=["ivf", "ivfpq", "hnsw"])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nprobe", type=int, nargs="+", default=None,
                    help="IVF: report these nprobe values (no tuning; default: the tuned one, x2 and x4)")
    ap.add_argument("--threads", type=int, default=0, help="FAISS threads (default: FAISS's own, all cores)")
    args = ap.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    k = 10
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, D={args.dim}, "
          f"{args.queries} queries, k={k}, median of {args.repeats}", flush=True)
    print("| vectors | N | index | parameters | build s | memory MiB | queries/s | speedup vs exact | recall@10 |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    for data in args.data:
        for n in args.sizes:
            x = vectors(data, n, args.dim, seed=0)
            q = vectors(data, args.queries, args.dim, seed=1)
            exact, p = build_index(x, "flat")
            exact_qps, truth = timed_search(exact, q, k, args.repeats)
            print(f"| {data} | {n:,} | flat (exact) | - | {p['build_seconds']:.2f} | "
                  f"{index_bytes(exact) / 2**20:.0f} | {exact_qps:,.0f} | 1.0x | 1.000 |", flush=True)
            for kind in args.kinds:
                fixed = args.nprobe[0] if args.nprobe and kind != "hnsw" else None
                index, p = build_index(x, kind, nprobe=fixed)
                # side by side: the exact index again right before, so both see the same machine load
                exact_again, _ = timed_search(exact, q, k, args.repeats)
                # the tuned nprobe (or --nprobe), then larger ones: the recall / speed trade-off
                knob = "ef_search" if kind == "hnsw" else "nprobe"
                values = (args.nprobe if fixed else [p[knob] * m for m in (1, 2, 4)]) if kind != "hnsw" else [p[knob]]
                if kind != "hnsw":  # nprobe past nlist is nlist again
                    values = sorted({min(v, index.nlist) for v in values})
                for value in values:
                    if kind == "hnsw":
                        index.hnsw.efSearch = value
                    else:
                        index.nprobe = value
                    qps, rows = timed_search(index, q, k, args.repeats)
                    knobs = ", ".join(f"{key}={p[key]}" for key in ("nlist", "pq_m", "hnsw_m") if key in p)
                    knobs += f", {knob}={value}" + (" (tuned)" if value == p.get(knob) and not fixed else "")
                    print(f"| {data} | {n:,} | {kind} | {knobs} | {p['build_seconds']:.2f} | "
                          f"{index_bytes(index) / 2**20:.0f} | {qps:,.0f} | {qps / exact_again:.1f}x | "
                          f"{recall_at(rows, truth, k):.3f} |", flush=True)
                del index
            del exact, x


if __name__ == "__main__":
    main()
