"""Linear evaluation protocol: L2-regularised multinomial logistic regression on frozen features.

As in the thesis (Sec. 4, following SimCLR [Chen et al. 2020] / Kolesnikov et al. 2019): the backbone is frozen,
a linear classifier is trained on the train split's features and Acc@1 is reported on the test split. The
regularisation strength C is chosen by cross-validation on the train split only; the test split is touched
exactly once, by the refitted final model.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from videocontrast.config import LINEAR_CS
from videocontrast.eval.metrics import (
    confusion_matrix_png,
    per_class_accuracy,
    topk_accuracy,
    video_labels,
    video_level,
)


def _classifier(C: float, max_iter: int, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # lbfgs with >2 classes fits the multinomial (softmax) loss; the default penalty is L2.
    # Standardisation is inside the pipeline so each CV fold fits its own scaler on its own training part.
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, random_state=seed))


def _num_folds(y: np.ndarray, groups: np.ndarray, cv_folds: int) -> int:
    """Folds = min(cv_folds, fewest groups in any class): every fold's validation part then holds each class."""
    videos_per_class = [len(np.unique(groups[y == c])) for c in np.unique(y)]
    return min(cv_folds, min(videos_per_class))


def _fold_path(X: np.ndarray, y: np.ndarray, tr: np.ndarray, va: np.ndarray, Cs: Sequence[float], max_iter: int,
               seed: int) -> list[float]:
    """Validation accuracy of each C (in the order given) for one CV fold.

    The same models as ``_classifier(C).fit(X[tr], y[tr])`` for each C, computed as a regularisation path: the
    fold's scaler is fit once, and the C values are visited from the smallest up, each fit warm-started from the
    previous solution (lbfgs on a convex loss converges to the same optimum, in far fewer iterations).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X[tr])
    Xtr, Xva = scaler.transform(X[tr]), scaler.transform(X[va])
    clf = LogisticRegression(solver="lbfgs", max_iter=max_iter, random_state=seed, warm_start=True)
    accs: dict[float, float] = {}
    for C in sorted(float(c) for c in Cs):
        clf.set_params(C=C).fit(Xtr, y[tr])
        accs[C] = float((clf.predict(Xva) == y[va]).mean())
    return [accs[float(c)] for c in Cs]


def _fit_select(
    X: np.ndarray, y: np.ndarray, groups: np.ndarray, Cs: Sequence[float], cv_folds: int, max_iter: int, seed: int,
    unit: str = "grouped by video",
) -> tuple[Any, float, dict[float, float], str]:
    """Choose C by grouped, stratified k-fold CV and refit on all of ``X``.

    This is the only function that does model selection, and it only ever receives TRAIN arrays (a test spies on
    it): ``X (N_train_clips, D)``, ``y (N_train_clips,)`` contiguous class indices, ``groups (N_train_clips,)``
    source groups (or video ids), so the clips of one source never straddle a training and a validation fold.

    Returns:
        ``(fitted pipeline, chosen C, {C: mean CV accuracy}, description of the selection)``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedGroupKFold
    from threadpoolctl import threadpool_limits

    folds = _num_folds(y, groups, cv_folds)
    if len(Cs) == 1 or folds < 2:
        C = float(Cs[0]) if len(Cs) == 1 else float(Cs[len(Cs) // 2])
        why = "single C given" if len(Cs) == 1 else \
            "no CV possible: a class has fewer than 2 training source groups"
        model = _classifier(C, max_iter, seed).fit(X, y)
        return model, C, {}, f"C fixed to {C:g} ({why})"

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(X, y, groups))
    # Folds run in parallel threads, one core each: lbfgs on these small problems spends its time in NumPy and
    # BLAS calls (which release the GIL) too small to gain from BLAS threads, which only oversubscribe the cores
    # (measured 3-4x slower fits). The warning filter is set around the threads (catch_warnings is not
    # thread-safe).
    with (warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"),
          ThreadPoolExecutor(max(1, min(len(splits), os.cpu_count() or 1))) as pool):
        warnings.simplefilter("ignore", ConvergenceWarning)  # small-C grid points may stop at max_iter: harmless
        per_fold = list(pool.map(lambda s: _fold_path(X, y, s[0], s[1], Cs, max_iter, seed), splits))
    scores = {float(C): float(np.mean([accs[i] for accs in per_fold])) for i, C in enumerate(Cs)}
    # Best mean accuracy; ties go to the smallest C (strongest regularisation), the safer choice.
    best = max(scores.items(), key=lambda kv: (kv[1], -kv[0]))[0]
    with threadpool_limits(limits=1, user_api="blas"):
        model = _classifier(best, max_iter, seed).fit(X, y)
    return model, best, scores, f"{folds}-fold StratifiedGroupKFold CV ({unit}) on train only"


def _check_split(split: Mapping[str, Any], name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    for field in ("feats", "labels", "video_ids"):
        if field not in split:
            raise ValueError(f"linear_probe: '{name}' features lack the field '{field}' (see eval.features)")
    X = np.asarray(split["feats"], dtype=np.float64)
    y = np.asarray(split["labels"]).astype(np.int64)
    g = np.asarray(split["video_ids"]).astype(np.int64)
    if X.ndim != 2 or y.shape != (len(X),) or g.shape != (len(X),):
        raise ValueError(f"linear_probe: '{name}' needs feats (N, D), labels (N,), video_ids (N,); "
                         f"got {X.shape}, {y.shape}, {g.shape}")
    if len(X) == 0:
        raise ValueError(f"linear_probe: '{name}' split is empty")
    if (y < 0).any():
        raise ValueError(f"linear_probe: '{name}' split has unlabeled clips (label -1); the probe needs labels")
    if not np.isfinite(X).all():
        raise ValueError(f"linear_probe: '{name}' features contain NaN or inf")
    return X, y, g


def linear_probe(
    train: Mapping[str, Any],
    test: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
    class_names: Sequence[str],
    Cs: Sequence[float] = LINEAR_CS,
    cv_folds: int = 5,
    max_iter: int = 1000,
    seed: int = 0,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Linear evaluation of frozen features.

    Args:
        train, test: feature sets from :func:`videocontrast.eval.features.extract_features`
            (``feats (N_clips, D)``, ``labels (N_clips,)``, ``video_ids (N_clips,)``); ``train`` may also hold
            ``source_groups (N_clips,)`` (ints: each clip's source, see ``data.groups``), by which the CV folds are
            then grouped, so that clips of one scene are never on both sides of a fold. Labels may be any
            non-negative integers (e.g. a class subset 4, 7, 9); they are mapped to contiguous indices internally
            and reported back in the original label space. ``test`` may also be a function that returns the test
            set: it is called while the C search runs in a thread, so extracting the test features (decode and
            forward, which release the GIL) overlaps the classifier fit, which never sees them.
        class_names: name of each original label (``class_names[label]``).
        Cs: grid of inverse L2 strengths searched by CV.
        cv_folds: maximum number of CV folds (reduced when a class has fewer training videos).
        max_iter: lbfgs iteration limit.
        seed: fold shuffling seed.
        out_dir: if given, writes ``confusion_linear.png`` (clip level) and ``predictions_linear.npz``
            (``video_ids``, ``labels``, ``pred``: one row per test clip, original labels) there.

    Returns:
        ``top1``, ``top5`` (clip level), ``video_top1``, ``video_top5`` (mean of clip probabilities per video),
        ``per_class`` ({class name: clip-level accuracy} for the test classes), counts, ``cv_accuracy`` and
        ``protocol``. Test clips whose class never occurs in train count as errors.
    """
    Xtr, ytr_orig, gtr = _check_split(train, "train")
    if not callable(test):
        _check_split(test, "test")
    classes = np.unique(ytr_orig)  # original labels, sorted; column c of the classifier <-> classes[c]
    if len(classes) < 2:
        raise ValueError(f"linear_probe: the train split holds a single class ({classes.tolist()}); need >= 2")
    if classes.max() >= len(class_names):
        raise ValueError(f"linear_probe: label {classes.max()} has no entry in class_names (len {len(class_names)})")
    ytr = np.searchsorted(classes, ytr_orig)
    if "source_groups" in train:
        groups, unit = np.asarray(train["source_groups"]).astype(np.int64), "grouped by source"
        if groups.shape != ytr.shape:
            raise ValueError(f"linear_probe: 'train' source_groups has shape {groups.shape}, labels {ytr.shape}")
    else:
        groups, unit = gtr, "grouped by video"

    fit_args = (Xtr, ytr, groups, tuple(Cs), cv_folds, max_iter, seed, unit)
    if callable(test):
        with ThreadPoolExecutor(1) as pool:
            fitting = pool.submit(_fit_select, *fit_args)
            test = test()
            model, C, cv_scores, selection = fitting.result()
    else:
        model, C, cv_scores, selection = _fit_select(*fit_args)
    Xte, yte_orig, gte = _check_split(test, "test")
    if Xtr.shape[1] != Xte.shape[1]:
        raise ValueError(f"linear_probe: train features have D={Xtr.shape[1]} but test features D={Xte.shape[1]}")
    seen = np.isin(yte_orig, classes)
    # Classes absent from train can never be predicted; -1 makes every metric count them as misses.
    yte = np.where(seen, np.searchsorted(classes, yte_orig).clip(max=len(classes) - 1), -1)

    proba = model.predict_proba(Xte)  # (N_test_clips, K), columns in contiguous class order
    pred = proba.argmax(axis=1)
    vproba, _ = video_level(proba, gte)
    vlab = video_labels(yte, gte)
    acc = per_class_accuracy(pred[seen], yte[seen], len(classes))
    test_classes = np.unique(yte_orig)
    per_class = {class_names[c]: (float(acc[np.searchsorted(classes, c)]) if c in classes else 0.0)
                 for c in test_classes}

    result: dict[str, Any] = {
        "top1": topk_accuracy(proba, yte, 1),
        "top5": topk_accuracy(proba, yte, 5),
        "video_top1": topk_accuracy(vproba, vlab, 1),
        "video_top5": topk_accuracy(vproba, vlab, 5),
        "per_class": per_class,
        "cv_accuracy": {f"{c:g}": a for c, a in cv_scores.items()},
        "num_train_clips": int(len(Xtr)),
        "num_test_clips": int(len(Xte)),
        "num_train_videos": int(len(np.unique(gtr))),
        "num_test_videos": int(len(np.unique(gte))),
        "num_classes": int(len(classes)),
    }
    if out_dir is not None:
        names = [class_names[c] for c in classes]
        path = confusion_matrix_png(pred[seen], yte[seen], names, Path(out_dir) / "confusion_linear.png",
                                    title=f"Linear probe, clip level (top-1 {result['top1']:.3f})")
        result["confusion_png"] = str(path)
        # One row per test clip, labels in the original label space (-1 never occurs: a class unseen in train
        # keeps its true label and its clips are misses), so two encoders' answers can be compared clip by clip.
        pred_path = Path(out_dir) / "predictions_linear.npz"
        np.savez(pred_path, video_ids=gte, labels=yte_orig, pred=classes[pred])
        result["predictions"] = str(pred_path)

    clips_per_video = np.unique(gte, return_counts=True)[1]
    result["protocol"] = {
        "classifier": "multinomial logistic regression (sklearn lbfgs), L2",
        "C_grid": [float(c) for c in Cs],
        "C": C,
        "selection": selection,
        "refit": "on all train clips with the chosen C",
        "max_iter": max_iter,
        "features": str(train.get("description", "frozen backbone output")) + ", standardised (scaler fit on train)",
        "clips_per_video": int(np.median(clips_per_video)),
        "video_level": "mean of clip probabilities per video",
        "per_class": "clip-level accuracy",
        "test_clips_of_unseen_classes": int((~seen).sum()),
        "seed": seed,
    }
    return result
