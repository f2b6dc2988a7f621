"""One definition of a video's embedding and one exact nearest-neighbour search (issue 22).

References are independent of videocontrast.eval.embedding: a hand-worked example, NumPy brute force, and the
folder `videocontrast embed` writes compared with the vectors `retrieve` ranks with.
"""

from __future__ import annotations

import numpy as np
import pytest

from videocontrast.eval.embedding import group_by_video, l2_normalize, top_k, video_embedding, video_embeddings


def test_video_embedding_hand_worked_clips_of_very_different_norms():
    # clip 0 = 100 * (1, 0), clip 1 = 0.01 * (0, 1). Normalised: (1, 0) and (0, 1); mean (0.5, 0.5);
    # normalised: (1, 1) / sqrt(2). The raw mean (50, 0.005) would point almost exactly along clip 0.
    clips = np.array([[100, 0], [0, 0.01]], np.float32)
    np.testing.assert_allclose(video_embedding(clips), [2 ** -0.5, 2 ** -0.5], atol=1e-7)
    assert video_embedding(clips).dtype == np.float32


def test_video_embeddings_group_clips_by_video_id_in_sorted_order():
    feats = np.array([[0, 3], [100, 0], [0, 0.5], [4, 0]], np.float32)
    ids = np.array([7, 2, 2, 7])  # clips of one video need not be consecutive
    got_ids, groups = group_by_video(feats, ids)
    assert got_ids.tolist() == [2, 7] and [g.tolist() for g in groups] == [[[100, 0], [0, 0.5]], [[0, 3], [4, 0]]]
    np.testing.assert_allclose(video_embeddings(feats, ids), [[2 ** -0.5, 2 ** -0.5], [2 ** -0.5, 2 ** -0.5]],
                               atol=1e-7)
    assert l2_normalize(np.zeros((1, 3))).tolist() == [[0, 0, 0]]  # a zero row stays zero


def brute(q: np.ndarray, g: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    sims = q.astype(np.float64) @ g.astype(np.float64).T
    if exclude is not None:
        sims[np.arange(len(q)), exclude] = -np.inf
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, idx, 1), idx


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 4096])
def test_top_k_equals_brute_force_whatever_the_chunk(chunk):
    rng = np.random.default_rng(chunk)
    q = l2_normalize(rng.normal(size=(23, 16)))
    g = l2_normalize(rng.normal(size=(41, 16)))
    sims, idx = top_k(q, g, 5, chunk=chunk)
    ref_sims, ref_idx = brute(q, g, 5)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(sims, ref_sims, atol=1e-5)
    assert top_k(q, g, 100, chunk=chunk)[1].shape == (23, 41)  # k clipped to the gallery
    # block products on a torch device give the same answer (the GPU path, run here on the CPU)
    t_sims, t_idx = top_k(q, g, 5, chunk=chunk, device="cpu", exclude=np.arange(23))
    np.testing.assert_array_equal(t_idx, brute(q, g, 5, exclude=np.arange(23))[1])
    np.testing.assert_allclose(t_sims, brute(q, g, 5, exclude=np.arange(23))[0], atol=1e-5)


@pytest.mark.parametrize("chunk", [2, 5, 4096])
def test_top_k_leaves_out_each_query_s_own_row_even_when_duplicated(chunk):
    rng = np.random.default_rng(1)
    x = l2_normalize(rng.normal(size=(30, 8)))
    x[7] = x[3]  # an exact duplicate: row 3 must find row 7 and never itself
    sims, idx = top_k(x, x, 4, chunk=chunk, exclude=np.arange(30))
    ref_sims, ref_idx = brute(x, x, 4, exclude=np.arange(30))
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(sims, ref_sims, atol=1e-5)
    assert idx[3, 0] == 7 and idx[7, 0] == 3 and not (idx == np.arange(30)[:, None]).any()
    assert top_k(x, x, 100, chunk=chunk, exclude=np.arange(30))[1].shape == (30, 29)  # at most G - 1
    # queries that are some of the gallery's rows (as the index's recall tuning asks)
    rows = np.array([29, 0, 12])
    np.testing.assert_array_equal(top_k(x[rows], x, 3, chunk=chunk, exclude=rows)[1],
                                  brute(x[rows], x, 3, exclude=rows)[1])


def test_top_k_ranks_exact_ties_by_row_index_across_chunks():
    g = l2_normalize(np.array([[1, 0], [0, 1], [1, 0], [1, 0], [0, 1], [1, 0]], np.float32))
    for chunk in (1, 2, 4, 4096):
        assert top_k(g[:1], g, 3, chunk=chunk)[1].tolist() == [[0, 2, 3]]


# ------------------------------------------------------------------ retrieve ranks what `embed` stores


def test_retrieve_ranks_with_the_vectors_embed_stores(tmp_path):
    pytest.importorskip("pyarrow", reason="the embedding table is Parquet")
    from pathlib import Path

    from test_embed import write_video
    from test_export import TINY, make_checkpoint

    from videocontrast.build.encoder import load_weights
    from videocontrast.config import load_config
    from videocontrast.eval.retrieval import retrieve, video_vectors
    from videocontrast.eval.run import features
    from videocontrast.search.embed import embed_collection, read_table

    root = tmp_path / "data"
    for i, (subset, label, n) in enumerate([("train", "a", 16), ("train", "b", 20), ("train", "a", 24),
                                            ("test", "a", 12), ("test", "b", 40), ("test", "b", 18)]):
        write_video(root / subset / label / f"v{i}.mp4", n, seed=i)
    ckpt = make_checkpoint(tmp_path / "last.pt")
    cfg = load_config("demo", ["data.dataset=folder", f"data.root={root}", *TINY])
    enc = load_weights(ckpt, cfg, "cpu")
    train, test = (features(enc, s, "cpu", tmp_path / "cache") for s in ("train", "test"))

    stored = {}
    for subset in ("train", "test"):
        out = embed_collection(ckpt, root / subset, tmp_path / f"{subset}.emb", clips=enc.cfg.data.eval_clips,
                               progress=False, index_kind=None)
        for p, v in zip(read_table(out)["path"], np.load(out / "embeddings.npy")):
            stored[str(Path(p).resolve())] = v
    vectors = {}
    for feats in (train, test):
        emb, ids = video_vectors(feats)
        assert len(emb) == len(ids) == len(feats["paths"]) == 3
        vectors.update({str(Path(p).resolve()): v for p, v in zip(feats["paths"], emb)})
    assert sorted(vectors) == sorted(stored)
    for path, v in vectors.items():
        np.testing.assert_allclose(v, stored[path], atol=1e-5, err_msg=path)

    # the Python API gives the same vectors (vc.embed_videos on the same checkpoint and videos)
    import videocontrast as vc

    paths = sorted(stored)
    api = vc.embed_videos(vc.load_encoder(ckpt), paths, clips_per_video=enc.cfg.data.eval_clips)
    np.testing.assert_allclose(api, np.stack([stored[p] for p in paths]), atol=1e-5)

    # and retrieve's similarities are those of the stored vectors
    res = retrieve(train, test, ks=(1, 3), report_k=3)
    for query in res["neighbours"]:
        q = stored[str(Path(query["path"]).resolve())]
        for n in query["neighbours"]:
            assert n["sim"] == pytest.approx(float(q @ stored[str(Path(n["path"]).resolve())]), abs=1e-5)


def test_search_without_an_index_is_the_same_exact_search_with_filters_and_padding():
    from pathlib import Path

    from videocontrast.search.query import Collection, search_rows

    rng = np.random.default_rng(3)
    emb = l2_normalize(rng.normal(size=(50, 8)))
    q = l2_normalize(rng.normal(size=(4, 8)))
    col = Collection(Path("."), emb, {"path": np.array([f"{i}.mp4" for i in range(50)])}, {})
    sims, rows = search_rows(col, q, 5, None)
    np.testing.assert_array_equal(rows, brute(q, emb, 5)[1])
    np.testing.assert_allclose(sims, brute(q, emb, 5)[0], atol=1e-5)
    allowed = np.arange(0, 50, 7)
    _, rows = search_rows(col, q, 5, allowed)
    np.testing.assert_array_equal(rows, allowed[brute(q, emb[allowed], 5)[1]])
    sims, rows = search_rows(col, q, 5, np.array([3, 4]))  # fewer allowed rows than k: padded as FAISS pads
    assert (rows[:, 2:] == -1).all() and np.isinf(sims[:, 2:]).all() and set(rows[:, :2].ravel()) == {3, 4}
