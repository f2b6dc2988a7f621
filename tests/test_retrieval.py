"""Tests for videocontrast.eval.retrieval: exact cosine search, Recall@k and video-level retrieval."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videocontrast.eval.retrieval import nearest_neighbours, recall_at_k, retrieve, video_embeddings


def unit(degrees):
    r = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(r), np.sin(r)], axis=1).astype(np.float32)


# Gallery on the unit circle; cosine order = angular distance order.
GALLERY = unit([0, 20, 45, 90, 135, 180])
GALLERY_LABELS = np.array([0, 1, 0, 2, 1, 2])
QUERIES = unit([12, 5, 80, 170])
QUERY_LABELS = np.array([1, 2, 0, 1])
# Hand-worked neighbour orders:
#   q0 (12 deg, class 1): g1 (8 deg, class 1) g0 (12) g2 (33)  -> hit at k=1
#   q1 ( 5 deg, class 2): g0 (class 0) g1 (1) g2 (0)           -> miss up to k=3 (class 2 first at rank 4: g3)
#   q2 (80 deg, class 0): g3 (class 2) g2 (0) g4 (1)           -> hit from k=2
#   q3 (170 deg, class 1): g5 (class 2) g4 (1) g3 (2)          -> hit from k=2


def test_recall_at_k_hand_worked():
    r = recall_at_k(QUERIES, QUERY_LABELS, GALLERY, GALLERY_LABELS, ks=(1, 2, 3, 4, 10))
    assert r["R@1"] == pytest.approx(1 / 4)
    assert r["R@2"] == pytest.approx(3 / 4)
    assert r["R@3"] == pytest.approx(3 / 4)
    assert r["R@4"] == pytest.approx(1.0)  # q1 finds g3 (class 2) at rank 4
    assert r["R@10"] == pytest.approx(1.0)  # k > gallery size: clipped to the whole gallery


def test_nearest_neighbours_hand_worked_order_and_clipping():
    sims, idx = nearest_neighbours(QUERIES, GALLERY, k=3, chunk=2)
    assert idx.tolist() == [[1, 0, 2], [0, 1, 2], [3, 2, 4], [5, 4, 3]]
    np.testing.assert_allclose(sims[0], np.cos(np.deg2rad([8, 12, 33])), atol=1e-6)
    sims, idx = nearest_neighbours(QUERIES, GALLERY, k=100)
    assert idx.shape == (4, 6) and sorted(idx[0].tolist()) == list(range(6))


def test_recall_is_invariant_to_feature_scale():
    rng = np.random.default_rng(0)
    scaled_q = QUERIES * rng.uniform(0.1, 10, size=(4, 1)).astype(np.float32)
    scaled_g = GALLERY * rng.uniform(0.1, 10, size=(6, 1)).astype(np.float32)
    ks = (1, 2, 3)
    assert recall_at_k(scaled_q, QUERY_LABELS, scaled_g, GALLERY_LABELS, ks) == \
        recall_at_k(QUERIES, QUERY_LABELS, GALLERY, GALLERY_LABELS, ks)


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 4096])
def test_chunked_search_equals_brute_force(chunk):
    rng = np.random.default_rng(chunk)
    q = rng.normal(size=(23, 16)).astype(np.float32)
    g = rng.normal(size=(41, 16)).astype(np.float32) * rng.uniform(0.5, 3, size=(41, 1)).astype(np.float32)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    brute = qn.astype(np.float64) @ gn.astype(np.float64).T
    ref_idx = np.argsort(-brute, axis=1)[:, :5]
    sims, idx = nearest_neighbours(q, g, k=5, chunk=chunk)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(sims, np.take_along_axis(brute, ref_idx, axis=1), atol=1e-5)
    # torch input gives the same answer
    _, idx_t = nearest_neighbours(torch.from_numpy(q), torch.from_numpy(g), k=5, chunk=chunk)
    np.testing.assert_array_equal(idx_t, ref_idx)


def test_faiss_path_matches_when_available():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(10, 8)), rng.normal(size=(30, 8))
    np.testing.assert_array_equal(nearest_neighbours(q, g, 4, use_faiss=True)[1], nearest_neighbours(q, g, 4)[1])


def test_video_embeddings_hand_worked():
    feats = np.array([[1, 0], [3, 0], [0, 2]], np.float32)
    emb = video_embeddings(feats, np.array([1, 1, 0]))
    np.testing.assert_allclose(emb, [[0, 1], [1, 0]])  # rows in sorted id order: video 0, video 1


def test_retrieve_video_level():
    # Each video's 2 clips straddle the video's direction (+-10 deg), so the clip mean points along it.
    def split(angles, labels, first_id):
        clip_angles = [a + d for a in angles for d in (-10, 10)]
        return {"feats": unit(clip_angles) * 3, "labels": np.repeat(labels, 2),
                "video_ids": np.repeat(np.arange(first_id, first_id + len(angles)), 2),
                "paths": [f"{first_id + i}.mp4" for i in range(len(angles))]}

    train = split([0, 20, 45, 90, 135, 180], GALLERY_LABELS, 100)
    test = split([12, 5, 80, 170], QUERY_LABELS, 0)
    res = retrieve(train, test, ks=(1, 2, 3), class_names=["a", "b", "c"], report_k=3)
    assert (res["R@1"], res["R@2"], res["R@3"]) == pytest.approx((0.25, 0.75, 0.75))
    assert res["num_queries"] == 4 and res["gallery_size"] == 6
    q2 = res["neighbours"][2]
    assert q2["path"] == "2.mp4" and q2["label_name"] == "a"
    assert [n["video_id"] for n in q2["neighbours"]] == [103, 102, 104]
    assert [n["hit"] for n in q2["neighbours"]] == [False, True, False]
    assert q2["neighbours"][0]["path"] == "103.mp4" and q2["neighbours"][0]["label_name"] == "c"
    assert res["protocol"]["similarity"] == "cosine" and res["protocol"]["clips_per_video"] == 2
