"""What a video's embedding is, and the one exact nearest-neighbour search every ranking uses.

A video's embedding is the L2-normalised mean of its L2-normalised clip features: ``normalise(mean_c
normalise(f_c))``. Normalising each clip first stops a clip whose feature happens to have a large norm (a flash,
a static frame the encoder responds to strongly) from dominating the mean: every clip gets the same say. The
final normalisation makes inner products cosine similarities. Evaluation (``retrieve``, ``retrieve_within``,
the kNN's video level) and the search tools (``videocontrast embed``, ``search``, ``serve``) all use this
definition, so one checkpoint ranks one collection the same way everywhere; embedding folders store it.

NumPy in, NumPy out; torch is imported only when a search is asked to run on a torch device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Below this norm a row is treated as zero (it stays zero instead of becoming noise divided by ~0).
EPS = 1e-12


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows (last axis) scaled to unit L2 norm, as float32; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), EPS)


def video_embedding(clip_feats: np.ndarray) -> np.ndarray:
    """The embedding of one video from its clip features: ``(C, D)`` -> float32 ``(D,)`` (module docstring)."""
    return l2_normalize(l2_normalize(clip_feats).mean(axis=0))


def group_by_video(feats: np.ndarray, video_ids: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Clip-level rows grouped by video: ``(ids, [clip rows of video ids[i]])`` with ``ids = np.unique(video_ids)``
    (the row order every evaluation uses), each group's clips in their original order.

    Shape: ``feats (N_clips, D)``, ``video_ids (N_clips,)``.
    """
    feats, video_ids = np.asarray(feats), np.asarray(video_ids)
    if feats.ndim != 2 or video_ids.shape != (feats.shape[0],):
        raise ValueError(f"expected feats (N, D) and video_ids (N,), got {feats.shape} and {video_ids.shape}")
    ids, inverse = np.unique(video_ids, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(ids)))[:-1]
    return ids, np.split(feats[order], bounds)


def video_embeddings(feats: np.ndarray, video_ids: np.ndarray) -> np.ndarray:
    """:func:`video_embedding` of every video of a clip-level feature set: float32 ``(V, D)``, rows in
    ``np.unique(video_ids)`` order."""
    _, groups = group_by_video(feats, video_ids)
    return np.stack([video_embedding(g) for g in groups])


def _block_top(q: np.ndarray, g: np.ndarray, k: int, drop: np.ndarray | None,
               device: Any) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of ``q @ g.T`` per row: ``(sims, columns)``, unsorted; ``drop[i]`` (a column, or -1) is left out
    of row i."""
    if device is not None:
        import torch  # on a GPU the dominant cost, the block matmul, takes milliseconds

        s = torch.from_numpy(q).to(device) @ torch.from_numpy(g).to(device).T
        if drop is not None:
            rows = np.flatnonzero(drop >= 0)
            s[torch.from_numpy(rows).to(device), torch.from_numpy(drop[rows]).to(device)] = -float("inf")
        sims, cols = torch.topk(s, k, dim=1)
        return sims.cpu().numpy(), cols.cpu().numpy()
    s = q @ g.T
    if drop is not None:
        rows = np.flatnonzero(drop >= 0)
        s[rows, drop[rows]] = -np.inf
    if k == s.shape[1]:
        return s, np.broadcast_to(np.arange(k), s.shape)
    # A partial sort keeps any of several equal values at the cut; keep the lowest columns among them instead, so
    # that ties rank by row index wherever they fall.
    kth = -np.partition(-s, k - 1, axis=1)[:, k - 1:k]
    above = s > kth
    level = s == kth
    chosen = above | (level & (np.cumsum(level, axis=1) <= k - above.sum(axis=1, keepdims=True)))
    cols = np.nonzero(chosen)[1].reshape(len(s), k)
    return np.take_along_axis(s, cols, 1), cols


def top_k(query: np.ndarray, gallery: np.ndarray, k: int, chunk: int = 4096, exclude: np.ndarray | None = None,
          device: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k: the ``k`` gallery rows with the largest inner product with each query row.

    Rows are expected L2-normalised (what :func:`l2_normalize` and :func:`video_embedding` give): not normalising
    here keeps a search of a large stored collection from copying it on every query. Similarities are computed
    ``chunk`` queries x ``chunk`` gallery rows at a time and merged with the running top k, so memory stays
    ``O(chunk^2 + Q k)`` however large the gallery.

    Args:
        query: ``(Q, D)``; gallery: ``(G, D)``.
        k: neighbours per query; clipped to ``G`` (``G - 1`` with ``exclude``).
        exclude: ``(Q,)`` the gallery row to leave out for each query, e.g. ``np.arange(G)`` when the queries are
            the gallery itself (each row's own match, found by its index: an exact duplicate still counts).
        device: a torch device for the block products (default None: NumPy). With NumPy exact ties rank by
            gallery row; torch's ``topk`` may order them either way.

    Returns:
        ``(sims (Q, k') float32, idx (Q, k') int64)``, most similar first.
    """
    q, g = np.asarray(query, np.float32), np.asarray(gallery, np.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"top_k expects query (Q, D) and gallery (G, D), got {q.shape}, {g.shape}")
    if k < 1 or chunk < 1:
        raise ValueError(f"top_k: k and chunk must be >= 1, got k={k}, chunk={chunk}")
    if exclude is not None:
        exclude = np.asarray(exclude, np.int64)
        if exclude.shape != (len(q),):
            raise ValueError(f"top_k: exclude must hold one gallery row per query, got shape {exclude.shape}")
    k = min(k, len(g) - (exclude is not None))
    if k < 1:
        raise ValueError(f"top_k: the gallery has {len(g)} rows, nothing to return")
    if len(q) == 0:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    all_sims, all_idx = [], []
    for qs in range(0, len(q), chunk):
        qc = q[qs:qs + chunk]
        best_s = np.zeros((len(qc), 0), np.float32)
        best_i = np.zeros((len(qc), 0), np.int64)
        for gs in range(0, len(g), chunk):
            gc = g[gs:gs + chunk]
            drop = None
            if exclude is not None:
                local = exclude[qs:qs + chunk] - gs
                drop = np.where((local >= 0) & (local < len(gc)), local, -1)
            s, c = _block_top(qc, gc, min(k, len(gc)), drop, device)
            # The union of the running top k and this block's top k always holds the true top k.
            cat_s = np.concatenate([best_s, s], axis=1)
            cat_i = np.concatenate([best_i, c + gs], axis=1)
            order = np.lexsort((cat_i, -cat_s), axis=1)[:, :k]  # by similarity, ties by row index
            best_s, best_i = np.take_along_axis(cat_s, order, 1), np.take_along_axis(cat_i, order, 1)
        all_sims.append(best_s)
        all_idx.append(best_i)
    return np.concatenate(all_sims).astype(np.float32), np.concatenate(all_idx).astype(np.int64)
