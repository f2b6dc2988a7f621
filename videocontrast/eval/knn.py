"""Weighted k-nearest-neighbour classifier on frozen features.

Cosine similarity, and each of the k neighbours votes for its class with weight ``exp(sim / T)``
(Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", Eq. 6; also DINO's
``knn_classifier``). No training, no hyper-parameter search: a cheap, deterministic companion of the linear probe.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from videocontrast.eval.metrics import topk_accuracy, video_labels
from videocontrast.eval.retrieval import nearest_neighbours, video_embeddings


def knn_votes(
    sims: np.ndarray, neighbour_labels: np.ndarray, num_classes: int, temperature: float
) -> np.ndarray:
    """Class scores from neighbours: ``score[q, c] = sum_j [label_j == c] * exp(sim_qj / T)``.

    Shape: ``sims (Q, k)``, ``neighbour_labels (Q, k)`` in ``[0, num_classes)`` -> float64 ``(Q, num_classes)``.
    """
    s = torch.as_tensor(sims, dtype=torch.float64)
    w = torch.exp(s / temperature)  # (Q, k); sims are in [-1, 1], so exp(1/0.07) ~ 1.6e6: no overflow in float64
    votes = torch.zeros(s.shape[0], num_classes, dtype=torch.float64)
    votes.scatter_add_(1, torch.as_tensor(neighbour_labels, dtype=torch.long), w)
    return votes.numpy()


def knn_classify(
    train: Mapping[str, Any],
    test: Mapping[str, Any],
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk: int = 4096,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Similarity-weighted kNN classification of test features by training features.

    Args:
        train, test: feature sets (``feats (N_clips, D)``, ``labels (N_clips,)``, ``video_ids (N_clips,)``).
        k: neighbours (clipped to the number of training items).
        temperature: T in ``exp(sim / T)``.
        num_classes: if given, labels are class indices in ``[0, num_classes)``; otherwise the classes are the
            distinct training labels (any non-negative integers; test labels never seen in train count as misses).
        chunk, device: passed to :func:`videocontrast.eval.retrieval.nearest_neighbours`.

    Returns:
        ``top1``, ``top5``: each test clip classified by the training clips; ``video_top1``, ``video_top5``: each
        test video (mean of its clip features, L2-normalised) classified by the training videos embedded the same
        way; plus ``protocol``.
    """
    if k < 1 or temperature <= 0:
        raise ValueError(f"knn_classify: need k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    ytr_orig, yte_orig = np.asarray(train["labels"]).astype(np.int64), np.asarray(test["labels"]).astype(np.int64)
    if (ytr_orig < 0).any():
        raise ValueError("knn_classify: training features include unlabeled clips (label -1)")
    if num_classes is not None:
        if ytr_orig.max() >= num_classes:
            raise ValueError(f"knn_classify: train label {ytr_orig.max()} >= num_classes={num_classes}")
        classes = np.arange(num_classes)
    else:
        classes = np.unique(ytr_orig)
    ytr = np.searchsorted(classes, ytr_orig)
    yte = np.where(np.isin(yte_orig, classes), np.searchsorted(classes, yte_orig).clip(max=len(classes) - 1), -1)

    # Clip level: every test clip against every training clip.
    sims, idx = nearest_neighbours(test["feats"], train["feats"], k, chunk=chunk, device=device)
    clip_scores = knn_votes(sims, ytr[idx], len(classes), temperature)

    # Video level: video embeddings on both sides (the retrieval embedding), then the same vote.
    gtr, gte = np.asarray(train["video_ids"]), np.asarray(test["video_ids"])
    vsims, vidx = nearest_neighbours(video_embeddings(test["feats"], gte), video_embeddings(train["feats"], gtr), k,
                                     chunk=chunk, device=device)
    video_scores = knn_votes(vsims, video_labels(ytr, gtr)[vidx], len(classes), temperature)
    vte = video_labels(yte, gte)

    return {
        "top1": topk_accuracy(clip_scores, yte, 1),
        "top5": topk_accuracy(clip_scores, yte, 5),
        "video_top1": topk_accuracy(video_scores, vte, 1),
        "video_top5": topk_accuracy(video_scores, vte, 5),
        "protocol": {
            "classifier": "weighted kNN (InstDisc/DINO): votes exp(cos_sim / T) per class",
            "k": int(min(k, len(ytr))),
            "temperature": float(temperature),
            "similarity": "cosine (features L2-normalised)",
            "clip_level": "each test clip vs all training clips",
            "video_level": "each video's embedding (mean of its L2-normalised clip features, L2-normalised: eval.embedding.video_embedding) vs training videos embedded the same way",
            "ties": "broken towards the lower class index",
        },
    }
