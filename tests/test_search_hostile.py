"""search/ (embed, query, the index) and ablate's progress as a user sees them, on hostile or careless input.

A bad query file, a missing one, a damaged folder, ``-k 0`` and ``--device cuda`` on a machine without CUDA each
end in one line (exit code 2), not a traceback; two ``--html`` pages in one folder keep their own frames;
``embed --out`` writes the folder given; symbolic link loops, broken links and unreadable files are reported and
listed in meta.json; ``embed`` and ``ablate`` show progress bars; ``search`` takes a row or a folder of queries
and filters by label and path prefix (checked against NumPy brute force).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from videocontrast.cli import main
from videocontrast.search.embed import embed_collection, read_table
from videocontrast.search.query import search

from test_embed import write_video
from test_export import TINY, make_checkpoint, one_line_error


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("search")
    videos = d / "videos"
    for i, n in enumerate((12, 16, 20)):
        write_video(videos / f"v{i}.mp4", n, seed=i)
    ckpt = make_checkpoint(d / "last.pt")
    index = embed_collection(ckpt, videos, d / "videos.emb", clips=2, progress=False)
    return {"dir": d, "videos": videos, "ckpt": ckpt, "index": index}


def _search(setup, *extra: str) -> list[str]:
    return ["search", str(setup["index"]), str(setup["videos"] / "v0.mp4"), *extra]


# --- search: one line instead of a traceback ------------------------------------------------------------

@pytest.mark.parametrize("case", ["garbage", "empty", "missing"])
def test_a_bad_or_missing_query_is_one_line(case, setup, tmp_path, capsys):
    query = tmp_path / "q.mp4"
    if case == "garbage":
        query.write_bytes(b"this is not a video")
    elif case == "empty":
        query.write_bytes(b"")
    assert main(["search", str(setup["index"]), str(query)]) == 2
    line = one_line_error(capsys.readouterr().err, "search")
    assert str(query) in line and "query" in line


@pytest.mark.parametrize("case", ["missing", "garbage-npy", "truncated-table", "short-table"])
def test_a_damaged_index_is_one_line(case, setup, tmp_path, capsys):
    import shutil

    index = tmp_path / "bad.emb"
    if case != "missing":
        shutil.copytree(setup["index"], index)
    if case == "garbage-npy":
        (index / "embeddings.npy").write_bytes(b"definitely not an array")
    elif case == "truncated-table":
        (index / "table.parquet").write_bytes((index / "table.parquet").read_bytes()[:100])
    elif case == "short-table":
        np.save(index / "embeddings.npy", np.zeros((7, 4), np.float32))
    assert main(["search", str(index), str(setup["videos"] / "v0.mp4")]) == 2
    line = one_line_error(capsys.readouterr().err, "search")
    assert str(index) in line and "videocontrast embed" in line


@pytest.mark.parametrize("k", ["0", "-1"])
def test_k_below_one_is_refused(k, setup, capsys):
    with pytest.raises(SystemExit) as info:
        main(_search(setup, "-k", k))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument -k" in err and "at least 1" in err
    with pytest.raises(ValueError, match="at least 1"):
        search(setup["index"], setup["videos"] / "v0.mp4", k=int(k))


def test_device_cuda_without_cuda_is_one_line(setup, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(_search(setup, "--device", "cuda")) == 2
    assert "CUDA is not available" in one_line_error(capsys.readouterr().err, "search")
    assert main(["embed", "--checkpoint", str(setup["ckpt"]), "--root", str(setup["videos"]), "--out",
                 str(tmp_path / "i.emb"), "--device", "cuda"]) == 2
    assert "CUDA is not available" in one_line_error(capsys.readouterr().err, "embed")
    assert not (tmp_path / "i.emb" / "embeddings.npy").exists()


def test_two_html_pages_in_one_folder_keep_their_own_frames(setup, tmp_path, capsys):
    pages = tmp_path / "pages"
    assert main(["search", str(setup["index"]), str(setup["videos"] / "v0.mp4"), "--html", str(pages / "a.html")]) == 0
    first = {p.name: p.read_bytes() for p in (pages / "img").iterdir()}
    assert main(["search", str(setup["index"]), str(setup["videos"] / "v2.mp4"), "--html", str(pages / "b.html")]) == 0
    a, b = (pages / "a.html").read_text(), (pages / "b.html").read_text()
    assert 'src="img/a.png"' in a and 'src="img/b.png"' in b
    assert (pages / "img" / "a.png").read_bytes() == first["a.png"]  # the second search left page a's frames alone
    assert (pages / "img" / "b.png").is_file()
    assert sorted(p.name for p in pages.iterdir()) == ["a.html", "b.html", "img"]  # no stray files
    # a search has no classes to compare: no "same class" column of '?', no test/training wording
    assert "same class" not in a and "test video" not in a and "query class" not in a
    assert "<th>label</th>" in a and "<th>cosine similarity</th>" in a


# --- embed ---------------------------------------------------------------------------------------------

def test_embed_writes_the_out_folder(setup, tmp_path, capsys):
    out = tmp_path / "x.emb"
    assert main(["embed", "--checkpoint", str(setup["ckpt"]), "--root", str(setup["videos"]), "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.emb"]
    assert {"embeddings.npy", "table.parquet", "meta.json", "index.faiss", "index.json"} <= {p.name for p in
                                                                                           out.iterdir()}
    assert np.load(out / "embeddings.npy", allow_pickle=False).shape[0] == 3
    capsys.readouterr()
    assert main(["search", str(out), str(setup["videos"] / "v1.mp4"), "-k", "1"]) == 0


def _brute(index: Path, q: np.ndarray, mask: np.ndarray, k: int) -> list[str]:
    emb = np.load(index / "embeddings.npy")
    paths = np.asarray(read_table(index)["path"])
    sims = np.where(mask, emb @ q, -np.inf)
    order = [i for i in np.argsort(-sims, kind="stable") if mask[i]][:k]
    return [str(paths[i]) for i in order]


def test_search_by_row_folder_label_and_prefix(setup, tmp_path, capsys):
    videos = tmp_path / "v"
    for i in range(6):
        write_video(videos / ("cats" if i < 3 else "dogs") / f"c{i}.mp4", 12 + i, seed=10 + i)
    index = embed_collection(setup["ckpt"], videos, tmp_path / "i.emb", clips=2, progress=False)
    emb = np.load(index / "embeddings.npy")
    table = read_table(index)
    everything = np.ones(len(emb), bool)
    [(name, hits)] = search(index, "row:4", k=3)
    assert [h[0] for h in hits] == _brute(index, emb[4], everything, 3) and name.startswith("row:4")
    [(_, hits)] = search(index, "4", k=2, label="cats")
    assert [h[0] for h in hits] == _brute(index, emb[4], table["label"] == "cats", 2)
    [(_, hits)] = search(index, "row:0", k=6, prefix=str(videos / "dogs"))
    assert [h[0] for h in hits] == _brute(index, emb[0], table["label"] == "dogs", 6)  # only 3 qualify
    assert len(hits) == 3
    queries = tmp_path / "queries"
    queries.mkdir()
    for name in ("c1.mp4", "c5.mp4"):
        src = videos / ("cats" if name == "c1.mp4" else "dogs") / name
        (queries / name).write_bytes(src.read_bytes())
    results = search(index, queries, k=1)
    assert [(Path(q).name, Path(h[0][0]).name) for q, h in results] == [("c1.mp4", "c1.mp4"), ("c5.mp4", "c5.mp4")]
    assert main(["search", str(index), "row:99"]) == 2
    assert "row 99" in one_line_error(capsys.readouterr().err, "search")


def test_embed_reports_link_loops_broken_links_and_unreadable_files(setup, tmp_path, capsys):
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "good.mp4").write_bytes((setup["videos"] / "v0.mp4").read_bytes())
    (folder / "sub" / "also.mp4").write_bytes((setup["videos"] / "v1.mp4").read_bytes())
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    os.symlink("loop_b.mp4", folder / "loop_a.mp4")
    os.symlink("loop_a.mp4", folder / "loop_b.mp4")
    os.symlink("gone.mp4", folder / "dangling.mp4")
    os.symlink("..", folder / "sub" / "up")  # a folder link back up: a loop for a walker that follows links
    index = tmp_path / "i.emb"
    with pytest.warns(UserWarning) as caught:
        assert main(["embed", "--checkpoint", str(setup["ckpt"]), "--root", str(folder), "--out", str(index)]) == 0
    out = capsys.readouterr().out
    warned = "\n".join(str(w.message) for w in caught)
    paths = sorted(Path(p).name for p in read_table(index)["path"])
    bad = {Path(e["path"]).name: e["reason"] for e in json.loads((index / "meta.json").read_text())["unreadable"]}
    assert paths == ["also.mp4", "good.mp4"]
    assert set(bad) == {"broken.mp4", "loop_a.mp4", "loop_b.mp4", "dangling.mp4", "up"}
    assert "loop" in bad["loop_a.mp4"] and "loop" in bad["up"] and "broken symbolic link" in bad["dangling.mp4"]
    for name in bad:
        assert name in warned
    assert "2 rows (videos)" in out and "5 entries skipped" in out


def test_embed_shows_a_progress_bar(setup, tmp_path, capsys):
    assert main(["embed", "--checkpoint", str(setup["ckpt"]), "--root", str(setup["videos"]), "--out",
                 str(tmp_path / "i.emb")]) == 0
    err = capsys.readouterr().err
    assert "embed" in err and "3/3" in err and "file/s" in err


def test_ablate_shows_cells_done_out_of_total(tmp_path, capsys):
    for value in ("none", "shift"):  # finished cells (never recomputed): the bar still counts them
        cell = tmp_path / "cells" / f"temporal-{value}" / "cell.json"
        cell.parent.mkdir(parents=True)
        cell.write_text(json.dumps({"aug.temporal": value, "final_loss": 1.0, "knn_top1": 0.5}))
    assert main(["ablate", "--config", "demo", "--grid", "aug.temporal=none,shift", "--out", str(tmp_path),
                 "--eval", "knn", *TINY]) == 0
    err = capsys.readouterr().err
    assert "ablate" in err and "2/2" in err and "cell" in err


def test_embed_into_an_unwritable_out_fails_before_any_work(setup, tmp_path, capsys, monkeypatch):
    # Before: embed computed every embedding, then lost them at the write. Now it checks --out first.
    import videocontrast.search.embed as embed_mod

    calls = []
    monkeypatch.setattr(embed_mod, "load_encoder", lambda *a, **k: calls.append(1))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code = main(["embed", "--checkpoint", str(setup["ckpt"]), "--root", str(setup["videos"]),
                 "--out", str(blocker / "x.index")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and calls == [] and len(err.splitlines()) == 1
    assert "a_file" in err and "--out" in err


def test_ablate_does_not_reuse_a_finished_cell_trained_with_other_settings(tmp_path, capsys):
    # Before: a cell.json was reused whatever the settings it was made with; now they are compared first.
    from videocontrast.config import dump_config, load_config

    cell = tmp_path / "cells" / "temporal-none"
    (cell / "pretrain").mkdir(parents=True)
    (cell / "cell.json").write_text(json.dumps({"aug.temporal": "none", "final_loss": 1.0, "knn_top1": 0.5}))
    dump_config(load_config("demo", [*TINY, "aug.temporal=none", "optim.lr=0.5"]), cell / "pretrain" / "config.yaml")
    code = main(["ablate", "--config", "demo", "--grid", "aug.temporal=none", "--out", str(tmp_path), "--eval", "knn",
                 *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "optim.lr: stored 0.5" in err and "temporal-none" in err
