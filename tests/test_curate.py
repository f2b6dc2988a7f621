"""``videocontrast curate`` (search.curate): near-duplicate groups, outliers and labelling queues on hand-built
embeddings whose answer is known, checked against brute force, then the commands on a real embedding folder and
their one-line refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from videocontrast.cli import main
from videocontrast.eval.embedding import l2_normalize
from videocontrast.search.curate import (duplicate_groups, k_center, knn_graph, otsu_threshold, outlier_scores,
                                         select)
from videocontrast.search.shards import TABLE_COLUMNS, write_table


def clusters(rng, centres: int, per: int, dim: int = 16, spread: float = 0.05) -> np.ndarray:
    c = l2_normalize(rng.normal(size=(centres, dim)))
    return l2_normalize(np.repeat(c, per, 0) + spread * rng.normal(size=(centres * per, dim)))


def brute_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, idx, 1), idx


def write_folder(folder: Path, emb: np.ndarray, labels: list[str] | None = None,
                 paths: list[str] | None = None) -> Path:
    """An embedding folder as `videocontrast embed` writes it (table, embeddings.npy, meta.json), by hand; row i's
    path is ``paths[i]`` (default ``/videos/v{i:03d}.mp4``)."""
    folder.mkdir(parents=True)
    paths = paths or [f"/videos/v{i:03d}.mp4" for i in range(len(emb))]
    rows = [{c: "" for c in TABLE_COLUMNS} | {"path": paths[i], "label": (labels or [""] * len(emb))[i],
                                              "start": float("nan"), "end": float("nan"), "clip": -1,
                                              "clip_start": 0.0, "clip_end": 1.0, "duration": 1.0, "size": 1,
                                              "mtime_ns": 0} for i in range(len(emb))]
    write_table(rows, folder)
    np.save(folder / "embeddings.npy", emb.astype(np.float32))
    (folder / "meta.json").write_text(json.dumps({"checkpoint": "random", "clips": 1, "count": len(emb),
                                                  "dim": emb.shape[1]}))
    return folder


# ------------------------------------------------------------------ the algorithms, by hand and by brute force

def test_knn_graph_is_brute_force_without_self():
    x = clusters(np.random.default_rng(0), 5, 9)
    sims, rows = knn_graph(x, 4)
    bs, bi = brute_knn(x, 4)
    np.testing.assert_allclose(sims, bs, atol=1e-5)
    assert (rows != np.arange(len(x))[:, None]).all()
    np.testing.assert_array_equal(np.sort(rows, 1), np.sort(bi, 1))


def test_knn_graph_through_a_faiss_index_drops_each_row_itself():
    pytest.importorskip("faiss", reason="the FAISS index path needs faiss-cpu")
    from videocontrast.search.index import build_index

    x = clusters(np.random.default_rng(1), 4, 10)
    x[7] = x[3]  # an exact copy: its own row and the copy tie at similarity 1
    index, _ = build_index(x, kind="flat")
    sims, rows = knn_graph(x, 5, index=index)
    assert (rows != np.arange(len(x))[:, None]).all()
    assert rows[3, 0] == 7 and rows[7, 0] == 3 and sims[3, 0] == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(sims, brute_knn(x, 5)[0], atol=1e-5)


def test_two_exact_copies_make_one_group_and_the_keep_list_drops_one():
    rng = np.random.default_rng(2)
    x = l2_normalize(rng.normal(size=(30, 32)))  # random directions: far apart in 32-d
    x[17] = x[4]
    dup = duplicate_groups(x, threshold=0.99)
    assert [sorted(g.tolist()) for g in dup.groups] == [[4, 17]]
    assert dup.similarity[4] == pytest.approx(1.0) and dup.similarity[17] == pytest.approx(1.0)
    assert len(dup.keep) == 29 and (4 in dup.keep) != (17 in dup.keep)


def test_groups_are_the_connected_components_above_the_threshold():
    # a chain a-b-c (each pair of neighbours above 0.9, a and c not) is one group; d alone is none
    ang = np.deg2rad([0, 20, 40, 120])
    x = np.stack([np.cos(ang), np.sin(ang)], 1).astype(np.float32)  # cos 20deg = 0.94, cos 40deg = 0.77
    dup = duplicate_groups(x, threshold=0.9, k=3)
    assert [sorted(g.tolist()) for g in dup.groups] == [[0, 1, 2]]
    assert dup.groups[0][0] == 1  # the first video is the member nearest the group's mean
    assert sorted(dup.keep.tolist()) == [1, 3]


def test_otsu_splits_a_bimodal_sample_between_its_modes():
    rng = np.random.default_rng(3)
    v = np.concatenate([rng.normal(0.3, 0.05, 900), rng.normal(0.95, 0.01, 100)])
    t = otsu_threshold(v)
    assert 0.45 < t < 0.9
    # and --auto on clustered data with planted copies groups exactly the copies
    x = l2_normalize(rng.normal(size=(60, 64)))
    x[30:40] = l2_normalize(x[:10] + 0.01 * rng.normal(size=(10, 64)))
    dup = duplicate_groups(x, None, k=3)
    assert sorted(sorted(g.tolist()) for g in dup.groups) == [[i, 30 + i] for i in range(10)]
    assert "auto" in dup.chosen_by


def test_a_far_point_is_the_top_outlier():
    rng = np.random.default_rng(4)
    x = clusters(rng, 3, 12)
    far = l2_normalize(rng.normal(size=(1, 16)))
    x = np.concatenate([x[:20], far, x[20:]])
    sims, _ = knn_graph(x, 5)
    score = outlier_scores(sims)
    assert int(np.argmax(score)) == 20
    np.testing.assert_allclose(score, 1 - brute_knn(x, 5)[0].mean(1), atol=1e-5)


def test_k_center_picks_the_farthest_point_second_and_covers_every_cluster():
    ang = np.deg2rad([0, 10, 20, 170, 90])
    x = np.stack([np.cos(ang), np.sin(ang)], 1).astype(np.float32)
    q = k_center(x, 3)
    assert q[0] == int(np.argmax(x @ x.mean(0)))  # the row nearest the mean first
    assert q[1] == int(np.argmin(x @ x[q[0]]))  # then the farthest from it
    rng = np.random.default_rng(5)
    x = clusters(rng, 6, 20, spread=0.02)
    q = k_center(x, 6)
    assert sorted(set((q // 20).tolist())) == list(range(6))  # one per cluster


def test_typical_takes_one_dense_row_per_cluster_largest_first_and_random_is_seeded():
    rng = np.random.default_rng(6)
    x = np.concatenate([clusters(rng, 1, 30, spread=0.03), clusters(rng, 1, 10, spread=0.03)])
    q = select(x, 2, "typical", seed=0)
    assert q[0] < 30 <= q[1]  # the 30-row cluster first, then the 10-row one
    sims, _ = knn_graph(x)
    typ = 1 - outlier_scores(sims)
    assert q[0] == int(np.argmax(typ[:30])) and q[1] == 30 + int(np.argmax(typ[30:]))
    r = select(x, 7, "random", seed=3)
    assert len(set(r.tolist())) == 7 and (r == select(x, 7, "random", seed=3)).all()
    for strategy in ("diverse", "typical", "random"):
        assert sorted(select(x, len(x), strategy).tolist()) == list(range(len(x)))  # a budget of all: each once


@pytest.mark.parametrize("budget", [0, 41])
def test_a_budget_outside_the_collection_is_refused(budget):
    x = clusters(np.random.default_rng(7), 2, 20)
    with pytest.raises(ValueError, match="--budget"):
        select(x, budget, "diverse")


# ------------------------------------------------------------------ the commands as a user runs them

def test_curate_commands_on_a_folder_write_csv_list_and_page(tmp_path, capsys):
    rng = np.random.default_rng(8)
    x = l2_normalize(rng.normal(size=(40, 32)))
    x[20:25] = l2_normalize(x[0:5] + 0.005 * rng.normal(size=(5, 32)))
    emb = write_folder(tmp_path / "v.emb", x, labels=[f"c{i % 4}" for i in range(40)])
    out = tmp_path / "cur"

    assert main(["curate", "duplicates", str(emb), "--threshold", "0.95", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "5 groups holding 10 of 40 videos; keeping 35, dropping 5" in said
    with open(out / "duplicates.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["group"] for r in rows} == {"1", "2", "3", "4", "5"} and len(rows) == 10
    pairs = {frozenset(int(r["row"]) for r in rows if r["group"] == g) for g in "12345"}
    assert pairs == {frozenset({i, 20 + i}) for i in range(5)}
    keep = (out / "keep.txt").read_text().splitlines()
    kept = {int(line.split()[0][-7:-4]) for line in keep}
    assert len(keep) == 35 and all(len(line.split()) == 2 for line in keep)  # path and label, as embed reads
    assert all((i in kept) != (20 + i in kept) for i in range(5)) and set(range(5, 20)) <= kept
    assert (out / "duplicates.html").is_file() and (out / "img" / "duplicates.png").is_file()

    assert main(["curate", "outliers", str(emb), "--top", "3", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "1 - mean cosine similarity to the 10 nearest rows" in said
    with open(out / "outliers.csv") as f:
        ranked = list(csv.DictReader(f))
    score = 1 - brute_knn(x, 10)[0].mean(1)
    assert [int(r["row"]) for r in ranked[:3]] == np.argsort(-score, kind="stable")[:3].tolist()
    assert (out / "outliers.html").is_file()

    assert main(["curate", "select", str(emb), "--budget", "8", "--strategy", "diverse", "--out", str(out)]) == 0
    queue = (out / "queue.txt").read_text().splitlines()
    assert len(queue) == 8 and len(set(queue)) == 8
    assert [line.split()[0] for line in queue] == [f"/videos/v{r:03d}.mp4" for r in k_center(x, 8)]
    assert json.loads((out / "queue.json").read_text())["strategy"] == "diverse"


def test_auto_says_the_threshold_it_chose(tmp_path, capsys):
    rng = np.random.default_rng(9)
    x = l2_normalize(rng.normal(size=(60, 64)))
    x[30:40] = l2_normalize(x[:10] + 0.01 * rng.normal(size=(10, 64)))
    emb = write_folder(tmp_path / "v.emb", x)
    assert main(["curate", "duplicates", str(emb), "--auto", "--out", str(tmp_path / "o")]) == 0
    said = capsys.readouterr().out
    t = json.loads((tmp_path / "o" / "duplicates.json").read_text())["threshold"]
    assert said.startswith(f"threshold {t:.4f} (auto (Otsu") and "10 groups holding 20 of 60 videos" in said


@pytest.mark.parametrize("argv, expect", [
    (["duplicates", "{missing}", "--threshold", "0.9"], "is not an embedding folder"),
    (["duplicates", "{damaged}", "--threshold", "0.9"], "is damaged"),
    (["duplicates", "{emb}", "--threshold", "1.5"], "--threshold 1.5 is not a cosine similarity"),
    (["duplicates", "{emb}", "--threshold", "nan"], "is not a cosine similarity"),
    (["select", "{emb}", "--budget", "0"], "--budget 0: give a number of videos from 1 to the collection's 12"),
    (["select", "{emb}", "--budget", "13"], "--budget 13"),
])
def test_bad_input_is_one_line(argv, expect, tmp_path, capsys):
    emb = write_folder(tmp_path / "v.emb", clusters(np.random.default_rng(10), 3, 4))
    damaged = write_folder(tmp_path / "d.emb", clusters(np.random.default_rng(11), 3, 4))
    (damaged / "meta.json").write_text("{not json")
    names = {"missing": str(tmp_path / "nothing"), "damaged": str(damaged), "emb": str(emb)}
    code = main(["curate", *[a.format(**names) for a in argv], "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and expect in err and len(err.strip().splitlines()) == 1, err


def test_curate_on_embedded_videos(tmp_path, capsys):
    """The whole chain on real decoded videos: embed a folder holding a file and its byte copy, then curate."""
    from test_embed import write_video
    from test_export import make_checkpoint

    from videocontrast.search.embed import embed_collection

    videos = tmp_path / "videos"
    for i, n in enumerate((12, 16, 20, 24)):
        write_video(videos / "a" / f"v{i}.mp4", n, seed=i)
    (videos / "b").mkdir()
    (videos / "b" / "copy.mp4").write_bytes((videos / "a" / "v2.mp4").read_bytes())
    ckpt = make_checkpoint(tmp_path / "last.pt")
    emb = embed_collection(ckpt, videos, tmp_path / "v.emb", clips=2, progress=False)
    out = tmp_path / "cur"
    assert main(["curate", "duplicates", str(emb), "--threshold", "0.9999", "--out", str(out)]) == 0
    with open(out / "duplicates.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(Path(r["path"]).name for r in rows) == ["copy.mp4", "v2.mp4"]
    assert len((out / "keep.txt").read_text().splitlines()) == 4
    assert main(["curate", "select", str(emb), "--budget", "2", "--strategy", "typical", "--out", str(out)]) == 0
    assert len((out / "queue.txt").read_text().splitlines()) == 2


# ------------------------------------------------------------------ a queue evaluated with --labelled

TINY = ["data.synthetic_videos_per_class=6", "data.synthetic_frames=12", "data.synthetic_size=24",
        "data.clip_len=4", "data.decode_size=24", "data.size=16", "model.width=8", "model.head_hidden=32",
        "optim.batch_size=8", "data.num_workers=0", "eval.cv_folds=2"]


@pytest.fixture(scope="module")
def synthetic_queue(tmp_path_factory):
    """The synthetic dataset's training videos in an embedding folder (vectors by hand) and a diverse queue."""
    from videocontrast.build.components import ensure_synthetic
    from videocontrast.config import load_config

    d = tmp_path_factory.mktemp("queue")
    root = d / "synthetic"
    ensure_synthetic(load_config("demo", [f"data.root={root}", *TINY]))
    train = sorted((root / "train").rglob("*.mp4"))
    emb = write_folder(d / "train.emb", l2_normalize(np.random.default_rng(0).normal(size=(len(train), 8))),
                       labels=[p.parent.name for p in train])
    table = json.loads((emb / "meta.json").read_text())
    rows = [{c: "" for c in TABLE_COLUMNS} | {"path": str(p), "label": p.parent.name, "start": float("nan"),
                                              "end": float("nan"), "clip": -1, "clip_start": 0.0, "clip_end": 1.0,
                                              "duration": 1.0, "size": 1, "mtime_ns": 0} for p in train]
    write_table(rows, emb)  # the real paths, so that --labelled can find them
    assert table["count"] == len(train)
    assert main(["curate", "select", str(emb), "--budget", "12", "--out", str(d / "cur")]) == 0
    return {"root": root, "queue": d / "cur" / "queue.txt", "train": train}


def test_linear_knn_and_finetune_train_on_the_queue_and_nothing_else(synthetic_queue, tmp_path, capsys):
    queue = synthetic_queue["queue"]
    listed = {line.split()[0] for line in queue.read_text().splitlines()}
    for command in ("linear", "knn", "finetune"):
        out = tmp_path / command
        few = ["eval.finetune_epochs=1", "optim.batch_size=4"] if command == "finetune" else []
        assert main([command, "--checkpoint", "random", "--config", "demo", "--labelled", str(queue),
                     "--out", str(out), f"data.root={synthetic_queue['root']}", *TINY, *few]) == 0
        said = capsys.readouterr().out
        assert f"trained on 12 labelled videos (listed in {queue.resolve()}" in said
        res = json.loads((out / "results.json").read_text())
        assert res["subsets"]["labelled_videos"] == 12 and res.get("num_train_videos", 12) == 12
        written = {str(synthetic_queue["root"] / line.split()[0])
                   for line in (out / "labelled_split.txt").read_text().splitlines()}
        assert written == listed


@pytest.mark.parametrize("case, message", [
    ("missing", "--labelled '{p}' is not a file"),
    ("foreign", "names none of the"),
    ("one-class", "holds training videos of 1 class"),
    ("both", "--labelled and --labels-per-class/--label-fraction both given"),
])
def test_a_bad_labelled_list_is_one_line(case, message, synthetic_queue, tmp_path, capsys):
    p = tmp_path / "list.txt"
    train = synthetic_queue["train"]
    if case == "foreign":
        p.write_text("/elsewhere/a.mp4\n/elsewhere/b.mp4\n")
    elif case == "one-class":
        p.write_text("".join(f"{q}\n" for q in train if q.parent.name == train[0].parent.name))
    elif case == "both":
        p.write_text(f"{train[0]}\n")
    extra = ["--labels-per-class", "1"] if case == "both" else []
    code = main(["knn", "--checkpoint", "random", "--config", "demo", "--labelled", str(p), *extra,
                 "--out", str(tmp_path / "o"), f"data.root={synthetic_queue['root']}", *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message.format(p=p) in err and "\n" not in err, err


def test_auto_groups_a_byte_copy_among_real_clips(shared_data, tmp_path, capsys):
    """Real H.264 clips (ucf101-tiny-mp4) plus a byte copy of one in another folder: --auto puts the copy and its
    original in one group, the keep list drops exactly one of the two, and the CSV names both."""
    import shutil

    from test_export import make_checkpoint

    from videocontrast.search.embed import embed_collection

    clips = sorted((shared_data / "ucf101-tiny-mp4" / "videos").rglob("*.mp4"))[::3]
    videos = tmp_path / "videos"
    for c in clips:
        (videos / c.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(c, videos / c.parent.name / c.name)
    (videos / "copies").mkdir()
    shutil.copyfile(clips[0], videos / "copies" / "again.mp4")
    emb = embed_collection(make_checkpoint(tmp_path / "last.pt"), videos, tmp_path / "v.emb", clips=2,
                           progress=False)
    out = tmp_path / "cur"
    assert main(["curate", "duplicates", str(emb), "--auto", "--out", str(out)]) == 0
    with open(out / "duplicates.csv") as f:
        rows = list(csv.DictReader(f))
    group = {r["group"] for r in rows if Path(r["path"]).name in (clips[0].name, "again.mp4")}
    assert len(group) == 1 and len([r for r in rows if r["group"] in group]) >= 2, rows
    members = {Path(r["path"]).name for r in rows if r["group"] in group}
    keep = {Path(line.split()[0]).name for line in (out / "keep.txt").read_text().splitlines()}
    assert len(members & keep) == 1  # one video of the group kept, never both copies
    assert len(keep) == len(clips) + 1 - (len(rows) - len({r["group"] for r in rows}))  # one per group + the rest
    assert "threshold" in capsys.readouterr().out
