"""``videocontrast serve``'s Duplicates, Outliers and Queue views (issue 23): ``/api/duplicates``, ``/api/outliers``
and ``/api/queue`` through Starlette's TestClient, on hand-built embeddings whose answer is known (two exact copies:
one group; one far row: the first outlier; a diverse queue: the farthest row second), a queue read from ``serve
--queue FILE`` in the file's order, the one-line refusals, the neighbour graph computed once, and the page's tabs.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="serve needs starlette: pip install 'videocontrast[search]'")
pytest.importorskip("httpx", reason="starlette's TestClient needs httpx")
import warnings  # noqa: E402

with warnings.catch_warnings():  # starlette 1.x suggests httpx2 over httpx; both drive the TestClient
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

import videocontrast.search.serve_curate as serve_curate  # noqa: E402
from videocontrast.cli import build_parser, main  # noqa: E402
from videocontrast.eval.embedding import l2_normalize  # noqa: E402
from videocontrast.search.curate import duplicate_groups, knn_graph, outlier_scores, run_select, select  # noqa: E402
from videocontrast.search.serve import create_app  # noqa: E402

from test_curate import clusters  # noqa: E402

# The Host a browser on this machine sends, and the header the page's script sends with every request (the
# curation routes, as /api/query, need it: they compute over the whole collection).
BASE, PAGE = "http://127.0.0.1:8000", {"X-Videocontrast": "1"}


def write_folder(folder: Path, emb: np.ndarray, videos: Path) -> Path:
    """An embedding folder by hand (as `videocontrast embed` writes it), row i being ``videos/v{i:03d}.mp4``."""
    from test_curate import write_folder as write_by_hand

    return write_by_hand(folder, emb, labels=[f"c{i % 3}" for i in range(len(emb))],
                         paths=[str(videos / f"v{i:03d}.mp4") for i in range(len(emb))])


def client(tmp_path: Path, emb: np.ndarray, queue: Path | None = None) -> TestClient:
    folder = tmp_path / "v.emb"
    if not folder.exists():
        write_folder(folder, emb, tmp_path / "videos")
    return TestClient(create_app(folder, cache=tmp_path / "cache", queue=queue), base_url=BASE, headers=PAGE)


def copies() -> np.ndarray:
    x = l2_normalize(np.random.default_rng(2).normal(size=(30, 32)))  # random directions: far apart in 32-d
    x[17] = x[4]
    return x


def one_line_400(r) -> str:
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err and "\n" not in err and "Traceback" not in err
    return err


# ------------------------------------------------------------------ duplicates

def test_two_exact_copies_are_one_group_with_the_browse_previews(tmp_path):
    c = client(tmp_path, copies())
    r = c.get("/api/duplicates?threshold=0.99")
    assert r.status_code == 200
    d = r.json()
    assert d["threshold"] == pytest.approx(0.99) and d["count"] == 1 and d["rows_in_groups"] == 2
    assert d["keep"] == 29 and d["neighbours"] == 10 and d["search"] == "exact"
    (group,) = d["groups"]
    assert group["group"] == 1 and group["size"] == 2 and sorted(m["row"] for m in group["rows"]) == [4, 17]
    assert [m["similarity"] for m in group["rows"]] == pytest.approx([1.0, 1.0], abs=1e-5)
    browse = {i["row"]: i for i in c.get("/api/items").json()["items"]}
    for m in group["rows"]:  # the same row, path, label and preview URL as the browse grid's
        assert {k: m[k] for k in ("path", "label", "preview", "media")} == \
               {k: browse[m["row"]][k] for k in ("path", "label", "preview", "media")}
        assert m["preview"] == f"/preview/{m['row']}"


def test_groups_come_largest_first_and_auto_is_otsus_threshold(tmp_path):
    x = l2_normalize(np.random.default_rng(3).normal(size=(40, 32)))
    x[[10, 20]] = x[5]  # a group of 3
    x[30] = x[1]  # a group of 2
    c = client(tmp_path, x)
    d = c.get("/api/duplicates?threshold=0.999").json()
    assert [g["size"] for g in d["groups"]] == [3, 2]
    assert [sorted(m["row"] for m in g["rows"]) for g in d["groups"]] == [[5, 10, 20], [1, 30]]
    assert [g["group"] for g in c.get("/api/duplicates?threshold=0.999&offset=1&limit=1").json()["groups"]] == [2]
    auto = c.get("/api/duplicates").json()
    want = duplicate_groups(x)
    assert auto["threshold"] == pytest.approx(want.threshold, abs=1e-6) and auto["chosen_by"].startswith("auto")
    assert auto["count"] == len(want.groups)
    assert c.get("/api/duplicates?threshold=auto").json()["threshold"] == auto["threshold"]


@pytest.mark.parametrize("bad", ["2", "-1.5", "abc", "nan", "inf", "1e400", "0.9" * 30])
def test_a_bad_threshold_is_a_one_line_400(tmp_path, bad):
    err = one_line_400(client(tmp_path, copies()).get("/api/duplicates", params={"threshold": bad}))
    assert "threshold" in err and "-1 to 1" in err


# ------------------------------------------------------------------ outliers

def test_a_far_row_is_the_first_outlier_with_its_score_explained(tmp_path):
    rng = np.random.default_rng(4)
    x = clusters(rng, 3, 12)
    x = np.concatenate([x[:20], l2_normalize(rng.normal(size=(1, 16))), x[20:]])
    d = client(tmp_path, x).get("/api/outliers?top=5").json()
    assert [i["rank"] for i in d["items"]] == [1, 2, 3, 4, 5] and d["items"][0]["row"] == 20
    assert d["neighbours"] == 10 and "1 - mean cosine similarity to the 10 nearest" in d["score"]
    score = outlier_scores(knn_graph(x, 10)[0])
    want = np.argsort(-score, kind="stable")[:5]
    assert [i["row"] for i in d["items"]] == want.tolist()
    assert [i["score"] for i in d["items"]] == pytest.approx(score[want], abs=1e-5)
    assert d["items"][0]["preview"] == "/preview/20"


def test_the_neighbour_graph_is_computed_once_and_answers_are_cached(tmp_path, monkeypatch):
    calls = []
    real = serve_curate.knn_graph
    monkeypatch.setattr(serve_curate, "knn_graph", lambda *a, **k: calls.append(1) or real(*a, **k))
    groups = []
    real_groups = serve_curate.duplicate_groups
    monkeypatch.setattr(serve_curate, "duplicate_groups", lambda *a, **k: groups.append(1) or real_groups(*a, **k))
    c = client(tmp_path, copies())
    for url in ("/api/duplicates?threshold=0.99", "/api/duplicates?threshold=0.5", "/api/duplicates",
                "/api/duplicates?threshold=0.99", "/api/outliers", "/api/outliers?top=3",
                "/api/queue?strategy=typical&budget=3"):
        assert c.get(url).status_code == 200, url
    assert calls == [1] and len(groups) == 3  # one graph; one grouping per threshold


# ------------------------------------------------------------------ the labelling queue

def test_a_queue_file_is_served_in_its_order(tmp_path):
    videos = tmp_path / "videos"
    (tmp_path / "lists").mkdir()
    queue = tmp_path / "lists" / "queue.txt"
    queue.write_text(f"# a labelling queue\n{videos / 'v007.mp4'}\n{videos / 'v002.mp4'} c2\n"
                     f"../videos/v011.mp4\n/elsewhere/nope.mp4\n\n{videos / 'v000.mp4'}\n")
    d = client(tmp_path, copies(), queue=queue).get("/api/queue").json()
    assert d["source"] == "file" and d["file"] == str(queue)
    assert [i["row"] for i in d["items"]] == [7, 2, 11, 0] and [i["rank"] for i in d["items"]] == [1, 2, 3, 4]
    assert d["count"] == 4 and d["entries"] == 5 and d["missing"] == 1
    assert d["missing_first"] == ["line 5: /elsewhere/nope.mp4"]
    assert d["items"][0]["preview"] == "/preview/7"


@pytest.mark.parametrize("name", ["queue.txt", "queue.csv"])
def test_the_queue_curate_select_writes_is_served_as_it_ordered_it(tmp_path, name):
    x = clusters(np.random.default_rng(5), 4, 6)
    folder = write_folder(tmp_path / "v.emb", x, tmp_path / "videos")
    run_select(folder, tmp_path / "cur", 7, "diverse", progress=False)
    c = client(tmp_path, x, queue=tmp_path / "cur" / name)
    d = c.get("/api/queue").json()
    assert [i["row"] for i in d["items"]] == select(x, 7, "diverse").tolist() and d["missing"] == 0
    computed = c.get("/api/queue?source=computed&budget=3&strategy=random&seed=1").json()
    assert computed["source"] == "computed" and [i["row"] for i in computed["items"]] == \
        select(x, 3, "random", seed=1).tolist()


def test_the_computed_diverse_queue_takes_the_farthest_row_second(tmp_path):
    x = clusters(np.random.default_rng(6), 5, 8)
    c = client(tmp_path, x)
    d = c.get("/api/queue?budget=5&strategy=diverse").json()
    rows = [i["row"] for i in d["items"]]
    assert d["source"] == "computed" and d["strategy"] == "diverse" and d["count"] == 5 and len(set(rows)) == 5
    assert rows[0] == int(np.argmax(x @ x.mean(0))) and rows[1] == int(np.argmin(x @ x[rows[0]]))
    assert [i["rank"] for i in d["items"]] == [1, 2, 3, 4, 5]
    default = c.get("/api/queue").json()  # budget min(20, N), diverse
    assert default["budget"] == 20 and [i["row"] for i in default["items"]][:5] == rows
    typical = c.get("/api/queue?budget=5&strategy=typical&seed=2").json()
    assert [i["row"] for i in typical["items"]] == select(x, 5, "typical", seed=2).tolist()
    assert client(tmp_path / "small", x[:6]).get("/api/queue").json()["budget"] == 6


@pytest.mark.parametrize("query, words", [("budget=0", "budget"), ("budget=41", "from 1 to 40"),
                                          ("budget=ten", "budget"), ("strategy=best", "diverse, typical, random"),
                                          ("seed=-1", "seed"), ("source=file", "--queue"),
                                          ("source=other", "source")])
def test_a_bad_queue_request_is_a_one_line_400(tmp_path, query, words):
    err = one_line_400(client(tmp_path, clusters(np.random.default_rng(7), 4, 10)).get(f"/api/queue?{query}"))
    assert words in err


@pytest.mark.parametrize("make, words", [(lambda d: d / "nosuch.txt", "cannot be read"),
                                         (lambda d: d, "cannot be read"),
                                         (lambda d: (d / "empty.txt").write_text("# none\n") and d / "empty.txt",
                                          "lists no video")])
def test_a_bad_queue_file_is_refused_when_the_app_is_made(tmp_path, make, words):
    bad = make(tmp_path)
    with pytest.raises(ValueError, match=words) as e:
        client(tmp_path, copies(), queue=bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_serve_queue_flag_and_a_missing_file_is_one_line_before_serving(tmp_path, capsys, monkeypatch):
    import videocontrast.search.serve as serve_mod

    assert build_parser().parse_args(["serve", "x.emb"]).queue is None
    assert build_parser().parse_args(["serve", "x.emb", "--queue", "q.txt"]).queue == "q.txt"
    folder = write_folder(tmp_path / "v.emb", copies(), tmp_path / "videos")
    monkeypatch.setattr(serve_mod, "listen", lambda *a: pytest.fail("bound a port with a bad --queue"))
    for bad in ("/nosuch", str(tmp_path)):
        assert main(["serve", str(folder), "--queue", bad, "--port", "0"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("videocontrast serve: error: --queue") and bad in err
        assert "Traceback" not in err


@pytest.mark.parametrize("url", ["/api/duplicates", "/api/outliers", "/api/queue"])
def test_another_sites_page_cannot_make_the_server_compute(tmp_path, url):
    c = client(tmp_path, copies())
    assert c.get(url, headers={"X-Videocontrast": ""}).status_code == 403  # an <img> or a form cannot send it
    assert c.get(url, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert c.get(url, headers={"Origin": "http://evil.example"}).status_code == 403
    assert c.get(url).status_code == 200


# ------------------------------------------------------------------ the page

def test_the_page_has_the_tabs_and_asks_the_routes(tmp_path):
    c = client(tmp_path, copies())
    html = c.get("/").text
    js = c.get("/static/serve.js").text
    css = c.get("/static/serve.css").text
    tabs = re.findall(r'<button[^>]*role="tab"[^>]*data-mode="(\w+)"', html)
    assert tabs == ["browse", "duplicates", "outliers", "queue"]
    for route in ("/api/duplicates", "/api/outliers", "/api/queue", "/api/neighbours/", "/api/items"):
        assert route in js, route
    assert 'id="view-curate"' in html and 'id="curate-body"' in html and "curate-body" in js
    assert "showNeighbours(item.row)" in js  # a tile in any view: its neighbours, as in browse
    for text in (html, js, css):  # offline: nothing from another site
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text), text[:80]


def test_a_byte_copy_of_a_real_video_is_a_group_whose_previews_play(tmp_path):
    """On decoded videos: embed a folder holding a file and its byte copy; the group's previews are the animated
    WebP the browse grid shows."""
    from test_embed import write_video
    from test_export import make_checkpoint

    from videocontrast.search.embed import embed_collection

    videos = tmp_path / "videos"
    for i, n in enumerate((12, 16, 20)):
        write_video(videos / "a" / f"v{i}.mp4", n, seed=i)
    (videos / "b").mkdir()
    (videos / "b" / "copy.mp4").write_bytes((videos / "a" / "v1.mp4").read_bytes())
    emb = embed_collection(make_checkpoint(tmp_path / "last.pt"), videos, tmp_path / "v.emb", clips=2,
                           progress=False)
    c = TestClient(create_app(emb, cache=tmp_path / "cache"), base_url=BASE, headers=PAGE)
    d = c.get("/api/duplicates?threshold=0.9999").json()
    assert [sorted(Path(m["path"]).name for m in g["rows"]) for g in d["groups"]] == [["copy.mp4", "v1.mp4"]]
    for m in d["groups"][0]["rows"]:
        r = c.get(m["preview"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
        assert c.get(m["media"]).status_code == 200
    assert len(c.get("/api/outliers?top=10").json()["items"]) == 4


PAGE_FLOW = r"""
await until(() => document.body.dataset.ready === "1", "the grid");
const out = { grid: tiles("#grid").length };
document.getElementById("threshold").value = "0.99";
tab("duplicates");
await until(() => document.body.dataset.view === "duplicates", "duplicates");
out.title = document.getElementById("curate-title").textContent;
out.groups = document.querySelectorAll("#curate-body .group").map((g) => tiles(`.group[data-group="${g.dataset.group}"]`));
out.browseHidden = document.getElementById("view-browse").hidden;
document.getElementById("top").value = "5";
tab("outliers");
await until(() => document.body.dataset.view === "outliers", "outliers");
out.outliers = tiles("#curate-body");
document.getElementById("curate-more").dispatch("click");
await until(() => tiles("#curate-body").length > 5, "more outliers");
out.moreOutliers = tiles("#curate-body").map((t) => t.row);
tab("queue");
await until(() => document.body.dataset.view === "queue", "queue");
out.queue = tiles("#curate-body");
out.queueNote = document.getElementById("curate-note").textContent;
out.source = document.getElementById("queue-source").value;
document.querySelector("#curate-body .tile").dispatch("click");
await until(() => !document.getElementById("results").hidden && tiles("#neighbours").length, "neighbours");
out.neighboursOf = Number(document.querySelector("#query .tile").dataset.row);
out.neighbours = tiles("#neighbours").length;
document.getElementById("queue-source").value = "computed";
document.getElementById("budget").value = "4";
document.getElementById("queue-source").dispatch("change");
await until(() => tiles("#curate-body").length === 4, "the computed queue");
out.computed = tiles("#curate-body").map((t) => t.row);
tab("browse");
out.back = !document.getElementById("view-browse").hidden && document.getElementById("view-curate").hidden;
return out;
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="the page's script is run by Node.js (apt-get install nodejs)")
def test_the_tabs_show_groups_ranks_and_the_queue_in_the_page_script(tmp_path):
    """serve.js itself, run by Node against a live server (tests/serve_page_shim.js: a small DOM, no browser):
    each tab draws the rows its route gives, a queue tile opens its neighbours as in browse, back to Browse."""
    import socket
    import subprocess
    import threading
    import time

    uvicorn = pytest.importorskip("uvicorn", reason="serve needs uvicorn: pip install 'videocontrast[search]'")
    from videocontrast.search.serve import STATIC

    x = copies()
    folder = write_folder(tmp_path / "v.emb", x, tmp_path / "videos")
    (tmp_path / "q.txt").write_text("videos/v009.mp4\nvideos/v003.mp4\nvideos/v004.mp4\n")
    (tmp_path / "flow.js").write_text(PAGE_FLOW)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = create_app(folder, cache=tmp_path / "cache", queue=tmp_path / "q.txt")
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not srv.started:
            time.sleep(0.05)
        r = subprocess.run(["node", str(Path(__file__).with_name("serve_page_shim.js")),
                            f"http://127.0.0.1:{sock.getsockname()[1]}", str(STATIC / "serve.html"),
                            str(STATIC / "serve.js"), str(tmp_path / "flow.js")],
                           capture_output=True, text=True, timeout=120)
    finally:
        srv.should_exit = True
        thread.join(10)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["grid"] == 30 and out["browseHidden"] and out["back"]
    assert [[t["row"] for t in g] for g in out["groups"]] == [[4, 17]]
    assert [t["badge"] for t in out["groups"][0]] == ["keep", ""] and all("1.000" in t["caption"]
                                                                           for t in out["groups"][0])
    score = outlier_scores(knn_graph(x, 10)[0])
    order = np.argsort(-score, kind="stable")
    assert [t["row"] for t in out["outliers"]] == order[:5].tolist() and out["moreOutliers"] == order[:10].tolist()
    assert out["outliers"][0]["badge"] == f"#1 score {score[order[0]]:.3f}"
    assert [(t["row"], t["badge"]) for t in out["queue"]] == [(9, "1."), (3, "2."), (4, "3.")]
    assert out["source"] == "file" and (out["neighboursOf"], out["neighbours"]) == (9, 8)
    assert out["computed"] == select(x, 4, "diverse").tolist()
