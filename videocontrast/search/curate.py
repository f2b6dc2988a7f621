"""Curate an embedding folder (``videocontrast embed``): near-duplicate groups, outliers, a labelling queue.

Everything works on the folder's rows (one per video, or per clip with ``embed --per-clip``), which are
L2-normalised, so an inner product is a cosine similarity. Each row's ``k`` nearest other rows (:func:`knn_graph`)
come from the folder's FAISS index when there is one, else from the exact chunked search
(:func:`videocontrast.eval.embedding.top_k`): memory stays ``O(N k)``, never an ``N x N`` matrix.

* **Duplicates** (:func:`duplicate_groups`): the connected components of the graph whose edges are neighbour pairs
  with cosine similarity >= a threshold. ``auto`` chooses it by Otsu's method on each row's similarities to its
  :data:`AUTO_NEIGHBOURS` nearest rows (the cut that best separates them into two classes: near copies and the rest); it assumes near copies exist, and says
  what it chose. A group's first video is the member nearest the group's mean; the keep list is every video not in
  a group plus each group's first.
* **Outliers** (:func:`outlier_scores`): ``1 - mean cosine similarity to the k nearest rows``: a row far from all
  its neighbours scores high (the k-NN distance score of Ramaswamy et al. 2000, on cosine distance).
* **Selection** (:func:`select`): a labelling queue of ``budget`` rows. ``diverse``: greedy k-center (farthest
  point first), the core-set selection of Sener & Savarese 2018, starting from the row nearest the mean;
  ``typical``: TypiClust (Hacohen et al. 2022): k-means into ``budget`` clusters, from each the row of highest
  typicality (mean similarity to its k nearest rows), largest clusters first; ``random``: uniform, seeded, to
  compare against.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from ..eval.embedding import top_k
from ..names import CURATE_STRATEGIES as STRATEGIES

NEIGHBOURS = 10  # k of the neighbour graph: duplicates, outlier scores, typicality
# --auto's Otsu threshold reads each row's 3 nearest similarities, not all 10: with 10, most similarities are of
# merely alike videos and the cut falls low enough to chain whole classes. 3 was chosen on fight-detection's source
# groups (pair F1 0.345 vs 0.175 with 10, 0.265 with 1) and then measured on ucf101-mini (docs/curate.md).
AUTO_NEIGHBOURS = 3
STRATEGY_SOURCE = {"diverse": "greedy k-center (core-set, Sener & Savarese 2018), from the row nearest the mean",
                   "typical": f"TypiClust (Hacohen et al. 2022), typicality over {NEIGHBOURS} neighbours",
                   "random": "uniform without replacement, seeded"}
_CHUNK = 4096


def _bar(total: int, desc: str, progress: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="rows", disable=not progress, leave=False)


def knn_graph(emb: np.ndarray, k: int = NEIGHBOURS, index=None, progress: bool = False
              ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest other rows: ``(sims (N, k) float32, rows (N, k) int64)``, most similar first.

    ``k`` is clipped to ``N - 1``. With a FAISS ``index`` over ``emb`` it searches ``k + 1`` and drops the row
    itself (or, where an approximate index missed it, the last hit); rows an index could not fill are ``-1`` with
    similarity ``-inf``.
    """
    emb = np.asarray(emb, np.float32)
    n = len(emb)
    if n < 2:
        raise ValueError(f"the collection holds {n} row(s); curating needs at least 2")
    k = min(k, n - 1)
    sims, rows = np.empty((n, k), np.float32), np.empty((n, k), np.int64)
    with _bar(n, "neighbours", progress) as bar:
        for s in range(0, n, _CHUNK):
            part = slice(s, min(n, s + _CHUNK))
            ids = np.arange(part.start, part.stop)
            if index is None:
                sims[part], rows[part] = top_k(emb[part], emb, k, exclude=ids)
            else:
                from .index import search_index

                ss, rr = search_index(index, emb[part], k + 1)
                keep = rr != ids[:, None]
                keep[keep.all(axis=1), -1] = False  # self not found: drop the weakest hit instead
                sims[part], rows[part] = ss[keep].reshape(-1, k), rr[keep].reshape(-1, k)
            bar.update(part.stop - part.start)
    return sims, rows


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The threshold that maximises the between-class variance of ``values`` split in two (Otsu 1979), on a
    ``bins``-bin histogram; the edge between the two bins it separates."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0 or v.min() == v.max():
        raise ValueError("--auto needs neighbour similarities that differ; give --threshold")
    hist, edges = np.histogram(v, bins=bins)
    p = hist / hist.sum()
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)[:-1]
    mu = np.cumsum(p * centres)
    m0 = mu[:-1] / np.maximum(w0, 1e-12)
    m1 = (mu[-1] - mu[:-1]) / np.maximum(1 - w0, 1e-12)
    between = w0 * (1 - w0) * (m0 - m1) ** 2
    return float(edges[1:-1][int(np.argmax(between))])


@dataclass
class Duplicates:
    """Near-duplicate groups: ``groups`` (row arrays, each with its first video first, largest group first),
    ``similarity`` (each grouped row's cosine similarity to its group's first), the threshold and how it was
    chosen, and ``keep`` (rows to keep: not in a group, or first of one, in row order)."""

    groups: list[np.ndarray]
    similarity: dict[int, float]
    threshold: float
    chosen_by: str
    keep: np.ndarray
    pairs_above: int = 0
    neighbours: int = NEIGHBOURS
    graph: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)


def check_threshold(t: float) -> float:
    if not np.isfinite(t) or not -1.0 <= t <= 1.0:
        raise ValueError(f"--threshold {t} is not a cosine similarity: give a value in [-1, 1] (or --auto)")
    return float(t)


def duplicate_groups(emb: np.ndarray, threshold: float | None = None, k: int = NEIGHBOURS, index=None,
                     progress: bool = False, graph: tuple[np.ndarray, np.ndarray] | None = None) -> Duplicates:
    """Near-duplicate groups of ``emb``'s rows (module docstring); ``threshold`` None: Otsu's (``--auto``)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    emb = np.asarray(emb, np.float32)
    sims, rows = graph if graph is not None else knn_graph(emb, k, index, progress)
    if threshold is None:
        near = sims[:, :AUTO_NEIGHBOURS]
        threshold, chosen_by = otsu_threshold(near), (f"auto (Otsu on the similarities of each row to its "
                                                      f"{near.shape[1]} nearest, {near.size} in all)")
    else:
        threshold, chosen_by = check_threshold(threshold), "--threshold"
    src, col = np.nonzero((sims >= threshold) & (rows >= 0))
    dst = rows[src, col]
    n = len(emb)
    adj = coo_matrix((np.ones(len(src), np.int8), (src, dst)), shape=(n, n))
    _, label = connected_components(adj, directed=True, connection="weak")
    sizes = np.bincount(label)
    groups, similarity = [], {}
    for g in np.flatnonzero(sizes > 1):
        members = np.flatnonzero(label == g)
        centre = emb[members].mean(axis=0)
        first = members[int(np.argmax(emb[members] @ centre))]
        others = members[members != first]
        sim = emb[others] @ emb[first]
        order = np.concatenate([[first], others[np.argsort(-sim, kind="stable")]])  # most similar first
        groups.append(order)
        similarity.update({int(r): float(emb[r] @ emb[first]) for r in order})
    groups.sort(key=lambda g: (-len(g), int(g[0])))
    dropped = np.zeros(n, bool)
    for g in groups:
        dropped[g[1:]] = True
    return Duplicates(groups, similarity, float(threshold), chosen_by, np.flatnonzero(~dropped), int(len(src)),
                      int(sims.shape[1]), (sims, rows))


def outlier_scores(sims: np.ndarray) -> np.ndarray:
    """``1 - mean similarity to the k nearest rows`` per row, from :func:`knn_graph`'s similarities (unfilled
    neighbours, ``-inf``, are left out)."""
    s = np.where(np.isfinite(sims), sims, np.nan)
    return (1.0 - np.nanmean(s, axis=1)).astype(np.float32)


def check_budget(budget: int, n: int) -> int:
    if budget < 1 or budget > n:
        raise ValueError(f"--budget {budget}: give a number of videos from 1 to the collection's {n}")
    return int(budget)


def k_center(emb: np.ndarray, budget: int, progress: bool = False) -> np.ndarray:
    """Greedy k-center: the row nearest the mean, then each time the row farthest (in cosine distance) from all
    rows chosen so far. ``O(N D)`` memory and work per pick."""
    emb = np.asarray(emb, np.float32)
    first = int(np.argmax(emb @ emb.mean(axis=0)))
    chosen = [first]
    nearest = emb @ emb[first]  # each row's largest similarity to a chosen row
    with tqdm(total=budget, desc="diverse", unit="picks", disable=not progress, leave=False) as bar:
        bar.update(1)
        while len(chosen) < budget:
            nxt = int(np.argmin(nearest))
            chosen.append(nxt)
            np.maximum(nearest, emb @ emb[nxt], out=nearest)
            nearest[nxt] = np.inf  # chosen rows are never picked again, even if they tie
            bar.update(1)
    return np.asarray(chosen, np.int64)


def typical(emb: np.ndarray, budget: int, typicality: np.ndarray, seed: int = 0, progress: bool = False
            ) -> np.ndarray:
    """TypiClust: ``budget`` k-means clusters, from each the row of highest ``typicality``, largest clusters
    first (ties: the lower row)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    n = len(emb)
    if budget == n:
        return np.argsort(-typicality, kind="stable")
    if progress:  # k-means has no progress of its own to show: say what runs (seconds at 10^5 rows)
        print(f"typical: k-means of {n:,} rows into {budget:,} clusters ...", file=sys.stderr, flush=True)
    km = (KMeans(budget, n_init=1, random_state=seed) if n <= 20000 else
          MiniBatchKMeans(budget, n_init=1, random_state=seed, batch_size=4096))
    label = km.fit_predict(np.asarray(emb, np.float32))
    picks = []
    for c in range(budget):
        members = np.flatnonzero(label == c)
        if len(members):
            picks.append((-len(members), members[int(np.argmax(typicality[members]))]))
    queue = [r for _, r in sorted(picks)]
    if len(queue) < budget:  # empty clusters: fill with the most typical rows not yet queued
        taken = set(queue)
        rest = [r for r in np.argsort(-typicality, kind="stable") if r not in taken]
        queue += rest[: budget - len(queue)]
    return np.asarray(queue, np.int64)


def select(emb: np.ndarray, budget: int, strategy: str = "diverse", seed: int = 0,
           sims: np.ndarray | None = None, progress: bool = False) -> np.ndarray:
    """A labelling queue: ``budget`` distinct rows of ``emb`` in the order to label them (module docstring).
    ``sims``: :func:`knn_graph`'s similarities, for ``typical`` (computed when not given)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    budget = check_budget(budget, len(emb))
    if strategy == "random":
        return np.random.default_rng(seed).choice(len(emb), budget, replace=False).astype(np.int64)
    if strategy == "diverse":
        return k_center(emb, budget, progress)
    if sims is None:
        sims, _ = knn_graph(emb, progress=progress)
    return typical(emb, budget, 1.0 - outlier_scores(sims), seed, progress)


# ----------------------------------------------------------------------------- the curate commands

def _label(col, row: int) -> str:
    labels = col.table.get("label")
    return "" if labels is None else str(labels[row])


def _list_line(col, row: int) -> str:
    """A line of a list file (``path [label]``, what ``embed --root`` and ``--labelled`` read); a label with a
    space in it would read as part of the path, so it is left out."""
    label = _label(col, row)
    path = str(col.table["path"][row])
    return f"{path} {label}" if label and not any(c.isspace() for c in label) else path


def _write_csv(path, header: list[str], rows: list[list]) -> None:
    import csv
    import io

    from ..fileio import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _write_lines(path, lines: list[str]) -> None:
    from ..fileio import atomic_write_text

    atomic_write_text(path, "".join(line + "\n" for line in lines))


def _page(out, col, entries: list[tuple[int, str, list[tuple[int, float]]]], title: str, caption: str,
          name: str) -> str:
    """``out/<name>.html`` with frames of each entry (a row, its caption, rows shown beside it with their
    similarity), through the retrieval page's writer; returns the file name."""
    import shutil
    import tempfile
    from pathlib import Path

    from ..eval.report import retrieval_report

    queries = [{"path": str(col.table["path"][r]), "label_name": _label(col, r), "title": head,
                "neighbours": [{"path": str(col.table["path"][n]), "label_name": _label(col, n) or "", "sim": s,
                                "hit": None} for n, s in beside]} for r, head, beside in entries]
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out))
    try:
        page = retrieval_report(work, queries, title=title, image_name=f"{name}.png", caption=caption)
        (Path(out) / "img").mkdir(exist_ok=True)
        (work / "img" / f"{name}.png").replace(Path(out) / "img" / f"{name}.png")
        page.replace(Path(out) / f"{name}.html")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return f"{name}.html"


def _open(folder, out):
    from pathlib import Path

    from ..engine.run import check_writable
    from .query import load_collection

    col = load_collection(folder)
    check_writable(Path(out))
    Path(out).mkdir(parents=True, exist_ok=True)
    return col


PAGE_ROWS = 12  # entries drawn on a page (the CSV has them all)


def run_duplicates(folder, out, threshold: float | None = None, k: int = NEIGHBOURS, progress: bool = True,
                   page: bool = True) -> dict:
    """``curate duplicates``: ``out/duplicates.csv`` (group, path, similarity to the group's first, row, label),
    ``out/keep.txt`` (a list file: one video per group plus every video in none), ``out/duplicates.json`` and a
    page of the largest groups. Returns the summary."""
    import json
    from pathlib import Path

    from ..fileio import atomic_write_text

    if threshold is not None:
        check_threshold(threshold)
    col = _open(folder, out)
    dup = duplicate_groups(col.emb, threshold, k, col.index, progress)
    rows = [[g, str(col.table["path"][r]), f"{dup.similarity[int(r)]:.4f}", int(r), _label(col, r)]
            for g, members in enumerate(dup.groups, 1) for r in members]
    _write_csv(Path(out) / "duplicates.csv", ["group", "path", "similarity", "row", "label"], rows)
    _write_lines(Path(out) / "keep.txt", [_list_line(col, r) for r in dup.keep])
    summary = {"rows": len(col), "threshold": round(dup.threshold, 6), "chosen_by": dup.chosen_by,
               "neighbours": dup.neighbours, "search": "faiss index" if col.index is not None else "exact",
               "groups": len(dup.groups), "rows_in_groups": int(sum(len(g) for g in dup.groups)),
               "keep": len(dup.keep), "dropped": len(col) - len(dup.keep)}
    if page and dup.groups:
        entries = [(int(g[0]), f"group {i} ({len(g)})", [(int(r), dup.similarity[int(r)]) for r in g[1:6]])
                   for i, g in enumerate(dup.groups[:PAGE_ROWS], 1)]
        summary["page"] = _page(out, col, entries, "Near-duplicate groups",
                                "Each row is a group: its first video (left, kept) and the others, most similar "
                                "first, with their cosine similarity to it.", "duplicates")
    atomic_write_text(Path(out) / "duplicates.json", json.dumps(summary, indent=2) + "\n")
    return summary


def run_outliers(folder, out, top: int = 20, k: int = NEIGHBOURS, progress: bool = True, page: bool = True) -> dict:
    """``curate outliers``: ``out/outliers.csv`` (every row, most outlying first: rank, path, score, row, label),
    ``out/outliers.json`` and a page of the top ``top`` with their nearest rows."""
    import json
    from pathlib import Path

    from ..fileio import atomic_write_text

    if top < 1:
        raise ValueError(f"--top {top}: must be at least 1")
    col = _open(folder, out)
    sims, nbrs = knn_graph(col.emb, k, col.index, progress)
    score = outlier_scores(sims)
    order = np.argsort(-score, kind="stable")
    _write_csv(Path(out) / "outliers.csv", ["rank", "path", "score", "row", "label"],
               [[i, str(col.table["path"][r]), f"{score[r]:.4f}", int(r), _label(col, r)]
                for i, r in enumerate(order, 1)])
    summary = {"rows": len(col), "score": f"1 - mean cosine similarity to the {sims.shape[1]} nearest rows",
               "neighbours": int(sims.shape[1]), "search": "faiss index" if col.index is not None else "exact",
               "top": [str(col.table["path"][r]) for r in order[:top]]}
    if page:
        entries = [(int(r), f"#{i} score {score[r]:.3f}", [(int(n), float(s)) for n, s in zip(nbrs[r][:3], sims[r])
                                                           if n >= 0]) for i, r in enumerate(order[:top], 1)]
        summary["page"] = _page(out, col, entries, "Outliers",
                                "Each row is an outlier (left; score = 1 - mean cosine similarity to its "
                                f"{sims.shape[1]} nearest videos), then its 3 nearest videos.", "outliers")
    atomic_write_text(Path(out) / "outliers.json", json.dumps(summary, indent=2) + "\n")
    return summary


def run_select(folder, out, budget: int, strategy: str = "diverse", seed: int = 0, progress: bool = True) -> dict:
    """``curate select``: ``out/queue.txt`` (a list file, the order to label in: ``--labelled``, ``embed
    --root``), ``out/queue.csv`` (rank, path, row, label) and ``out/queue.json``."""
    import json
    from pathlib import Path

    from ..fileio import atomic_write_text

    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    col = _open(folder, out)
    check_budget(budget, len(col))
    queue = select(col.emb, budget, strategy, seed, progress=progress)
    _write_lines(Path(out) / "queue.txt", [_list_line(col, r) for r in queue])
    _write_csv(Path(out) / "queue.csv", ["rank", "path", "row", "label"],
               [[i, str(col.table["path"][r]), int(r), _label(col, r)] for i, r in enumerate(queue, 1)])
    summary = {"rows": len(col), "budget": int(budget), "strategy": strategy, "seed": int(seed),
               "source": STRATEGY_SOURCE[strategy],
               "queue": str(Path(out) / "queue.txt")}
    atomic_write_text(Path(out) / "queue.json", json.dumps(summary, indent=2) + "\n")
    return summary
