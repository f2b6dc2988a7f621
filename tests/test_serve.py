"""``videocontrast serve``'s API and its security, through Starlette's TestClient (issue 13).

Neighbours are checked against NumPy brute force on embeddings.npy; previews are animated WebP made once; only
indexed files inside the roots are served: ``..``, absolute paths, symbolic links out of a root and their
URL-encoded forms are refused; a deleted video gets a placeholder.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="serve needs starlette: pip install 'videocontrast[search]'")
pytest.importorskip("httpx", reason="starlette's TestClient needs httpx")
import warnings  # noqa: E402

from PIL import Image  # noqa: E402

with warnings.catch_warnings():  # starlette 1.x suggests httpx2 over httpx; both drive the TestClient
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

import videocontrast.search.library as library_mod  # noqa: E402
from videocontrast.search.embed import embed_collection, read_table  # noqa: E402
from videocontrast.search.serve import create_app  # noqa: E402

from test_embed import write_video  # noqa: E402
from test_export import make_checkpoint  # noqa: E402

# The Host a browser on this machine sends (any other is refused: DNS rebinding), and the header the page's
# script sends with a POST (issue 20).
BASE, PAGE = "http://127.0.0.1:8000", {"X-Videocontrast": "1"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    videos = d / "videos"
    for i in range(5):
        write_video(videos / ("a" if i < 3 else "b") / f"v{i}.mp4", 12 + 2 * i, seed=20 + i)
    write_video(d / "outside" / "secret.mp4", 12, seed=99)
    (d / "outside" / "secret.txt").write_text("secret")
    ckpt = make_checkpoint(d / "last.pt")
    index = embed_collection(ckpt, videos, d / "videos.emb", clips=2, progress=False)
    # made after embed: inside the root but not rows of the index
    os.symlink(d / "outside" / "secret.mp4", videos / "a" / "link_out.mp4")
    (videos / "a" / "notes.txt").write_text("not a video of the index")
    app = create_app(index, cache=d / "cache")
    return {"dir": d, "videos": videos, "index": index, "client": TestClient(app, base_url=BASE), "app": app}


def test_items_and_neighbours_match_numpy(served):
    c = served["client"]
    items = c.get("/api/items").json()
    paths = list(read_table(served["index"])["path"])
    assert [i["path"] for i in items["items"]] == paths and items["count"] == 5
    page = c.get("/api/items?offset=3&limit=1").json()
    assert [i["row"] for i in page["items"]] == [3] and page["count"] == 5
    emb = np.load(served["index"] / "embeddings.npy")
    for row in range(5):
        r = c.get(f"/api/neighbours/{row}?k=3").json()
        want = [i for i in np.argsort(-(emb @ emb[row]), kind="stable") if i != row][:3]
        assert [n["row"] for n in r["neighbours"]] == want
        np.testing.assert_allclose([n["sim"] for n in r["neighbours"]], emb[want] @ emb[row], atol=1e-3)
    r = c.get("/api/neighbours/0?k=5&label=b").json()
    assert {n["label"] for n in r["neighbours"]} == {"b"} and len(r["neighbours"]) == 2
    assert c.get("/api/neighbours/99").status_code == 404
    assert c.get("/api/neighbours/0?k=0").status_code == 400


def test_preview_is_an_animated_webp_made_once(served, monkeypatch):
    c = served["client"]
    r = c.get("/preview/1")
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "WEBP" and img.n_frames > 1 and img.is_animated
    calls = []
    monkeypatch.setattr(library_mod, "animated_preview", lambda *a, **k: calls.append(1) or b"")
    again = c.get("/preview/1")
    assert again.content == r.content and calls == []  # from the cache
    assert len(list((served["dir"] / "cache").glob("*.webp"))) >= 1


def test_media_is_served_with_its_content_type_and_ranges(served):
    c = served["client"]
    item = c.get("/api/items").json()["items"][2]
    r = c.get(item["media"])
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert r.content == Path(item["path"]).read_bytes()
    part = c.get(item["media"], headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == Path(item["path"]).read_bytes()[:100]


@pytest.mark.parametrize("url", [
    "/media/0/%2e%2e/outside/secret.mp4",            # .. URL-encoded
    "/media/0/a/%2e%2e/%2e%2e/outside/secret.txt",
    "/media/0/..%2f..%2foutside%2fsecret.mp4",       # encoded slashes
    "/media/0/%2Fetc%2Fpasswd",                      # absolute, encoded
    "/media/0//etc/passwd",                          # absolute
    "/media/0/a/link_out.mp4",                       # a symbolic link out of the root
    "/media/0/a/notes.txt",                          # inside the root but not a row of the index
    "/media/0/a/v0.mp4%00.txt",                      # NUL
    "/media/1/a/v0.mp4",                             # no such root
])
def test_path_traversal_is_refused(served, url):
    r = served["client"].get(url)
    assert r.status_code in (403, 404) and b"secret" not in r.content and b"root:" not in r.content


def test_dot_dot_is_refused_before_any_normalisation(served):
    # httpx folds /../ itself, so ask the resolver directly with what a raw request would carry
    lib = served["app"].state.library
    for rel in ("../outside/secret.mp4", "a/../../outside/secret.mp4", "/etc/passwd", "a/link_out.mp4",
                str(served["dir"] / "outside" / "secret.mp4")):
        assert lib.resolve(0, rel) is None, rel
    assert lib.resolve(0, "a/v0.mp4") == os.path.realpath(served["videos"] / "a" / "v0.mp4")


def test_query_by_path_only_inside_the_roots(served):
    c = served["client"]
    emb = np.load(served["index"] / "embeddings.npy")
    target = served["videos"] / "b" / "v3.mp4"
    r = c.get("/api/query", params={"path": str(target), "k": 2}, headers=PAGE)
    assert r.status_code == 200
    assert [n["row"] for n in r.json()["neighbours"]] == list(np.argsort(-(emb @ emb[3]), kind="stable")[:2])
    for bad in (served["dir"] / "outside" / "secret.mp4", served["videos"] / ".." / "outside" / "secret.mp4",
                served["videos"] / "a" / "link_out.mp4", "/etc/passwd"):
        assert c.get("/api/query", params={"path": str(bad)}, headers=PAGE).status_code == 403


def test_query_by_upload(served):
    c = served["client"]
    emb = np.load(served["index"] / "embeddings.npy")
    body = (served["videos"] / "a" / "v1.mp4").read_bytes()
    r = c.post("/api/query?k=1", content=body, headers={"X-Filename": "mine.mp4", **PAGE})
    assert r.status_code == 200 and r.json()["neighbours"][0]["row"] == int(np.argmax(emb @ emb[1]))
    bad = c.post("/api/query?k=1", content=b"not a video", headers={"X-Filename": "x.mp4", **PAGE})
    assert bad.status_code == 400 and "cannot be read" in bad.json()["error"]


def test_a_deleted_video_gets_a_placeholder(served, tmp_path):
    videos = tmp_path / "v"
    shutil.copytree(served["videos"], videos, symlinks=True)
    (videos / "a" / "link_out.mp4").unlink()
    index = embed_collection(served["dir"] / "last.pt", videos, tmp_path / "i.emb", clips=2, progress=False)
    c = TestClient(create_app(index, cache=tmp_path / "cache"), base_url=BASE)
    gone = videos / "b" / "v4.mp4"
    gone.unlink()
    items = c.get("/api/items").json()["items"]
    row = [i["path"] for i in items].index(str(gone))
    assert items[row]["exists"] is False and items[row]["media"] is None
    r = c.get(f"/preview/{row}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (128, 96)
    r = c.get("/media/0/b/v4.mp4")
    assert r.status_code == 404 and "deleted or moved" in r.json()["error"]


def test_the_page_and_its_files(served):
    c = served["client"]
    page = c.get("/")
    assert page.status_code == 200 and "/static/serve.js" in page.text
    assert c.get("/static/serve.js").headers["content-type"].startswith("text/javascript")
    assert c.get("/static/../serve.py").status_code == 404


def test_serve_binds_localhost_by_default():
    from videocontrast.cli import build_parser

    args = build_parser().parse_args(["serve", "x.emb"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)
