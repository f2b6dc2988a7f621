"""Nearest-neighbour video retrieval (thesis Sec. 3 and Fig. 4; protocol of Xu et al. 2019 / CoCLR / TCLR).

Each video is embedded as :mod:`videocontrast.eval.embedding` defines it (the L2-normalised mean of its
L2-normalised clip features: the vector ``videocontrast embed`` stores). Every test video queries the training
videos by cosine similarity; Recall@k (R@k) is the fraction of queries with at least one training video of the
same class among their k nearest neighbours.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from videocontrast.eval import embedding
from videocontrast.eval.embedding import l2_normalize, top_k
from videocontrast.eval.metrics import video_labels
from videocontrast.names import RECALL_KS as DEFAULT_KS  # the default ks: one list, names.RECALL_KS

EMBEDDING = "mean of the video's L2-normalised clip features, then L2-normalised"


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _array(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)


def video_embeddings(feats: np.ndarray | torch.Tensor, video_ids: np.ndarray | torch.Tensor) -> np.ndarray:
    """:func:`videocontrast.eval.embedding.video_embeddings` for NumPy or torch input.

    Shape: ``feats (N_clips, D)``, ``video_ids (N_clips,)`` -> float32 ``(V, D)`` with rows in
    ``np.unique(video_ids)`` order.
    """
    ids = video_ids.cpu().numpy() if isinstance(video_ids, torch.Tensor) else np.asarray(video_ids)
    return embedding.video_embeddings(_array(feats), ids)


def video_vectors(features: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The vectors :func:`retrieve` and :func:`retrieve_within` rank a feature set's videos with:
    ``(embeddings (V, D), video ids (V,))``, one row per video in ``np.unique(video_ids)`` order."""
    return video_embeddings(features["feats"], features["video_ids"]), np.unique(np.asarray(features["video_ids"]))


def nearest_neighbours(
    query: np.ndarray | torch.Tensor,
    gallery: np.ndarray | torch.Tensor,
    k: int,
    chunk: int = 4096,
    device: torch.device | str | None = None,
    use_faiss: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine-similarity k-nearest-neighbour search of rows of any norm.

    Both sides are L2-normalised, then searched by :func:`videocontrast.eval.embedding.top_k` (``chunk`` x
    ``chunk`` blocks, block products on ``device``). With ``use_faiss=True`` and faiss importable, a faiss
    ``IndexFlatIP`` (also exact) is used.

    Args:
        query: ``(Q, D)``; gallery: ``(G, D)``.
        k: neighbours per query; clipped to ``G``.
        chunk: rows per block on each side.
        device: where the block products run (default: the query's device, CPU for NumPy input).

    Returns:
        ``(sims (Q, k') float32, idx (Q, k') int64)`` with ``k' = min(k, G)``, most similar first.
    """
    if device is None and isinstance(query, torch.Tensor):
        device = query.device
    q, g = l2_normalize(_array(query)), l2_normalize(_array(gallery))
    if use_faiss and _faiss_available() and q.ndim == g.ndim == 2 and len(g) and k >= 1:
        import faiss

        index = faiss.IndexFlatIP(g.shape[1])
        index.add(np.ascontiguousarray(g))
        sims, idx = index.search(np.ascontiguousarray(q), min(k, len(g)))
        return sims.astype(np.float32), idx.astype(np.int64)
    return top_k(q, g, k, chunk=chunk, device=device)


def _recall_from_neighbours(nn_labels: np.ndarray, query_labels: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    hits = nn_labels == query_labels[:, None]  # (Q, k_max)
    return {f"R@{k}": float(hits[:, :k].any(axis=1).mean()) for k in ks}


def recall_at_k(
    query_feats: np.ndarray | torch.Tensor,
    query_labels: np.ndarray | torch.Tensor,
    gallery_feats: np.ndarray | torch.Tensor,
    gallery_labels: np.ndarray | torch.Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    chunk: int = 4096,
    device: torch.device | str | None = None,
    use_faiss: bool = False,
) -> dict[str, float]:
    """Recall@k of cosine retrieval: a query is a hit at k when ANY of its k nearest gallery items shares its class.

    Args:
        query_feats: ``(Q, D)``; query_labels: ``(Q,)``; gallery_feats: ``(G, D)``; gallery_labels: ``(G,)``.
        ks: cut-offs; a k above ``G`` is clipped to ``G`` (the key keeps the requested k).

    Returns:
        ``{"R@k": fraction in [0, 1]}`` for each k.
    """
    ql, gl = np.asarray(query_labels), np.asarray(gallery_labels)
    if not ks:
        raise ValueError("recall_at_k: ks is empty")
    _, idx = nearest_neighbours(query_feats, gallery_feats, max(ks), chunk=chunk, device=device, use_faiss=use_faiss)
    return _recall_from_neighbours(gl[idx], ql, ks)


def _neighbour_lists(queries: tuple, gallery: tuple, sims: np.ndarray, idx: np.ndarray, report_k: int,
                     class_names: Sequence[str] | None) -> list[dict[str, Any]]:
    """The ``neighbours`` list of a retrieval result: per query video its ``report_k`` nearest gallery videos.

    ``queries`` and ``gallery`` are ``(video ids, paths, labels)`` aligned with the rows of ``sims``/``idx``
    ``(Q, >= report_k)`` (similarities and gallery row indices, nearest first).
    """
    (q_ids, q_paths, ql), (g_ids, g_paths, gl) = queries, gallery

    def name(label: int) -> str:
        return class_names[label] if class_names is not None and 0 <= label < len(class_names) else str(label)

    return [
        {
            "video_id": int(q_ids[i]), "path": q_paths[i], "label": int(ql[i]), "label_name": name(int(ql[i])),
            "neighbours": [
                {"video_id": int(g_ids[j]), "path": g_paths[j], "label": int(gl[j]), "label_name": name(int(gl[j])),
                 "sim": float(s), "hit": bool(gl[j] == ql[i])}
                for s, j in zip(sims[i, :report_k], idx[i, :report_k])
            ],
        }
        for i in range(len(q_ids))
    ]


def retrieve(
    train: Mapping[str, Any] | None,
    test: Mapping[str, Any],
    ks: Sequence[int] = DEFAULT_KS,
    class_names: Sequence[str] | None = None,
    report_k: int = 3,
    chunk: int = 4096,
    device: torch.device | str | None = None,
    use_faiss: bool = False,
) -> dict[str, Any]:
    """Video-level retrieval: test videos query training videos, or (``train`` None, :func:`retrieve_within`)
    the other test videos.

    Args:
        train, test: feature sets (``feats (N_clips, D)``, ``labels``, ``video_ids``, optional ``paths`` aligned with
            ``np.unique(video_ids)``), see :mod:`videocontrast.eval.features`.
        ks: Recall@k cut-offs; a k above the gallery's size is clipped to it (the key keeps the requested k).
        class_names: optional names for the ``neighbours`` list (``class_names[label]``).
        report_k: neighbours kept per query in ``neighbours`` (3 as in the thesis Fig. 4).
        use_faiss: search with FAISS's exact IndexFlatIP when it is installed (queries against training only).

    Returns:
        ``{"R@k": ...}``, ``neighbours`` (one dict per test video: ``video_id, path, label, label_name,
        neighbours=[dict(video_id, path, label, label_name, sim, hit)]``), counts and ``protocol``.
    """
    within = train is None
    name = "retrieve_within" if within else "retrieve"
    if report_k < 0:
        raise ValueError(f"{name}: report_k must be >= 0, got {report_k}")
    if not ks:
        raise ValueError(f"{name}: ks is empty")
    q, q_ids = video_vectors(test)
    ql = video_labels(np.asarray(test["labels"]), np.asarray(test["video_ids"]))
    q_paths = list(test.get("paths") or [""] * len(q_ids))
    k = max(max(ks), report_k)
    if within:
        if len(q_ids) < 2:
            raise ValueError(f"retrieve_within: needs at least 2 test videos, got {len(q_ids)}")
        g_ids, g_paths, gl = q_ids, q_paths, ql
        # The query itself is left out by its row index: with exact duplicates it need not rank first.
        sims, idx = top_k(q, q, k, chunk=chunk, exclude=np.arange(len(q_ids)), device=device)
    else:
        g, g_ids = video_vectors(train)
        gl = video_labels(np.asarray(train["labels"]), np.asarray(train["video_ids"]))
        g_paths = list(train.get("paths") or [""] * len(g_ids))
        sims, idx = nearest_neighbours(q, g, k, chunk=chunk, device=device, use_faiss=use_faiss)
    result: dict[str, Any] = _recall_from_neighbours(gl[idx], ql, ks)
    result["neighbours"] = _neighbour_lists((q_ids, q_paths, ql), (g_ids, g_paths, gl), sims, idx, report_k,
                                            class_names)
    gallery = len(g_ids) - within
    result["num_queries"] = int(len(q_ids))
    result["gallery_size"] = int(gallery)
    if within:
        result["protocol"] = {
            "task": "video retrieval as in the thesis (Fig. 4): each test video queries the other test videos",
            "embedding": EMBEDDING,
            "similarity": "cosine",
            "search": "exact chunked matmul + topk, the query itself left out",
            "hit": "any of the k nearest other test videos has the query's class",
            "neighbours_shown": int(report_k),
            "ks": [int(k) for k in ks],
            "k_clipped_to_gallery_size": int(gallery),
        }
        return result
    result["protocol"] = {
        "task": "video retrieval: each test video queries all training videos",
        "embedding": EMBEDDING,
        "similarity": "cosine",
        "search": "faiss IndexFlatIP (exact)" if use_faiss and _faiss_available() else "exact chunked matmul + topk",
        "hit": "any of the k nearest training videos has the query's class",
        "ks": [int(k) for k in ks],
        "k_clipped_to_gallery_size": int(gallery),
        "clips_per_video": int(np.median(np.unique(np.asarray(test["video_ids"]), return_counts=True)[1])),
    }
    return result


def retrieve_within(test: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    """The thesis's retrieval (Fig. 4, section 4.3): every test video queries the OTHER test videos (at least 2),
    with the same embedding and similarity as :func:`retrieve` (whose keyword arguments it takes); the gallery is
    the test set with the query left out, and R@k counts a hit when any of the k nearest other test videos shares
    the query's class."""
    return retrieve(None, test, **kwargs)
