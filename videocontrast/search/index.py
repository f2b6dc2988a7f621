"""A FAISS nearest-neighbour index over L2-normalised embeddings (inner product = cosine similarity).

Exact search (``IndexFlatIP``) up to :data:`FLAT_MAX` vectors; above it an inverted file (``IndexIVFFlat``,
optionally ``IndexIVFPQ`` or ``IndexHNSWFlat``) whose coarse quantiser is trained by k-means on a sample and
whose ``nprobe`` is tuned at build time: the smallest power of two whose recall@10 against exact search on
held-in queries reaches ``target_recall`` (Jegou et al., "Product quantization for nearest neighbor search",
TPAMI 2011; FAISS: Douze et al. 2024). The choice, its parameters and the measured recall are written beside the
index as JSON (``index.json``); the index itself is FAISS's own binary format (``index.faiss``), never a pickle.

faiss is an optional dependency (``pip install videocontrast[search]``); it is imported inside the functions.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_write_bytes, atomic_write_text

# Up to this many vectors search is exact: below it an IVF index saves little time and costs recall. Chosen from
# bench/bench_index.py on a 2-core machine (docs/search.md, "At scale"): at 10^4 exact search answers
# thousands of queries/s already, at 10^5 IVF is ~10x faster at recall@10 >= 0.95 on feature-like vectors.
FLAT_MAX = 50_000
INDEX_KINDS = ("auto", "flat", "ivf", "ivfpq", "hnsw")
INDEX_FILE, PARAMS_FILE = "index.faiss", "index.json"


def _faiss():
    try:
        import faiss
    except ImportError:
        raise ImportError("the FAISS index needs faiss: pip install 'videocontrast[search]' (or faiss-cpu)") from None
    return faiss


def default_nlist(n: int) -> int:
    """Inverted lists for ``n`` vectors: ~sqrt(n) rounded to a power of two (the low end of FAISS's 1-16 sqrt(n)
    guideline: k-means on 2 cores stays in seconds), at most n/39 so k-means has the 39 points per centroid it
    asks for."""
    want = np.sqrt(max(n, 1))
    nlist = int(2 ** np.round(np.log2(want)))
    return int(max(1, min(nlist, n // 39)))


def build_index(x: np.ndarray, kind: str = "auto", nlist: int | None = None, nprobe: int | None = None,
                pq_m: int = 64, hnsw_m: int = 32, train_size: int | None = None, target_recall: float = 0.97,
                seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """A FAISS index over the rows of ``x`` and the parameters that describe it.

    Args:
        x: ``(N, D)`` embeddings, L2-normalised (float16 or float32; FAISS gets float32).
        kind: ``auto`` (``flat`` up to :data:`FLAT_MAX` vectors, else ``ivf``, or ``flat`` again when IVF needs
            more than 1/8 of its lists to reach ``target_recall``), ``flat``, ``ivf``, ``ivfpq`` or ``hnsw``.
        nlist: inverted lists (default :func:`default_nlist`); nprobe: lists visited per query (default: tuned
            to ``target_recall``); pq_m: PQ sub-quantisers (``ivfpq``); hnsw_m: graph degree (``hnsw``).
        train_size: vectors the quantiser is trained on (default ``min(N, 64 * nlist)``), drawn with ``seed``.
        target_recall: recall@10 the tuning aims at, measured on rows of ``x`` (their own match left out). Fresh
            queries score about 0.01-0.02 lower (bench/bench_index.py at 10^6: 0.95 tuned -> 0.942), hence 0.97 by
            default for >= 0.95 in use.

    Returns:
        ``(index, params)``; ``params`` is JSON-able: kind, dim, count, the parameters and, for approximate
        kinds, the recall@10 measured at the chosen ``nprobe``/``efSearch``.
    """
    faiss = _faiss()
    if kind not in INDEX_KINDS:
        raise ValueError(f"index kind must be one of {', '.join(INDEX_KINDS)}, got {kind!r}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"embeddings must be a non-empty (N, D) array, got shape {x.shape}")
    n, d = x.shape
    auto = kind == "auto"
    if auto:
        kind = "flat" if n <= FLAT_MAX else "ivf"
    t0 = time.perf_counter()
    params: dict[str, Any] = {"kind": kind, "dim": d, "count": n, "metric": "inner_product"}
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
        index.add(x)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.add(x)
        params.update(hnsw_m=hnsw_m, ef_construction=80)
    else:
        nlist = int(nlist or default_nlist(n))
        quantizer = faiss.IndexFlatIP(d)
        if kind == "ivf":
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            if d % pq_m:
                raise ValueError(f"pq_m={pq_m} must divide the embedding dimension {d}")
            index = faiss.IndexIVFPQ(quantizer, d, nlist, pq_m, 8, faiss.METRIC_INNER_PRODUCT)
            params["pq_m"] = pq_m
        train_size = int(min(n, train_size or 64 * nlist))
        rng = np.random.default_rng(seed)
        sample = x if train_size >= n else x[np.sort(rng.choice(n, train_size, replace=False))]
        index.cp.seed = seed
        index.train(sample)
        index.add(x)
        params.update(nlist=nlist, train_size=train_size, seed=seed)
    params["build_seconds"] = round(time.perf_counter() - t0, 3)
    if kind != "flat":
        knob, value, recall = _tune(index, x, kind, nprobe, target_recall, seed)
        params.update({knob: value, "target_recall": target_recall, "tuned_recall_at_10": recall})
        if auto and knob == "nprobe" and value > params["nlist"] // 8:
            # No structure to exploit (e.g. near-uniform directions): visiting this many lists is slower than
            # one exact matrix product (bench/bench_index.py, `random` rows), so exact search it is.
            flat, fallback = build_index(x, "flat")
            fallback["fallback"] = (f"ivf needed nprobe={value} of nlist={params['nlist']} for recall@10 "
                                    f"{recall:.3f} >= {target_recall}: exact search is faster")
            return flat, fallback
    return index, params


def _set_knob(index, kind: str, value: int) -> None:
    if kind == "hnsw":
        index.hnsw.efSearch = int(value)
    else:
        index.nprobe = int(value)


def _tune(index, x: np.ndarray, kind: str, fixed: int | None, target: float, seed: int,
          queries: int = 256, k: int = 10) -> tuple[str, int, float]:
    """The smallest nprobe (IVF) or efSearch (HNSW), doubling, whose recall@k on ``queries`` rows of ``x`` (each
    row's own match left out of both answers) reaches ``target``; ``fixed`` skips the search. The exact answers
    come from :func:`videocontrast.eval.embedding.top_k`, the search every exact ranking uses."""
    # Imported here: `videocontrast --help` reads INDEX_KINDS from this module, and the videocontrast.eval
    # package loads torch.
    from ..eval.embedding import top_k

    knob = "ef_search" if kind == "hnsw" else "nprobe"
    rng = np.random.default_rng(seed + 1)
    rows = rng.choice(len(x), min(queries, len(x)), replace=False)
    q = x[rows]
    _, truth = top_k(q, x, k, exclude=rows)
    truth = [set(t.tolist()) for t in truth]

    def recall(value: int) -> float:
        _set_knob(index, kind, value)
        _, got = index.search(q, k + 1)
        hits = [len(t & set(g[g != r][:k].tolist())) / max(len(t), 1) for t, g, r in zip(truth, got, rows)]
        return float(np.mean(hits))

    if fixed is not None:
        return knob, int(fixed), recall(fixed)
    top = index.nlist if kind != "hnsw" else 4096
    value = 1 if kind != "hnsw" else 16
    while True:
        r = recall(value)
        if r >= target or value >= top:
            return knob, value, r
        value = min(value * 2, top)


def embeddings_sha1(emb: np.ndarray) -> str:
    """``"sha1:<hex>"`` of an embeddings array as stored (dtype, shape and bytes): what ties an index to the table
    it was built for."""
    emb = np.ascontiguousarray(emb)
    h = hashlib.sha1(f"{emb.dtype.str}{emb.shape}".encode())
    h.update(memoryview(emb).cast("B"))
    return f"sha1:{h.hexdigest()}"


def index_mismatch(params: dict[str, Any], emb: np.ndarray) -> str | None:
    """Why an index with these parameters does not belong to the embeddings ``emb`` (as stored), or None when it
    does: another row count or dimension, or another fingerprint (an index written before the fingerprint was
    recorded is checked on its shape alone)."""
    if params.get("count") != len(emb) or params.get("dim") != (emb.shape[1] if emb.ndim == 2 else None):
        return f"it holds {params.get('count')}x{params.get('dim')} vectors, the table {'x'.join(map(str, emb.shape))}"
    want = params.get("embeddings_sha1")
    if want is not None and want != embeddings_sha1(emb):
        return "it was built for other embeddings (the fingerprint recorded in index.json differs)"
    return None


def remove_index(folder: str | Path) -> None:
    """Delete ``index.faiss`` and ``index.json`` from ``folder`` if there (the index of a table about to change)."""
    for name in (INDEX_FILE, PARAMS_FILE):
        (Path(folder) / name).unlink(missing_ok=True)


def save_index(index, params: dict[str, Any], folder: str | Path) -> Path:
    """``index.faiss`` (FAISS's binary format) and ``index.json`` (the parameters) in ``folder``."""
    faiss = _faiss()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # The parameters first: a kill before the index is in place leaves no index.faiss (exact search), never an
    # index beside the parameters of another.
    atomic_write_text(folder / PARAMS_FILE, json.dumps(params, indent=2) + "\n")
    # serialised in memory and written through fileio (FAISS's write_index takes a name, which could be a link)
    atomic_write_bytes(folder / INDEX_FILE, faiss.serialize_index(index).tobytes())
    return folder / INDEX_FILE


def load_index(folder: str | Path) -> tuple[Any, dict[str, Any]]:
    """The index and parameters :func:`save_index` wrote (one line naming the file when missing or damaged)."""
    faiss = _faiss()
    folder = Path(folder)
    path, side = folder / INDEX_FILE, folder / PARAMS_FILE
    if not path.is_file() or not side.is_file():
        raise FileNotFoundError(f"'{folder}' holds no {INDEX_FILE} + {PARAMS_FILE}; build it with `videocontrast embed`")
    try:
        params = json.loads(side.read_text())
        index = faiss.read_index(str(path))
    except (ValueError, RuntimeError) as e:
        reason = " ".join(str(e).split())[:120]
        raise ValueError(f"index '{path}' is damaged ({reason}); build it again with `videocontrast embed`") from None
    if not isinstance(params, dict):
        raise ValueError(f"'{side}' is damaged (not a JSON object); build the index again with `videocontrast embed`")
    if index.ntotal != params.get("count") or index.d != params.get("dim"):
        raise ValueError(f"index '{path}' holds {index.ntotal}x{index.d} vectors but {side} says "
                         f"{params.get('count')}x{params.get('dim')}; build it again with `videocontrast embed`")
    knob = params.get("nprobe", params.get("ef_search"))
    if knob is not None:
        _set_knob(index, params["kind"], knob)
    return index, params


def search_index(index, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows nearest to each query (inner product), restricted to the rows in ``allowed`` if given.

    Shape:
        queries ``(M, D)`` -> similarities ``(M, k)`` float32 and rows ``(M, k)`` int64, best first; ``-1`` rows
        (similarity ``-inf``) pad answers when fewer than ``k`` rows qualify.
    """
    faiss = _faiss()
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    params = None
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=np.int64)
        sel = faiss.IDSelectorBatch(allowed)
        if isinstance(index, faiss.IndexIVF):
            params = faiss.SearchParametersIVF(sel=sel, nprobe=index.nprobe)
        elif isinstance(index, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=index.hnsw.efSearch)
        else:
            params = faiss.SearchParameters(sel=sel)
    sims, rows = index.search(q, int(k), params=params)
    sims = np.where(rows < 0, -np.inf, sims).astype(np.float32)
    return sims, rows.astype(np.int64)
