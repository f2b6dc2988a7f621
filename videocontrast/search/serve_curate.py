"""What ``serve``'s Duplicates, Outliers and Queue views show: :mod:`.curate` on the loaded collection.

:class:`Curation` computes each row's nearest rows once (:func:`~.curate.knn_graph`: the folder's FAISS index or
the exact chunked search, ``O(N k)`` memory, never ``N x N``) and reuses that graph for every duplicate threshold,
the outlier scores and the ``typical`` queue; each answer is cached per parameter set (the last few). A queue can
also come from a file (``serve --queue FILE``, :func:`read_queue`): the ``queue.txt`` or ``queue.csv`` that
``curate select`` writes, or any list file, mapped to the collection's rows in the file's order.

Answers are plain dicts (the JSON the routes send); rows are :meth:`Library.item` dicts (the same preview and
media URLs as the browse grid) with what the view adds: ``similarity``, ``score``, ``rank``.
"""

from __future__ import annotations

import csv
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..names import CURATE_STRATEGIES
from .curate import NEIGHBOURS, STRATEGY_SOURCE, duplicate_groups, knn_graph, outlier_scores, select

CACHED = 8  # answers kept per view (each a parameter set)
MISSING_SHOWN = 5  # paths a queue answer names of those not in the collection



# ----------------------------------------------------------------------------------------- a queue file

@dataclass
class QueueFile:
    """A queue read from a file: ``rows`` (the collection's rows, in the file's order), the ``line`` each came
    from, and ``missing`` (``line n: path`` of each entry naming no row of the collection)."""

    file: str
    rows: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    entries: int = 0


def read_queue(path: str | os.PathLike) -> list[tuple[int, str, int | None]]:
    """``(line number, path, row or None)`` of a queue file: a ``queue.csv`` of ``curate select`` (a header with a
    ``path`` column; its ``row`` column, where there is one, picks among clips of one video) or a list file
    (``path [label]`` a line, :func:`~videocontrast.data.discover.read_list_file`). Paths as written.

    Raises:
        ValueError: one line naming the file: it cannot be read, or it lists no video.
    """
    from ..data.discover import read_list_file

    where = f"--queue '{path}'"
    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
            head = f.readline()
            fields = next(csv.reader([head]), [])
            if "path" in [c.strip().lower() for c in fields] and (str(path).lower().endswith(".csv") or "," in head):
                f.seek(0)
                out = []
                for n, rec in enumerate(csv.DictReader(f), 2):
                    rec = {(k or "").strip().lower(): (v or "").strip() for k, v in rec.items()}
                    if rec.get("path"):
                        row = rec.get("row", "")
                        out.append((n, rec["path"], int(row) if row.isdigit() else None))
            else:
                out = [(n, p, None) for n, p, _ in read_list_file(path)]
    except OSError as e:
        raise ValueError(f"{where} cannot be read ({e.strerror or e})") from None
    except (csv.Error, UnicodeError) as e:
        raise ValueError(f"{where} is not a list file or queue.csv ({e})") from None
    if not out:
        raise ValueError(f"{where} lists no video (a path a line, as `videocontrast curate select` writes "
                         "queue.txt)")
    return out


def map_queue(path: str | os.PathLike, real_paths: list[str]) -> QueueFile:
    """The queue file ``path`` (:func:`read_queue`) as rows of a collection whose rows have ``real_paths``:
    relative paths resolve against the file's folder; a video with several rows (``embed --per-clip``) gives
    the row a CSV's ``row`` column names, else its rows in turn. Entries naming no row are counted, not fatal."""
    by_real: dict[str, list[int]] = {}
    for i, p in enumerate(real_paths):
        by_real.setdefault(p, []).append(i)
    base = Path(path).parent
    q = QueueFile(str(path))
    used: set[int] = set()
    for n, raw, row in read_queue(path):
        q.entries += 1
        p = Path(raw).expanduser()
        rows = by_real.get(os.path.realpath(p if p.is_absolute() else base / p), [])
        if not rows:
            q.missing.append(f"line {n}: {raw}")
            continue
        pick = row if row in rows else next((r for r in rows if r not in used), rows[0])
        used.add(pick)
        q.rows.append(pick)
        q.lines.append(n)
    return q


# ----------------------------------------------------------------------------------------- the views

class Curation:
    """Duplicates, outliers and queues of a :class:`~.query.Collection`, each computed on first request from
    one shared neighbour graph. ``item(row)``: a row as the page shows it; ``queue``: a :class:`QueueFile`."""

    def __init__(self, col, item: Callable[[int], dict[str, Any]], queue: QueueFile | None = None,
                 k: int = NEIGHBOURS) -> None:
        self.col, self.item, self.queue, self.k = col, item, queue, k
        self._graph: tuple[np.ndarray, np.ndarray] | None = None
        self._scores: tuple[np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()  # one computation at a time: a second request waits for, then reuses, it
        self._dups: OrderedDict = OrderedDict()
        self._queues: OrderedDict = OrderedDict()

    @property
    def search(self) -> str:
        return "faiss index" if self.col.index is not None else "exact"

    def graph(self) -> tuple[np.ndarray, np.ndarray]:
        """``(sims, rows)`` of each row's ``k`` nearest other rows, computed once (ValueError under 2 rows)."""
        with self._lock:
            if self._graph is None:
                self._graph = knn_graph(self.col.emb, self.k, self.col.index)
            return self._graph

    def _cached(self, cache: OrderedDict, key, make: Callable[[], Any]):
        with self._lock:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
        value = make()
        with self._lock:
            cache[key] = value
            while len(cache) > CACHED:
                cache.popitem(last=False)
        return value

    def _row(self, row: int, **extra) -> dict[str, Any]:
        return {**self.item(int(row)), **extra}

    # -- duplicates -------------------------------------------------------------------------------------
    def duplicates(self, threshold: float | None, offset: int = 0, limit: int = 50) -> dict[str, Any]:
        """Near-duplicate groups at ``threshold`` (None: Otsu's), largest first, ``limit`` groups from
        ``offset``; each group's rows first-kept first, with their similarity to it."""
        graph = self.graph()
        dup = self._cached(self._dups, threshold, lambda: duplicate_groups(self.col.emb, threshold, graph=graph))
        shown = dup.groups[offset: offset + limit]
        groups = [{"group": i, "size": len(g),
                   "rows": [self._row(r, sim=round(dup.similarity[int(r)], 4),
                                      similarity=round(dup.similarity[int(r)], 6)) for r in g]}
                  for i, g in enumerate(shown, offset + 1)]
        return {"rows": len(self.col), "threshold": round(dup.threshold, 6),
                "chosen_by": dup.chosen_by if threshold is None else "the threshold parameter",
                "neighbours": dup.neighbours, "search": self.search,
                "similarity": "cosine similarity to the group's first row (the one a keep list keeps)",
                "count": len(dup.groups), "rows_in_groups": int(sum(len(g) for g in dup.groups)),
                "keep": len(dup.keep), "offset": offset, "groups": groups}

    # -- outliers ---------------------------------------------------------------------------------------
    def outliers(self, top: int = 20, offset: int = 0) -> dict[str, Any]:
        """Rows most outlying first, ``top`` of them from ``offset``, with their score."""
        sims, _ = self.graph()
        with self._lock:
            if self._scores is None:
                score = outlier_scores(sims)
                self._scores = score, np.argsort(-score, kind="stable")
            score, order = self._scores
        k = int(sims.shape[1])
        items = [self._row(r, rank=i, score=round(float(score[r]), 6))
                 for i, r in enumerate(order[offset: offset + top], offset + 1)]
        return {"rows": len(self.col), "count": len(self.col), "neighbours": k, "search": self.search,
                "score": f"1 - mean cosine similarity to the {k} nearest rows", "offset": offset, "items": items}

    # -- the labelling queue ----------------------------------------------------------------------------
    def queue_from_file(self, offset: int = 0, limit: int = 500) -> dict[str, Any]:
        q = self.queue
        items = [self._row(r, rank=i, line=n) for i, (r, n) in
                 enumerate(zip(q.rows[offset: offset + limit], q.lines[offset: offset + limit]), offset + 1)]
        return {"source": "file", "file": q.file, "entries": q.entries, "count": len(q.rows),
                "missing": len(q.missing), "missing_first": q.missing[:MISSING_SHOWN], "offset": offset,
                "items": items}

    def computed_queue(self, budget: int, strategy: str, seed: int, offset: int = 0, limit: int = 500
                       ) -> dict[str, Any]:
        """``curate select``'s queue of ``budget`` rows by ``strategy`` (one of :data:`CURATE_STRATEGIES`)."""
        if strategy not in CURATE_STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(CURATE_STRATEGIES)}, got {strategy[:40]!r}")

        def make() -> np.ndarray:
            sims = self.graph()[0] if strategy == "typical" else None
            return select(self.col.emb, budget, strategy, seed, sims=sims)

        rows = self._cached(self._queues, (budget, strategy, seed), make)
        items = [self._row(r, rank=i) for i, r in enumerate(rows[offset: offset + limit], offset + 1)]
        return {"source": "computed", "strategy": strategy, "budget": budget, "seed": seed,
                "how": STRATEGY_SOURCE[strategy], "count": len(rows), "missing": 0, "offset": offset,
                "items": items}
