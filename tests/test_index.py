"""The FAISS index (videocontrast.search.index) against NumPy brute force: exact kinds give the same neighbours, IVF
reaches its recall target on clustered vectors and says so in index.json, filters keep only allowed rows,
unstructured vectors fall back to exact search, a damaged index is one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

faiss = pytest.importorskip("faiss", reason="faiss is not installed: pip install 'videocontrast[search]'")

from videocontrast.search.index import build_index, default_nlist, load_index, save_index, search_index  # noqa: E402


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, d: int = 64, clusters: int = 50, seed: int = 0) -> np.ndarray:
    centres = np.random.default_rng(1234).standard_normal((clusters, d)) * 2  # the same for every seed
    rng = np.random.default_rng(seed)
    return unit(centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, d)))


def brute(x: np.ndarray, q: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    sims = q @ x.T
    if allowed is not None:
        mask = np.zeros(len(x), bool)
        mask[allowed] = True
        sims[:, ~mask] = -np.inf
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def test_flat_is_exact(tmp_path):
    x = clustered(2000)
    q = clustered(20, seed=1)
    index, params = build_index(x)  # auto: small -> exact
    assert params["kind"] == "flat" and params["count"] == 2000 and params["dim"] == 64
    sims, rows = search_index(index, q, 10)
    np.testing.assert_array_equal(rows, brute(x, q, 10))
    np.testing.assert_allclose(sims, np.take_along_axis(q @ x.T, rows, 1), atol=1e-5)


def test_ivf_reaches_its_recall_target_and_writes_its_parameters(tmp_path):
    x = clustered(20000)
    q = clustered(200, seed=1)
    index, params = build_index(x, "ivf", target_recall=0.95)
    assert params["nlist"] == default_nlist(20000) and params["train_size"] <= 20000
    assert params["tuned_recall_at_10"] >= 0.95 and 1 <= params["nprobe"] <= params["nlist"]
    save_index(index, params, tmp_path)
    stored = json.loads((tmp_path / "index.json").read_text())
    assert stored == params
    loaded, _ = load_index(tmp_path)
    assert loaded.nprobe == params["nprobe"]
    _, rows = search_index(loaded, q, 10)
    truth = brute(x, q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, truth)])
    assert recall >= 0.93  # fresh queries from the same clusters: about the tuned rate


def test_unstructured_vectors_fall_back_to_exact_search():
    rng = np.random.default_rng(0)
    x = unit(rng.standard_normal((60000, 32)))  # above FLAT_MAX, no clusters for IVF to use
    index, params = build_index(x, "auto")
    assert params["kind"] == "flat" and "fallback" in params and "nprobe=" in params["fallback"]


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_filters_keep_only_allowed_rows(kind):
    x = clustered(5000)
    q = clustered(10, seed=2)
    allowed = np.arange(0, 5000, 7)
    index, _ = build_index(x, kind, nprobe=None if kind == "flat" else 64)
    _, rows = search_index(index, q, 5, allowed=allowed)
    assert set(rows.ravel().tolist()) <= set(allowed.tolist())
    if kind == "flat":
        np.testing.assert_array_equal(rows, brute(x, q, 5, allowed))
    _, rows = search_index(index, q, 5, allowed=np.array([3, 4]))
    assert (rows[:, 2:] == -1).all() and set(rows[:, :2].ravel().tolist()) == {3, 4}  # -1 pads


def test_a_damaged_index_is_one_line(tmp_path):
    index, params = build_index(clustered(100))
    save_index(index, params, tmp_path)
    (tmp_path / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="index.faiss.*damaged"):
        load_index(tmp_path)
    with pytest.raises(FileNotFoundError, match="videocontrast embed"):
        load_index(tmp_path / "nothing")
