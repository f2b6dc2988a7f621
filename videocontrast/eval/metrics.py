"""Shared classification metrics: top-k accuracy, video-level aggregation, per-class accuracy, confusion matrix, and
the paired bootstrap interval of an accuracy difference.

All functions take NumPy arrays or torch tensors and return plain floats / NumPy arrays, so every evaluation
(linear probe, kNN, fine-tuning) computes its numbers the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..fileio import save_figure
from .plots import new_figure

ArrayLike = np.ndarray | torch.Tensor


def _np(x: ArrayLike | Sequence) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def topk_accuracy(scores: ArrayLike, labels: ArrayLike, k: int) -> float:
    """Fraction of rows whose true column is among the ``k`` highest scores.

    Args:
        scores: ``(N, C)`` class scores, logits or probabilities (higher = more likely).
        labels: ``(N,)`` true column index in ``[0, C)``; a label outside that range (e.g. ``-1`` for a class the
            classifier never saw) counts as a miss.
        k: number of top guesses; values above ``C`` are clipped to ``C``.

    Returns:
        Accuracy in ``[0, 1]``.

    Ties are broken by column order (stable sort), so the result is deterministic.
    """
    scores, labels = _np(scores), _np(labels).astype(np.int64)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"topk_accuracy expects scores (N, C) and labels (N,), got {scores.shape} and {labels.shape}")
    if scores.shape[0] == 0:
        raise ValueError("topk_accuracy: no samples to score (N = 0)")
    if k < 1:
        raise ValueError(f"topk_accuracy: k must be >= 1, got {k}")
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (N, k)
    return float((top == labels[:, None]).any(axis=1).mean())


def video_level(scores: ArrayLike, video_ids: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Average clip scores per video.

    Args:
        scores: ``(N_clips, C)`` clip scores (probabilities for the linear probe / fine-tuning) or ``(N_clips, D)``
            features -- the mean is taken row-wise either way.
        video_ids: ``(N_clips,)`` integer id of the video each clip came from.

    Returns:
        ``(video_scores (V, C) float64, ids (V,))`` where ``ids = np.unique(video_ids)`` (sorted) gives the row order.
    """
    scores, video_ids = _np(scores).astype(np.float64), _np(video_ids)
    if scores.ndim != 2 or video_ids.shape != (scores.shape[0],):
        raise ValueError(f"video_level expects scores (N, C) and video_ids (N,), got {scores.shape} and {video_ids.shape}")
    ids, inverse, counts = np.unique(video_ids, return_inverse=True, return_counts=True)
    sums = np.zeros((len(ids), scores.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, scores)
    return sums / counts[:, None], ids


def video_labels(labels: ArrayLike, video_ids: ArrayLike) -> np.ndarray:
    """One label per video, in ``np.unique(video_ids)`` order; raises if a video's clips disagree.

    Shape: ``labels (N_clips,)``, ``video_ids (N_clips,)`` -> ``(V,)``.
    """
    labels, video_ids = _np(labels), _np(video_ids)
    ids, first, inverse = np.unique(video_ids, return_index=True, return_inverse=True)
    per_video = labels[first]
    if not np.array_equal(per_video[inverse], labels):
        bad = ids[np.unique(inverse[per_video[inverse] != labels])][:5]
        raise ValueError(f"clips of the same video carry different labels (video ids {bad.tolist()})")
    return per_video


def per_class_accuracy(pred: ArrayLike, labels: ArrayLike, num_classes: int) -> np.ndarray:
    """Accuracy of each class: ``(num_classes,)`` float, ``nan`` for classes with no sample in ``labels``.

    Args:
        pred: ``(N,)`` predicted class index.
        labels: ``(N,)`` true class index in ``[0, num_classes)``.
    """
    pred, labels = _np(pred).astype(np.int64), _np(labels).astype(np.int64)
    if pred.shape != labels.shape:
        raise ValueError(f"per_class_accuracy: pred {pred.shape} and labels {labels.shape} differ")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"per_class_accuracy: labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    total = np.bincount(labels, minlength=num_classes).astype(np.float64)
    correct = np.bincount(labels[pred == labels], minlength=num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, correct / total, np.nan)


def paired_bootstrap_interval(correct_a: ArrayLike, correct_b: ArrayLike, groups: ArrayLike, level: float = 0.95,
                              n_boot: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``accuracy(a) - accuracy(b)`` on one test set, resampling whole videos.

    Both classifiers answered the same test clips, so the difference is paired: each resample draws ``V`` videos
    with replacement (clips of one video are not independent, so videos, not clips, are the units) and takes the
    clip-level accuracy difference over the drawn videos' clips. The interval says how far the margin could move
    with another test set of the same size; it does not cover training randomness (seeds).

    Args:
        correct_a, correct_b: ``(N,)`` bool, whether each test clip was classified correctly, same clip order.
        groups: ``(N,)`` video id of each clip.
        level: coverage of the two-sided interval, in ``(0, 1)``.
        n_boot: resamples.
        seed: resampling seed (the interval is a function of the inputs and the seed).

    Returns:
        ``(low, high)`` as fractions (``accuracy(a) - accuracy(b)``, in ``[-1, 1]``).
    """
    a, b = _np(correct_a).astype(np.float64), _np(correct_b).astype(np.float64)
    g = _np(groups)
    if a.ndim != 1 or a.shape != b.shape or g.shape != a.shape or a.size == 0:
        raise ValueError(f"paired_bootstrap_interval: correct_a, correct_b and groups must be (N,) with N >= 1, got "
                         f"{a.shape}, {b.shape}, {g.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"paired_bootstrap_interval: level must lie in (0, 1), got {level}")
    _, video = np.unique(g, return_inverse=True)
    diff = np.bincount(video, weights=a - b)  # per video: sum over its clips of (a right) - (b right)
    clips = np.bincount(video).astype(np.float64)
    if np.all(diff == diff[0] * clips / clips[0]):  # every resample gives the same margin (scipy would warn)
        margin = float(diff.sum() / clips.sum())
        return margin, margin
    from scipy.stats import bootstrap  # here, not at the top: only the demo verdict needs scipy.stats (slow import)

    res = bootstrap((diff, clips), lambda d, c, axis=-1: d.sum(axis=axis) / c.sum(axis=axis), paired=True,
                    vectorized=True, n_resamples=n_boot, batch=max(1, 2_000_000 // len(clips)),
                    confidence_level=level, method="percentile", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def confusion_matrix(pred: ArrayLike, labels: ArrayLike, num_classes: int) -> np.ndarray:
    """Counts ``(num_classes, num_classes)``: row = true class, column = predicted class."""
    pred, labels = _np(pred).astype(np.int64), _np(labels).astype(np.int64)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, pred), 1)
    return cm


def confusion_matrix_png(
    pred: ArrayLike, labels: ArrayLike, class_names: Sequence[str], path: str | Path, title: str = "Confusion matrix"
) -> Path:
    """Write a row-normalised confusion matrix (true class = row) as a PNG; readable up to ~101 classes.

    Args:
        pred: ``(N,)`` predicted class index in ``[0, len(class_names))``.
        labels: ``(N,)`` true class index in the same range.
        class_names: one name per class index.
        path: output ``.png`` path (parent folders are created).

    Returns:
        The written path.
    """
    n = len(class_names)
    cm = confusion_matrix(pred, labels, n).astype(np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    cm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)

    # Grow the canvas with the number of classes so 101 tick labels stay legible: 0.2 in (14 pt) per class row
    # holds a 6 pt label with room to spare.
    side = max(5.0, 3.5 + 0.2 * n)
    font = 8 if n <= 30 else 6
    fig, ax = new_figure((side, side), dpi=110)
    im = ax.imshow(cm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(class_names, rotation=90, fontsize=font)
    ax.set_yticklabels(class_names, fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if n <= 15:  # cell values only fit on small matrices
        for i in range(n):
            for j in range(n):
                if cm[i, j] > 0:
                    ax.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if cm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)
    return path
