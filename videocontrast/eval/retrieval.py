"""Nearest-neighbour video retrieval (thesis Sec. 3 and Fig. 4; protocol of Xu et al. 2019 / CoCLR / TCLR).

Each video is embedded as the mean of its clip features, L2-normalised. Every test video queries the training
videos by cosine similarity; Recall@k (R@k) is the fraction of queries with at least one training video of the
same class among their k nearest neighbours.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from videocontrast.eval.metrics import video_labels, video_level

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20, 50)


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _to_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return x.detach().float() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x, dtype=np.float32))


def l2_normalize(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Rows scaled to unit L2 norm; ``(N, D)`` -> float32 ``(N, D)`` (zero rows stay zero)."""
    return torch.nn.functional.normalize(_to_tensor(x), dim=1).cpu().numpy()


def video_embeddings(feats: np.ndarray | torch.Tensor, video_ids: np.ndarray | torch.Tensor) -> np.ndarray:
    """Mean of each video's clip features, then L2-normalised.

    Shape: ``feats (N_clips, D)``, ``video_ids (N_clips,)`` -> float32 ``(V, D)`` with rows in
    ``np.unique(video_ids)`` order.
    """
    mean, _ = video_level(_to_tensor(feats).cpu().numpy(), np.asarray(video_ids))
    return l2_normalize(mean.astype(np.float32))


def nearest_neighbours(
    query: np.ndarray | torch.Tensor,
    gallery: np.ndarray | torch.Tensor,
    k: int,
    chunk: int = 4096,
    device: torch.device | str | None = None,
    use_faiss: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine-similarity k-nearest-neighbour search.

    Both sides are L2-normalised, then similarities are computed ``chunk`` queries x ``chunk`` gallery items at a
    time on ``device`` and merged with a running ``torch.topk``, so memory stays ``O(chunk^2 + Q k)`` however
    large the gallery. With ``use_faiss=True`` and faiss importable, a faiss ``IndexFlatIP`` (also exact) is used.

    Args:
        query: ``(Q, D)``; gallery: ``(G, D)``.
        k: neighbours per query; clipped to ``G``.
        chunk: rows per block on each side.
        device: where the matmuls run (default: the query's device, CPU for NumPy input).

    Returns:
        ``(sims (Q, k') float32, idx (Q, k') int64)`` with ``k' = min(k, G)``, most similar first.
    """
    q, g = _to_tensor(query), _to_tensor(gallery)
    if q.dim() != 2 or g.dim() != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"nearest_neighbours expects query (Q, D) and gallery (G, D), got {tuple(q.shape)}, {tuple(g.shape)}")
    if g.shape[0] == 0:
        raise ValueError("nearest_neighbours: the gallery is empty")
    if k < 1 or chunk < 1:
        raise ValueError(f"nearest_neighbours: k and chunk must be >= 1, got k={k}, chunk={chunk}")
    k = min(k, g.shape[0])
    q = torch.nn.functional.normalize(q, dim=1)
    g = torch.nn.functional.normalize(g, dim=1)

    if use_faiss and _faiss_available():
        import faiss

        index = faiss.IndexFlatIP(g.shape[1])
        index.add(np.ascontiguousarray(g.cpu().numpy()))
        sims, idx = index.search(np.ascontiguousarray(q.cpu().numpy()), k)
        return sims.astype(np.float32), idx.astype(np.int64)

    device = torch.device(device) if device is not None else q.device
    g = g.to(device)
    all_sims, all_idx = [], []
    for qs in range(0, q.shape[0], chunk):
        qc = q[qs:qs + chunk].to(device)  # (q, D)
        best_s = torch.full((qc.shape[0], 0), -float("inf"), device=device)
        best_i = torch.zeros((qc.shape[0], 0), dtype=torch.long, device=device)
        for gs in range(0, g.shape[0], chunk):
            s = qc @ g[gs:gs + chunk].T  # (q, g) cosine similarities
            kk = min(k, s.shape[1])
            cs, ci = torch.topk(s, kk, dim=1)
            # Merge this chunk's top-k with the running top-k; the union always contains the true top-k.
            cat_s = torch.cat([best_s, cs], dim=1)
            cat_i = torch.cat([best_i, ci + gs], dim=1)
            keep = min(k, cat_s.shape[1])
            best_s, order = torch.topk(cat_s, keep, dim=1)
            best_i = torch.gather(cat_i, 1, order)
        all_sims.append(best_s.cpu())
        all_idx.append(best_i.cpu())
    return torch.cat(all_sims).numpy().astype(np.float32), torch.cat(all_idx).numpy().astype(np.int64)


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
    train: Mapping[str, Any],
    test: Mapping[str, Any],
    ks: Sequence[int] = DEFAULT_KS,
    class_names: Sequence[str] | None = None,
    report_k: int = 3,
    chunk: int = 4096,
    device: torch.device | str | None = None,
    use_faiss: bool = False,
) -> dict[str, Any]:
    """Video-level retrieval: test videos query training videos.

    Args:
        train, test: feature sets (``feats (N_clips, D)``, ``labels``, ``video_ids``, optional ``paths`` aligned with
            ``np.unique(video_ids)``), see :mod:`videocontrast.eval.features`.
        ks: Recall@k cut-offs.
        class_names: optional names for the ``neighbours`` list (``class_names[label]``).
        report_k: neighbours kept per query in ``neighbours`` (3 as in the thesis Fig. 4).

    Returns:
        ``{"R@k": ...}``, ``neighbours`` (one dict per test video: ``video_id, path, label, label_name,
        neighbours=[dict(video_id, path, label, label_name, sim, hit)]``), counts and ``protocol``.
    """
    if report_k < 0:
        raise ValueError(f"retrieve: report_k must be >= 0, got {report_k}")
    q = video_embeddings(test["feats"], test["video_ids"])
    g = video_embeddings(train["feats"], train["video_ids"])
    q_ids, g_ids = np.unique(np.asarray(test["video_ids"])), np.unique(np.asarray(train["video_ids"]))
    ql = video_labels(np.asarray(test["labels"]), np.asarray(test["video_ids"]))
    gl = video_labels(np.asarray(train["labels"]), np.asarray(train["video_ids"]))
    sims, idx = nearest_neighbours(q, g, max(max(ks), report_k), chunk=chunk, device=device, use_faiss=use_faiss)
    result: dict[str, Any] = _recall_from_neighbours(gl[idx], ql, ks)

    q_paths = list(test.get("paths") or [""] * len(q_ids))
    g_paths = list(train.get("paths") or [""] * len(g_ids))
    result["neighbours"] = _neighbour_lists((q_ids, q_paths, ql), (g_ids, g_paths, gl), sims, idx, report_k,
                                            class_names)
    result["num_queries"] = int(len(q_ids))
    result["gallery_size"] = int(len(g_ids))
    result["protocol"] = {
        "task": "video retrieval: each test video queries all training videos",
        "embedding": "mean of the video's clip features, then L2-normalised",
        "similarity": "cosine",
        "search": "faiss IndexFlatIP (exact)" if use_faiss and _faiss_available() else "exact chunked matmul + topk",
        "hit": "any of the k nearest training videos has the query's class",
        "ks": [int(k) for k in ks],
        "k_clipped_to_gallery_size": int(len(g_ids)),
        "clips_per_video": int(np.median(np.unique(np.asarray(test["video_ids"]), return_counts=True)[1])),
    }
    return result


def retrieve_within(
    test: Mapping[str, Any],
    ks: Sequence[int] = DEFAULT_KS,
    class_names: Sequence[str] | None = None,
    report_k: int = 3,
    chunk: int = 4096,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """The thesis's retrieval (Fig. 4, section 4.3): every test video queries the OTHER test videos.

    Same embedding and similarity as :func:`retrieve` (mean of the clip features, L2-normalised, cosine); the
    gallery is the test set itself with the query left out, and ``report_k`` (3 in the thesis) neighbours are
    kept per query. R@k counts a hit when any of the k nearest other test videos shares the query's class.

    Args:
        test: a feature set (see :mod:`videocontrast.eval.features`) with at least 2 videos.
        ks: Recall@k cut-offs; a k above ``V - 1`` is clipped to it (the key keeps the requested k).

    Returns:
        as :func:`retrieve`: ``{"R@k"}``, ``neighbours``, ``num_queries``, ``gallery_size`` and ``protocol``.
    """
    if report_k < 0:
        raise ValueError(f"retrieve_within: report_k must be >= 0, got {report_k}")
    if not ks:
        raise ValueError("retrieve_within: ks is empty")
    emb = video_embeddings(test["feats"], test["video_ids"])  # (V, D)
    ids = np.unique(np.asarray(test["video_ids"]))
    labels = video_labels(np.asarray(test["labels"]), np.asarray(test["video_ids"]))
    v = len(ids)
    if v < 2:
        raise ValueError(f"retrieve_within: needs at least 2 test videos, got {v}")
    want = min(max(max(ks), report_k) + 1, v)
    sims, idx = nearest_neighbours(emb, emb, want, chunk=chunk, device=device)
    # Drop the query itself (its own row index; with exact duplicates it may not rank first), keep V - 1 at most.
    keep = idx != np.arange(v)[:, None]
    keep[keep.all(axis=1), -1] = False  # the query was not among its `want` nearest: drop the farthest instead
    sims = sims[keep].reshape(v, want - 1)
    idx = idx[keep].reshape(v, want - 1)
    result: dict[str, Any] = _recall_from_neighbours(labels[idx], labels, ks)
    videos = (ids, list(test.get("paths") or [""] * v), labels)
    result["neighbours"] = _neighbour_lists(videos, videos, sims, idx, report_k, class_names)
    result["num_queries"] = v
    result["gallery_size"] = v - 1
    result["protocol"] = {
        "task": "video retrieval as in the thesis (Fig. 4): each test video queries the other test videos",
        "embedding": "mean of the video's clip features, then L2-normalised",
        "similarity": "cosine",
        "search": "exact chunked matmul + topk, the query itself left out",
        "hit": "any of the k nearest other test videos has the query's class",
        "neighbours_shown": int(report_k),
        "ks": [int(k) for k in ks],
        "k_clipped_to_gallery_size": v - 1,
    }
    return result
