"""Tests for videocontrast.eval: metrics, feature extraction + cache, linear probe, kNN, fine-tuning.

Everything runs on synthetic arrays and tiny stand-in encoders, so it does not depend on the data/models modules.
"""

from __future__ import annotations

import json
import math

import threading

import numpy as np
import pytest
import torch
from torch import nn

from videocontrast.eval import linear as linear_mod
from videocontrast.eval.features import FeatureCache, extract_features, feature_key, weights_fingerprint
from videocontrast.config import ConfigError, load_config
from videocontrast.engine.checkpoint import load_checkpoint
from videocontrast.eval.finetune import finetune
from videocontrast.eval.knn import knn_classify, knn_votes
from videocontrast.eval.linear import linear_probe
from videocontrast.eval.metrics import per_class_accuracy, topk_accuracy, video_labels, video_level


# ---------------------------------------------------------------- helpers

def planted(num_classes=5, dim=32, videos_per_class=20, clips=2, noise=1.0, seed=0, first_id=0, sep=4.0):
    """Gaussian classes around random directions: clip feats (N, D), labels (N,), video_ids (N,)."""
    rng = np.random.default_rng(seed)
    dirs = np.random.default_rng(123).normal(size=(num_classes, dim))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    feats, labels, ids = [], [], []
    vid = first_id
    for c in range(num_classes):
        for _ in range(videos_per_class):
            centre = sep * dirs[c] + 0.5 * rng.normal(size=dim)  # per-video offset: clips of a video correlate
            for _ in range(clips):
                feats.append(centre + noise * rng.normal(size=dim))
                labels.append(c)
                ids.append(vid)
            vid += 1
    return {"feats": np.asarray(feats, np.float32), "labels": np.asarray(labels), "video_ids": np.asarray(ids)}


class MeanPool(nn.Module):
    """Stand-in encoder: (B, C, T, H, W) -> (B, C), the mean colour of the clip."""

    feature_dim = 3

    def forward(self, x):
        return x.mean(dim=(2, 3, 4))


class TinyConv(nn.Module):
    """A tiny 3D CNN with BatchNorm (whose running stats would move if run in train mode)."""

    def __init__(self, dim: int = 4):
        super().__init__()
        self.feature_dim = dim
        self.net = nn.Sequential(nn.Conv3d(3, dim, 3, padding=1), nn.BatchNorm3d(dim), nn.ReLU(),
                                 nn.AdaptiveAvgPool3d(1), nn.Flatten())

    def forward(self, x):
        return self.net(x)


def to_model_layout(x: torch.Tensor) -> torch.Tensor:
    """(N, T, C, H, W) uint8 -> (N, C, T, H, W) float in [-0.5, 0.5]."""
    return (x.float() / 255.0 - 0.5).permute(0, 2, 1, 3, 4)


def video_batches(values, labels, views=2, frames=2, size=4, batch=2, first_index=0):
    """A loader (list of dicts) whose clip j of video i is filled with the constant values[i][j]."""
    out = []
    for s in range(0, len(values), batch):
        vals = values[s:s + batch]
        video = torch.zeros(len(vals), views, frames, 3, size, size, dtype=torch.uint8)
        for i, clips in enumerate(vals):
            for j, v in enumerate(clips):
                video[i, j] = v
        idx = list(range(first_index + s, first_index + s + len(vals)))
        out.append({"video": video, "label": torch.tensor(labels[s:s + batch]), "index": torch.tensor(idx),
                    "path": [f"v{i}.mp4" for i in idx]})
    return out


# ---------------------------------------------------------------- metrics

def test_topk_accuracy_hand_worked():
    scores = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])
    labels = np.array([2, 0, 1])
    assert topk_accuracy(scores, labels, 1) == pytest.approx(1 / 3)  # only row 1 right
    # Row 2's top-2 is {col 2, col 0}: the 0.3 tie goes to the lower column, so label 1 is missed.
    assert topk_accuracy(scores, labels, 2) == pytest.approx(2 / 3)
    assert topk_accuracy(scores, labels, 3) == 1.0
    assert topk_accuracy(scores, labels, 10) == 1.0  # k clipped to C
    assert topk_accuracy(scores, np.array([-1, 0, 2]), 3) == pytest.approx(2 / 3)  # -1 = unseen class, a miss
    assert topk_accuracy(torch.tensor(scores), torch.tensor(labels), 1) == pytest.approx(1 / 3)


def test_video_level_hand_worked():
    # 2 videos x 3 clips, clips interleaved; id 5's probabilities average to [0.5, 0.5], id 2's to [0.2, 0.8].
    probs = np.array([[0.6, 0.4], [0.1, 0.9], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3], [0.1, 0.9]])
    ids = np.array([5, 2, 5, 2, 5, 2])
    vscores, order = video_level(probs, ids)
    assert order.tolist() == [2, 5]
    np.testing.assert_allclose(vscores, [[0.2, 0.8], [0.5, 0.5]])
    assert video_labels(np.array([1, 0, 1, 0, 1, 0]), ids).tolist() == [0, 1]
    with pytest.raises(ValueError, match="different labels"):
        video_labels(np.array([1, 0, 0, 0, 1, 0]), ids)


def test_paired_bootstrap_interval_hand_worked_and_against_the_normal_approximation():
    from videocontrast.eval.metrics import paired_bootstrap_interval

    ids = np.repeat(np.arange(5), 2)  # 5 videos of 2 clips
    same = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 1], bool)
    assert paired_bootstrap_interval(same, same, ids) == (0.0, 0.0)  # identical answers: no difference at all
    ones, zeros = np.ones(10, bool), np.zeros(10, bool)
    assert paired_bootstrap_interval(ones, zeros, ids) == (1.0, 1.0)
    assert paired_bootstrap_interval(zeros, ones, ids) == (-1.0, -1.0)
    # one video where only a is right, the rest agree: every resample's margin lies in [0, 1], and 0 is inside
    # (a resample without video 0 has probability (4/5)^5 = 33%)
    a = same.copy()
    a[[1]] = True  # video 0 now has a right on both clips, b on one
    low, high = paired_bootstrap_interval(a, same, ids, n_boot=4000)
    assert low == 0.0 and 0.1 <= high <= 0.3

    # 1 clip per video, 600 videos, a right on 20% more of them with some discordance both ways: the percentile
    # interval matches the paired normal interval margin +- 1.96 sd(d) / sqrt(V) within a few tenths of a point
    rng = np.random.default_rng(1)
    b = rng.random(600) < 0.6
    a = b.copy()
    flip = rng.random(600)
    a[(~b) & (flip < 0.6)] = True  # a right where b was wrong on ~60% of them
    a[b & (flip < 0.1)] = False  # and wrong where b was right on ~10%
    d = a.astype(float) - b.astype(float)
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    low, high = paired_bootstrap_interval(a, b, np.arange(600), n_boot=20000, seed=3)
    assert low == pytest.approx(d.mean() - half, abs=0.004) and high == pytest.approx(d.mean() + half, abs=0.004)
    # resampling videos, not clips: 10 clips per video that all agree widen the interval to the per-video one
    low10, high10 = paired_bootstrap_interval(np.repeat(a, 10), np.repeat(b, 10), np.repeat(np.arange(600), 10),
                                              n_boot=20000, seed=3)
    assert (low10, high10) == pytest.approx((low, high), abs=0.004)
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap_interval(a, b, np.arange(600), level=1.0)
    with pytest.raises(ValueError, match=r"\(N,\)"):
        paired_bootstrap_interval(a, b[:5], np.arange(600))


def test_per_class_accuracy_hand_worked():
    acc = per_class_accuracy(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 4)
    np.testing.assert_allclose(acc[:2], [1.0, 1 / 3])
    assert np.isnan(acc[2]) and np.isnan(acc[3])  # no samples of classes 2 and 3


# ---------------------------------------------------------------- features + cache

def test_extract_features_layout_and_order():
    # Clip j of video i is filled with value 10*i + j; the mean-pool encoder returns that value (scaled) per channel.
    values = [[10 * i + j for j in range(3)] for i in range(5)]
    loader = video_batches(values, labels=[4, 4, 7, 9, 7], views=3, batch=2, first_index=100)
    out = extract_features(MeanPool(), loader, lambda x: x.float().permute(0, 2, 1, 3, 4), "cpu")
    assert out["feats"].dtype == np.float32 and out["feats"].shape == (15, 3)
    np.testing.assert_allclose(out["feats"][:, 0], [10 * i + j for i in range(5) for j in range(3)])
    assert out["labels"].tolist() == [l for l in [4, 4, 7, 9, 7] for _ in range(3)]
    assert out["video_ids"].tolist() == [100 + i for i in range(5) for _ in range(3)]
    assert out["paths"] == [f"v{100 + i}.mp4" for i in range(5)]


def test_feature_cache_computes_once(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    calls = []
    data = planted(num_classes=2, videos_per_class=3)
    data["paths"] = [f"a/{i}.mp4" for i in range(6)]

    def compute():
        calls.append(1)
        return data

    key = feature_key(weights_fingerprint(None, seed=3), "synthetic", tmp_path, 1, "train", clip_len=8,
                      clips_per_video=2, size=(56, 56), backbone="r3d_small")
    first = cache.load_or_compute(key, compute)
    again = cache.load_or_compute(dict(reversed(list(key.items()))), compute)  # same key, other dict order
    assert len(calls) == 1
    for name in ("feats", "labels", "video_ids"):
        np.testing.assert_array_equal(again[name], data[name])
    assert again["paths"] == data["paths"] and first is data
    cache.load_or_compute({**key, "clip_len": 16}, compute)  # a protocol change invalidates the cache
    assert len(calls) == 2
    assert not list((tmp_path / "cache").glob(".tmp-*"))  # atomic write left no temporary file


def test_feature_cache_recomputes_corrupt_file(tmp_path):
    cache = FeatureCache(tmp_path)
    key = {"k": 1}
    data = {**planted(num_classes=2, videos_per_class=1), "paths": ["x", "y"]}
    cache.path(key).write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="unreadable"):
        out = cache.load_or_compute(key, lambda: data)
    assert out is data and cache.load_or_compute(key, lambda: 1 / 0)["feats"].shape == data["feats"].shape


def test_weights_fingerprint(tmp_path):
    ckpt = tmp_path / "a.pt"
    ckpt.write_bytes(b"abc")
    assert weights_fingerprint(ckpt) == "sha1:a9993e364706816aba3e25717850c26c9cd0d89d"  # SHA-1("abc")
    assert weights_fingerprint(None, 7) == "random:7"
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        weights_fingerprint(tmp_path / "missing.pt")


# ---------------------------------------------------------------- linear probe

def test_linear_probe_recovers_planted_classes_and_shuffled_is_chance(tmp_path):
    train, test = planted(seed=0), planted(seed=1, first_id=1000)
    names = [f"class{c}" for c in range(5)]
    res = linear_probe(train, test, names, Cs=(0.01, 0.1, 1.0), cv_folds=3, out_dir=tmp_path)
    assert res["top1"] > 0.9 and res["video_top1"] > 0.9
    assert res["top5"] == 1.0  # 5 classes: top-5 covers everything
    assert set(res["per_class"]) == set(names) and all(0 <= a <= 1 for a in res["per_class"].values())
    assert res["protocol"]["C"] in (0.01, 0.1, 1.0) and "train only" in res["protocol"]["selection"]
    assert (tmp_path / "confusion_linear.png").is_file()
    # the test predictions, one row per clip in the original labels, load without pickle and give top1 back
    with np.load(res["predictions"], allow_pickle=False) as f:
        np.testing.assert_array_equal(f["video_ids"], test["video_ids"])
        np.testing.assert_array_equal(f["labels"], test["labels"])
        assert float(np.mean(f["pred"] == f["labels"])) == pytest.approx(res["top1"])

    shuffled = dict(train, labels=np.random.default_rng(0).permutation(train["labels"]))
    chance = linear_probe(shuffled, test, names, Cs=(0.01, 1.0), cv_folds=3)
    assert chance["top1"] < 0.4  # chance is 0.2


def test_model_selection_only_sees_train_rows(monkeypatch):
    train, test = planted(seed=0, videos_per_class=8), planted(seed=1, first_id=1000, videos_per_class=4)
    seen = []
    real = linear_mod._fit_select

    def spy(X, y, groups, *args, **kwargs):
        seen.append((X.copy(), y.copy(), groups.copy()))
        return real(X, y, groups, *args, **kwargs)

    monkeypatch.setattr(linear_mod, "_fit_select", spy)
    linear_probe(train, test, [str(c) for c in range(5)], Cs=(0.1, 1.0), cv_folds=3)
    assert len(seen) == 1
    X, y, groups = seen[0]
    np.testing.assert_array_equal(X, train["feats"].astype(np.float64))
    np.testing.assert_array_equal(groups, train["video_ids"])
    np.testing.assert_array_equal(y, train["labels"])
    train_rows = {r.tobytes() for r in X.astype(np.float32)}
    assert not any(r.tobytes() in train_rows for r in test["feats"])  # no test row ever reached selection


def test_test_set_given_as_a_function_is_fetched_during_the_fit_and_scores_the_same(monkeypatch):
    """run_linear hands the test split over as a function so that its extraction overlaps the C search: the
    function is called while the fit is still running, and the result is the one of the eager call."""
    train, test = planted(seed=0, videos_per_class=8), planted(seed=1, first_id=1000, videos_per_class=4)
    names = [str(c) for c in range(5)]
    eager = linear_probe(train, test, names, Cs=(0.1, 1.0), cv_folds=3)
    fitting, fetched, events = threading.Event(), threading.Event(), []
    real = linear_mod._fit_select

    def slow_fit(*args, **kwargs):
        fitting.set()
        fetched.wait(5)  # a fit that runs before (not during) the fetch waits in vain and finishes first
        events.append("fit done")
        return real(*args, **kwargs)

    def fetch_test():
        assert fitting.wait(5), "the fit had not started when the test features were asked for"
        events.append("test fetched")
        fetched.set()
        return test

    monkeypatch.setattr(linear_mod, "_fit_select", slow_fit)
    lazy = linear_probe(train, fetch_test, names, Cs=(0.1, 1.0), cv_folds=3)
    assert events == ["test fetched", "fit done"]
    for key in ("top1", "top5", "video_top1", "per_class", "cv_accuracy"):
        assert lazy[key] == eager[key], key


def test_cv_folds_never_split_a_video():
    from sklearn.model_selection import StratifiedGroupKFold

    data = planted(num_classes=3, videos_per_class=4, clips=3)
    assert linear_mod._num_folds(data["labels"], data["video_ids"], 5) == 4  # reduced: 4 videos per class
    splitter = StratifiedGroupKFold(n_splits=4, shuffle=True, random_state=0)
    for tr, va in splitter.split(data["feats"], data["labels"], data["video_ids"]):
        assert not set(data["video_ids"][tr]) & set(data["video_ids"][va])


def test_linear_probe_non_contiguous_labels():
    train, test = planted(num_classes=3, seed=0), planted(num_classes=3, seed=1, first_id=500)
    remap = np.array([4, 7, 9])
    train["labels"], test["labels"] = remap[train["labels"]], remap[test["labels"]]
    names = [f"n{i}" for i in range(10)]
    res = linear_probe(train, test, names, Cs=(0.1, 1.0), cv_folds=3)
    assert set(res["per_class"]) == {"n4", "n7", "n9"} and res["num_classes"] == 3
    assert res["top1"] > 0.9

    # A test class the classifier never saw is always an error (here: 1/4 of the test clips).
    extra = planted(num_classes=1, seed=2, first_id=900)
    extra["labels"] = np.full_like(extra["labels"], 2)
    test2 = {k: np.concatenate([test[k], extra[k]]) for k in ("feats", "labels", "video_ids")}
    res2 = linear_probe(train, test2, names, Cs=(1.0,), cv_folds=3)
    assert res2["top1"] <= 0.75 + 1e-9 and res2["per_class"]["n2"] == 0.0
    assert res2["protocol"]["test_clips_of_unseen_classes"] == len(extra["labels"])


def test_linear_probe_user_errors():
    data = planted(num_classes=2, videos_per_class=3)
    with pytest.raises(ValueError, match="unlabeled"):
        linear_probe(dict(data, labels=np.full_like(data["labels"], -1)), data, ["a", "b"])
    with pytest.raises(ValueError, match="'feats'"):
        linear_probe({"labels": data["labels"]}, data, ["a", "b"])
    with pytest.raises(ValueError, match="class_names"):
        linear_probe(data, data, ["a"])


def test_backbone_unchanged_by_extraction_and_probe():
    torch.manual_seed(0)
    enc = TinyConv()
    enc.train()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    rng = np.random.default_rng(0)
    values = [[int(v) for v in rng.integers(0, 255, 2)] for _ in range(8)]
    loader = video_batches(values, labels=[0, 1] * 4, views=2, batch=4)
    feats = extract_features(enc, loader, to_model_layout, "cpu")
    linear_probe(feats, feats, ["a", "b"], Cs=(1.0,), cv_folds=2)
    assert enc.training  # flag restored
    after = enc.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. BatchNorm running stats


# ---------------------------------------------------------------- kNN

def test_knn_votes_hand_worked():
    # Query [1, 0] vs train a=[1,0] (class 0), b=[.8,.6] (class 1), c=[0,1] (class 1): sims 1, .8, 0.
    train = {"feats": np.array([[1, 0], [0.8, 0.6], [0, 1]], np.float32), "labels": np.array([0, 1, 1]),
             "video_ids": np.array([0, 1, 2])}
    test = {"feats": np.array([[2.0, 0.0]], np.float32), "labels": np.array([0]), "video_ids": np.array([0])}
    # k=2, T=1: class 0 gets e^1 = 2.718 > class 1's e^0.8 = 2.226 -> correct.
    assert knn_classify(train, test, k=2, temperature=1.0)["top1"] == 1.0
    # k=3, T=1: class 1 gets e^0.8 + e^0 = 3.226 > 2.718 -> wrong.
    assert knn_classify(train, test, k=3, temperature=1.0)["top1"] == 0.0
    # k=3, T=0.1: e^10 = 22026 beats e^8 + e^0 = 2982 -> correct again (sharper weighting).
    res = knn_classify(train, test, k=3, temperature=0.1)
    assert res["top1"] == 1.0 and res["video_top1"] == 1.0 and res["protocol"]["k"] == 3
    votes = knn_votes(np.array([[1.0, 0.8, 0.0]]), np.array([[0, 1, 1]]), 2, 1.0)
    np.testing.assert_allclose(votes, [[math.e, math.exp(0.8) + 1.0]])


def test_knn_on_planted_classes_with_label_gaps():
    train, test = planted(num_classes=3, seed=0), planted(num_classes=3, seed=1, first_id=100)
    remap = np.array([4, 7, 9])
    train["labels"], test["labels"] = remap[train["labels"]], remap[test["labels"]]
    res = knn_classify(train, test, k=10, chunk=7)
    assert res["top1"] > 0.9 and res["video_top1"] > 0.9
    assert knn_classify(train, test, k=10, num_classes=10)["top1"] == pytest.approx(res["top1"])


# ---------------------------------------------------------------- fine-tuning

class BrightnessVideos(torch.utils.data.Dataset):
    """Class 0 = dark clips, class 1 = bright clips (an easy, separable task)."""

    classes = ["dark", "bright"]

    def __init__(self, n: int, views: int, seed: int, size: int = 8):
        g = torch.Generator().manual_seed(seed)
        self.labels = [i % 2 for i in range(n)]
        self.videos = []
        for y in self.labels:
            base = 60 if y == 0 else 190
            noise = torch.randint(-40, 40, (views, 4, 3, size, size), generator=g)
            self.videos.append((base + noise).to(torch.uint8))

    def __len__(self):
        return len(self.labels)

    def set_epoch(self, epoch):
        pass

    def __getitem__(self, i):
        return {"video": self.videos[i], "label": self.labels[i], "index": i, "path": f"{i}.mp4"}


# Fine-tuning runs on the training engine, on 4x8x8 clips whose class is their brightness. Its own augmentation
# (eval.finetune_augment=crop) has no colour jitter or grayscale; the aug.* here keep pretraining's without either too.
FT = ["data.size=8", "data.decode_size=8", "data.num_workers=0", "optim.batch_size=4", "train.log_every=1",
      "aug.jitter=false", "aug.gray=false", "aug.blur=false", "aug.min_scale=0.5", "train.device=cpu",
      "eval.finetune_lr=0.1", "eval.finetune_weight_decay=0"]


def test_finetune_on_the_engine_backbone_lr_and_loss_decreases(tmp_path):
    cfg = load_config(None, [*FT, "eval.finetune_epochs=6"])
    test = torch.utils.data.DataLoader(BrightnessVideos(8, 2, seed=1), batch_size=4)
    res = finetune(TinyConv(), cfg, tmp_path / "ft", BrightnessVideos(16, 1, seed=0), test, quiet=True)
    losses = [h["loss"] for h in res["history"]]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0]
    assert res["top1"] >= 0.9 and res["video_top1"] >= 0.9 and 0 <= res["top5"] <= 1
    assert res["selected_epoch"] == 5 and "last epoch" in res["protocol"]["selection"]
    # a run folder like pretraining's: config, per-step metrics, a resumable checkpoint, the result
    out = tmp_path / "ft"
    assert (out / "config.yaml").is_file() and (out / "finetune.json").is_file()
    steps = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert len(steps) == 6 * 4 and max(r["lr"] for r in steps) == pytest.approx(0.1)  # peak after warm-up
    state = load_checkpoint(res["checkpoint"])
    assert state["kind"] == "finetune" and state["epoch"] == 6 and state["final"]
    lrs = {g["lr_scale"]: g["lr"] for g in state["optimizer"]["param_groups"]}
    assert set(lrs) == {0.1, 1.0} and lrs[0.1] == pytest.approx(0.1 * lrs[1.0])  # backbone at head lr / 10
    assert state["config"]["optim"]["name"] == "sgd" and state["config"]["train"]["epochs"] == 6


def test_finetune_resumes_and_rejects_bad_labels(tmp_path):
    cfg = load_config(None, [*FT, "eval.finetune_epochs=2"])
    train = BrightnessVideos(12, 1, seed=0)
    first = finetune(TinyConv(), cfg, tmp_path / "ft", train, None, quiet=True)
    assert "top1" not in first and len(first["history"]) == 2  # no test split
    # a finished run is reused, not retrained: same checkpoint, same history
    again = finetune(TinyConv(), cfg, tmp_path / "ft", train, None, quiet=True)
    assert again["history"] == first["history"]
    # a run continues only with its own settings: another lr is refused naming both values; more epochs continue
    with pytest.raises(ConfigError, match=r"optim.lr: stored 0.1, requested 0.5"):
        finetune(TinyConv(), load_config(None, [*FT, "eval.finetune_epochs=2", "eval.finetune_lr=0.5"]),
                 tmp_path / "ft", train, None, quiet=True)
    longer = finetune(TinyConv(), load_config(None, [*FT, "eval.finetune_epochs=3"]), tmp_path / "ft", train, None,
                      quiet=True)
    assert len(longer["history"]) == 3 and longer["history"][:2] == first["history"]
    bad = BrightnessVideos(12, 1, seed=0)
    bad.classes = ["only"]
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        finetune(TinyConv(), cfg, tmp_path / "bad", bad, None, quiet=True)


# Pretraining's augmentation turned all the way up: every clip colour-jittered and grayscale, crops down to 8%.
STRONG = ["aug.jitter=true", "aug.gray=true", "aug.jitter_p=1", "aug.gray_p=1", "aug.min_scale=0.08"]


class SeenClips(TinyConv):
    """TinyConv that keeps the clips it is trained on (model layout, normalised)."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        if self.training:
            self.seen.append(x.detach().clone())
        return super().forward(x)


def channel_gaps(clips: torch.Tensor) -> torch.Tensor:
    """Per clip, the largest difference between its red and green values in [0, 1] (0 for a grayscale clip)."""
    from videocontrast.transforms.functional import denormalize

    rgb = denormalize(clips)  # (N, T, C, H, W)
    return (rgb[:, :, 0] - rgb[:, :, 1]).abs().amax(dim=(1, 2, 3))


def test_supervised_objectives_train_with_their_own_augmentation_not_pretrainings(tmp_path):
    from videocontrast.build.components import build_augment
    from videocontrast.engine.train import fit
    from videocontrast.methods import Supervised

    cfg = load_config(None, [*FT, *STRONG, "train.epochs=1"])
    spy = SeenClips()
    fit(cfg, tmp_path / "fit", Supervised(spy, 2), BrightnessVideos(8, 1, seed=0), kind="finetune", quiet=True)
    seen = torch.cat(spy.seen)
    assert len(seen) == 8 and (channel_gaps(seen) > 0.05).all()  # no clip the classifier trained on is grayscale
    # pretraining keeps its augmentation: these settings make every pretraining clip grayscale ...
    batch = torch.stack([BrightnessVideos(4, 1, seed=0)[i]["video"][0] for i in range(4)])  # (4, T, C, H, W)
    assert (channel_gaps(build_augment(cfg)(batch, generator=torch.Generator().manual_seed(0))) < 1e-3).all()
    assert build_augment(cfg).scale == (0.08, 1.0)
    # ... while the engine's supervised objectives get crops of at least half the frame, flips and no colour
    for kind in ("finetune", "supervised"):
        aug = build_augment(cfg, kind)
        assert aug.scale == (0.5, 1.0) and aug.crop and aug.flip and not (aug.jitter or aug.gray or aug.blur)
    # the thesis code's choice: the whole frame resized, nothing random
    resize = build_augment(load_config(None, [*FT, *STRONG, "eval.finetune_augment=resize"]), "supervised")
    assert not (resize.crop or resize.flip or resize.jitter or resize.gray or resize.blur)
    # and the old behaviour on request
    same = build_augment(load_config(None, [*FT, *STRONG, "eval.finetune_augment=pretrain"]), "finetune")
    assert same.scale == (0.08, 1.0) and same.jitter_p == 1.0 and same.gray_p == 1.0


def test_finetune_records_its_augmentation_and_a_resume_cannot_change_it(tmp_path):
    from videocontrast.engine.checkpoint import save_checkpoint

    cfg = load_config(None, [*FT, *STRONG, "eval.finetune_epochs=2"])
    train = BrightnessVideos(12, 1, seed=0)
    out = tmp_path / "ft"
    res = finetune(TinyConv(), cfg, out, train, None, quiet=True)
    for protocol in (res["protocol"], json.loads((out / "finetune.json").read_text())["protocol"]):
        assert protocol["augment"] == "crop"
        assert protocol["augment_spatial"].startswith("random resized crop (0.5-1 of the frame's area")
        assert "colour jitter" not in protocol["augment_spatial"] and "grayscale" not in protocol["augment_spatial"]
    # the run's own config holds the augmentation it trained with
    stored = load_checkpoint(res["checkpoint"])["config"]
    assert stored["eval"]["finetune_augment"] == "crop"
    assert stored["aug"]["min_scale"] == 0.5 and not stored["aug"]["jitter"] and not stored["aug"]["gray"]
    # another augmentation does not continue it (nor reuse it when finished): refused naming the fields
    with pytest.raises(ConfigError, match=r"aug\.crop: stored true, requested false.*eval\.finetune_augment=resize"):
        finetune(TinyConv(), load_config(None, [*FT, *STRONG, "eval.finetune_epochs=2",
                                                "eval.finetune_augment=resize"]), out, train, None, quiet=True)
    # a run written before eval.finetune_augment existed trained with pretraining's augmentation: a resume with
    # the new default is refused and says how to continue it; eval.finetune_augment=pretrain continues it
    old = tmp_path / "old"
    first = finetune(TinyConv(), load_config(None, [*FT, *STRONG, "eval.finetune_epochs=2",
                                                    "eval.finetune_augment=pretrain"]), old, train, None, quiet=True)
    state = load_checkpoint(first["checkpoint"])
    del state["config"]["eval"]["finetune_augment"]
    save_checkpoint(first["checkpoint"], state)
    with pytest.raises(ConfigError, match=r"aug\.gray_p: stored 1\.0, requested 0\.0.*eval\.finetune_augment=pretrain"):
        finetune(TinyConv(), load_config(None, [*FT, *STRONG, "eval.finetune_epochs=3"]), old, train, None, quiet=True)
    longer = finetune(TinyConv(), load_config(None, [*FT, *STRONG, "eval.finetune_epochs=3",
                                                     "eval.finetune_augment=pretrain"]), old, train, None, quiet=True)
    assert len(longer["history"]) == 3 and longer["protocol"]["augment"] == "pretrain"
    assert "grayscale p 1" in longer["protocol"]["augment_spatial"]


class TransformedBrightness(BrightnessVideos):
    """BrightnessVideos whose items go through ``transform`` when one is set (as VideoDataset's do)."""

    transform = None

    def __getitem__(self, i):
        item = super().__getitem__(i)
        return {**item, "video": self.transform(item["video"])} if self.transform is not None else item


def test_finetune_with_aug_on_device_false_augments_in_the_loader_with_its_own_augmentation(tmp_path, monkeypatch):
    import importlib

    from videocontrast.transforms.spatial import ClipAugment

    ft_mod = importlib.import_module("videocontrast.eval.finetune")  # (the package's `finetune` is the function)

    handed = []
    real_fit = ft_mod.fit

    def spy_fit(cfg, out_dir, model, dataset, **kwargs):
        handed.append(dataset)
        return real_fit(cfg, out_dir, model, dataset, **kwargs)

    monkeypatch.setattr(ft_mod, "fit", spy_fit)
    train = TransformedBrightness(8, 1, seed=0)
    spy = SeenClips()
    finetune(spy, load_config(None, [*FT, *STRONG, "aug.on_device=false", "eval.finetune_epochs=1"]),
             tmp_path / "ft", train, None, quiet=True)
    aug = handed[0].transform
    assert isinstance(aug, ClipAugment) and aug.scale == (0.5, 1.0) and not (aug.jitter or aug.gray)
    assert train.transform is None  # the caller's dataset is left as it was
    assert len(spy.seen) == 2 and (channel_gaps(torch.cat(spy.seen)) > 0.05).all()
