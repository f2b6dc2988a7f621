"""``videocontrast serve`` against a hostile client or neighbour (issue 20, items 1-4, 12, 13, 20, 21).

What a user sees is checked: status codes, the bytes served, files left in the temporary folder, what the CLI
prints and its exit code. A local process swapping an indexed file for a link to a secret never gets the secret
served; a row whose file links out of the roots is refused on every route; a foreign ``Host`` name (DNS
rebinding) is refused, any IP address accepted; whatever another site's page asks (Sec-Fetch-Site, Origin, a
POST or query without the page's header) is refused before any work; query-by-path answers the same for every
path that is not an indexed file and decodes none of them; uploads are capped while they stream (the app pulls
no more of the body than the cap), get a deadline, hold no decode slot while they arrive and leave no file
when the client leaves; a video declaring a huge picture or too many frames is refused before any frame is
decoded; at most ``max_decodes`` queries decode at once; bad ports, hosts and query parameters get one line.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import threading
import time
import tracemalloc
import warnings
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest

pytest.importorskip("starlette", reason="serve needs starlette: pip install 'videocontrast[search]'")
pytest.importorskip("httpx", reason="starlette's TestClient needs httpx")
uvicorn = pytest.importorskip("uvicorn", reason="serve needs uvicorn: pip install 'videocontrast[search]'")

with warnings.catch_warnings():  # starlette 1.x suggests httpx2 over httpx; both drive the TestClient
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

import videocontrast.search.embed as embed_mod  # noqa: E402
import videocontrast.search.library as library_mod  # noqa: E402
import videocontrast.search.serve as serve_mod  # noqa: E402
from videocontrast.cli import main  # noqa: E402
from videocontrast.search.embed import embed_collection  # noqa: E402
from videocontrast.search.serve import create_app  # noqa: E402

from test_embed import write_video  # noqa: E402
from test_export import make_checkpoint, one_line_error  # noqa: E402

BASE = "http://127.0.0.1:8000"  # what a browser on this machine sends as Host
PAGE = {"X-Videocontrast": "1", "Origin": BASE}  # what the page's own script sends with a POST
QUERY = {"X-Videocontrast": "1"}  # what it sends with a query by path (a GET: no Origin)
SECRET = b"TOP-SECRET shadow line\n" * 500


def limits(**kw):
    return library_mod.Limits(**kw)


@pytest.fixture(scope="module")
def lib_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    videos = d / "videos"
    for i in range(3):
        write_video(videos / "a" / f"v{i}.mp4", 12 + 2 * i, seed=50 + i)
    write_video(videos / "a" / "race.mp4", 12, seed=60)     # swapped for a link by the race test
    write_video(videos / "b" / "linked.mp4", 14, seed=61)   # replaced by a link out of the roots
    write_video(d / "outside" / "secret.mp4", 12, seed=62)
    (d / "outside" / "shadow").write_bytes(SECRET)
    index = embed_collection(make_checkpoint(d / "last.pt"), videos, d / "videos.emb", clips=2, progress=False)
    # after embed: inside a root but not rows of the index
    write_video(videos / "a" / "extra.mp4", 12, seed=63)
    os.symlink(d / "outside" / "secret.mp4", videos / "a" / "link_out.mp4")
    return {"dir": d, "videos": videos, "index": index}


def client(index, **kw) -> TestClient:
    return TestClient(create_app(index, **kw), base_url=BASE, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def served(lib_dir):
    return client(lib_dir["index"], cache=lib_dir["dir"] / "cache")


def media_url(c: TestClient, name: str) -> tuple[int, str]:
    items = c.get("/api/items").json()["items"]
    row = next(i for i in items if i["name"] == name)
    return row["row"], row["media"]


# ------------------------------------------------------------------------------------------------ 1, 2: files

def test_a_symlink_swap_race_never_serves_the_secret(lib_dir, served):
    """A local process swaps the indexed race.mp4 between the real file (a hard link to it) and a link to a
    secret outside the roots while the page fetches it: every 200 is the video's own bytes."""
    target = lib_dir["videos"] / "a" / "race.mp4"
    real = target.read_bytes()
    _, url = media_url(served, "race.mp4")
    hold = lib_dir["dir"] / "race-hold.mp4"
    os.link(target, hold)
    stop, swaps = threading.Event(), [0]

    def swap():  # odd: the link, even: the real file (renaming a file over a link to itself would do nothing)
        while not stop.is_set():
            i = swaps[0] + 1
            tmp = target.with_name(f".swap{i % 2}")
            if i % 2:
                os.symlink(lib_dir["dir"] / "outside" / "shadow", tmp)
            else:
                os.link(hold, tmp)
            os.replace(tmp, target)
            swaps[0] += 1
            time.sleep(0.0002)  # let the server run too (the GIL): a few thousand swaps a second

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    statuses, leaks, wrong = [], 0, 0
    try:
        deadline = time.monotonic() + 20  # 300 requests take ~2 s; a loaded 2-core machine gets more time
        while len(statuses) < 300 and time.monotonic() < deadline:
            r = served.get(url)
            statuses.append(r.status_code)
            leaks += b"TOP-SECRET" in r.content
            wrong += r.status_code == 200 and r.content != real
    finally:
        stop.set()
        thread.join(5)
        os.replace(hold, target)
    assert swaps[0] > 30 and len(statuses) >= 30, (swaps[0], len(statuses))
    assert leaks == 0 and wrong == 0, f"{leaks} of {len(statuses)} responses carried the secret, {wrong} wrong"
    assert 200 in statuses and set(statuses) <= {200, 403, 404}, sorted(set(statuses))
    assert served.get(url).content == real  # the file is back and served again


@pytest.mark.parametrize("startup", ["link before the server starts", "link swapped in while it runs"])
def test_a_row_linking_out_of_the_roots_is_refused_on_every_route(lib_dir, tmp_path, startup):
    target = lib_dir["videos"] / "b" / "linked.mp4"
    backup = tmp_path / "linked.mp4"
    os.link(target, backup)
    c = None if startup.startswith("link before") else client(lib_dir["index"], cache=tmp_path / "cache")
    try:
        target.unlink()
        os.symlink(lib_dir["dir"] / "outside" / "secret.mp4", target)
        c = c or client(lib_dir["index"], cache=tmp_path / "cache")
        row = next(i["row"] for i in c.get("/api/items").json()["items"] if i["name"] == "linked.mp4")
        secret = (lib_dir["dir"] / "outside" / "secret.mp4").read_bytes()
        for url in (f"/preview/{row}", "/media/0/b/linked.mp4"):
            r = c.get(url)
            assert r.status_code == 403 and r.content != secret, (url, r.status_code)
        r = c.get("/api/query", params={"path": str(target)}, headers=QUERY)
        assert r.status_code == 403 and "not a video of this index" in r.json()["error"]
    finally:
        target.unlink()
        os.replace(backup, target)


# ------------------------------------------------------------------------------------------------ 3: hosts, origins

@pytest.mark.parametrize("url", ["/api/items", "/media/0/a/v0.mp4", "/", "/preview/0"])
def test_a_foreign_host_header_is_refused(served, url):
    assert served.get(url, headers={"Host": "evil.example"}).status_code == 400
    assert served.get(url, headers={"Host": "evil.example:8000"}).status_code == 400
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "localhost"):
        assert served.get(url, headers={"Host": host}).status_code == 200, host


def test_a_cross_site_post_is_refused_and_the_pages_own_works(lib_dir, served, monkeypatch):
    lib = served.app.state.library
    calls = []
    real_embed = lib.embed_file
    monkeypatch.setattr(lib, "embed_file", lambda path: calls.append(path) or real_embed(path))
    body = (lib_dir["videos"] / "a" / "v1.mp4").read_bytes()
    # what a form or a no-CORS fetch from another site can send: text/plain, its own Origin, no custom header
    for headers in ({"Content-Type": "text/plain", "Origin": "http://evil.example"},
                    {"Content-Type": "text/plain"},
                    {"Content-Type": "text/plain", "Origin": "null"},
                    {"X-Videocontrast": "1", "Origin": "http://evil.example"},
                    {"X-Videocontrast": "1", "Origin": "http://127.0.0.1:9999"}):
        r = served.post("/api/query?k=1", content=body, headers=headers)
        assert r.status_code == 403, (headers, r.status_code)
    assert calls == []
    r = served.post("/api/query?k=1", content=body, headers={**PAGE, "X-Filename": "mine.mp4"})
    assert r.status_code == 200 and len(calls) == 1
    emb = np.load(lib_dir["index"] / "embeddings.npy")
    row, _ = media_url(served, "v1.mp4")
    assert r.json()["neighbours"][0]["row"] == int(np.argmax(emb @ emb[row]))
    # the page's script sends that header with its upload
    js = (Path(serve_mod.__file__).parent / "static" / "serve.js").read_text()
    assert '"X-Videocontrast": "1"' in js


# what a browser sends when another site's page loads a URL of ours (an <img>, a <video>, a fetch)
CROSS = {"cross-site": {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"},
         "same-site": {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}}


@pytest.mark.parametrize("site", list(CROSS))
@pytest.mark.parametrize("url", ["/preview/0", "/media/0/a/v0.mp4", "/api/items", "/api/neighbours/0",
                                 "/static/serve.js", "/"])
def test_another_sites_page_can_load_nothing_but_a_link_to_the_page(served, monkeypatch, url, site):
    lib = served.app.state.library
    opened = []
    real_open = lib.open
    monkeypatch.setattr(lib, "open", lambda path: opened.append(path) or real_open(path))
    r = served.get(url, headers=CROSS[site])
    assert r.status_code == 403 and "another site" in r.json()["error"], (url, r.status_code)
    assert opened == []  # no file opened, nothing decoded: no work to time, nothing to measure
    # the page's own <img>, <video> and fetches (same-origin), a URL typed in (none), curl (no header)
    for own in ({"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "no-cors"}, {"Sec-Fetch-Site": "none"}, {}):
        assert served.get(url, headers=own).status_code == 200, (url, own)
    # a link on another site to the page itself is followed
    navigate = {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    assert served.get(url, headers=navigate).status_code == (200 if url == "/" else 403)
    frame = {**navigate, "Sec-Fetch-Dest": "iframe"}  # but not framed in another site's page
    assert served.get(url, headers=frame).status_code == 403


def test_query_by_path_needs_the_pages_header(lib_dir, served, monkeypatch):
    """A GET carries no Origin: without the header an <img src=/api/query?path=...> on any page would decode
    (a loop of them: the CPU) and time 403 against a decode (which paths are indexed)."""
    lib = served.app.state.library
    calls = []
    real_embed = lib.embed_file
    monkeypatch.setattr(lib, "embed_file", lambda path: calls.append(path) or real_embed(path))
    params = {"path": str(lib_dir["videos"] / "a" / "v0.mp4"), "k": 1}
    for headers in ({}, {"X-Videocontrast": "0"}):
        r = served.get("/api/query", params=params, headers=headers)
        assert r.status_code == 403 and "X-Videocontrast" in r.json()["error"], (headers, r.status_code)
    assert served.get("/api/query", params=params, headers={**QUERY, **CROSS["cross-site"]}).status_code == 403
    assert calls == []
    r = served.get("/api/query", params=params, headers=QUERY)
    assert r.status_code == 200 and len(calls) == 1
    row, _ = media_url(served, "v0.mp4")
    assert r.json()["neighbours"][0]["row"] == row
    # the page's script sends the header with every request of its own
    js = (Path(serve_mod.__file__).parent / "static" / "serve.js").read_text()
    get_json = js[js.index("async function getJSON"):]
    assert '"X-Videocontrast": "1"' in get_json[:get_json.index("\n}\n")]
    assert js.count("fetch(") == 1


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "127.0.0.1"])
def test_an_ip_address_as_host_is_served_and_foreign_names_are_not(lib_dir, bind):
    """DNS rebinding needs a name: any address literal is safe, so a LAN browser reaching a wildcard bind by
    the machine's address (or the printed http://0.0.0.0:8000/) gets the page."""
    c = client(lib_dir["index"], host=bind)
    for host in ("192.0.2.2:8000", "[fe80::1]:8000", "0.0.0.0:8000", "10.1.2.3", "[2001:db8::5]", "[::1]:8000",
                 "localhost:8000", "LOCALHOST"):
        assert c.get("/api/items", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8000", "192.0.2.2.evil.example", "localhost.evil.example",
                 "127.1:8000", "[fe80::zz]:8000", "192.0.2.2:80:80", "", "a b"):
        assert c.get("/api/items", headers={"Host": host}).status_code == 400, host
    name = socket.gethostname()
    wildcard = bind in ("0.0.0.0", "::")
    assert c.get("/api/items", headers={"Host": f"{name}:8000"}).status_code == (200 if wildcard else 400)


def test_a_name_given_as_host_is_served(lib_dir):
    c = client(lib_dir["index"], host="myhost.lan")
    assert c.get("/api/items", headers={"Host": "myhost.lan:8000"}).status_code == 200
    assert c.get("/api/items", headers={"Host": "other.lan:8000"}).status_code == 400


@pytest.fixture
def no_serving(monkeypatch):
    """uvicorn's Server.run records its sockets instead of serving forever."""
    calls = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: calls.append(sockets))
    yield calls
    for sockets in calls:
        for s in sockets or []:
            s.close()


def test_a_network_address_warns_that_the_collection_is_readable(lib_dir, capsys, no_serving):
    assert main(["serve", str(lib_dir["index"]), "--host", "0.0.0.0", "--port", "0"]) == 0
    out, err = capsys.readouterr()
    assert "warning" in err and "network" in err and "password" in err
    assert main(["serve", str(lib_dir["index"]), "--port", "0"]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err
    # what "serving at" names is a socket that is already listening
    sock = no_serving[-1][0]
    port = sock.getsockname()[1]
    assert f"http://127.0.0.1:{port}/" in out and port != 0
    socket.create_connection(("127.0.0.1", port), timeout=5).close()


# ------------------------------------------------------------------------------------------------ 4: query by path

def test_query_by_path_answers_alike_for_every_path_that_is_not_indexed(lib_dir, served, monkeypatch):
    lib = served.app.state.library
    calls = []
    real_embed = lib.embed_file
    monkeypatch.setattr(lib, "embed_file", lambda path: calls.append(path) or real_embed(path))
    d, videos = lib_dir["dir"], lib_dir["videos"]
    answers = set()
    for path in (d / "outside" / "secret.mp4", d / "outside" / "nosuch.mp4", "/etc/passwd", "/nonexistent/x",
                 videos / "a" / "extra.mp4", videos / "a" / "nosuch.mp4", videos / "a" / "link_out.mp4",
                 videos / "a" / ".." / ".." / "outside" / "secret.mp4", videos, "relative/v0.mp4"):
        r = served.get("/api/query", params={"path": str(path)}, headers=QUERY)
        answers.add((r.status_code, r.content))
    assert len(answers) == 1 and next(iter(answers))[0] == 403 and b"not a video of this index" in \
        next(iter(answers))[1], answers
    assert calls == []  # none was decoded
    emb = np.load(lib_dir["index"] / "embeddings.npy")
    r = served.get("/api/query", params={"path": str(videos / "a" / "v2.mp4"), "k": 2}, headers=QUERY)
    assert r.status_code == 200 and len(calls) == 1
    row, _ = media_url(served, "v2.mp4")
    assert [n["row"] for n in r.json()["neighbours"]] == list(np.argsort(-(emb @ emb[row]), kind="stable")[:2])


# ------------------------------------------------------------------------------------------------ 12: uploads

@pytest.fixture
def tmpdir_watch(tmp_path, monkeypatch):
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_an_upload_over_the_cap_is_refused_by_its_length_before_reading(lib_dir, tmpdir_watch):
    c = client(lib_dir["index"], limits=limits(max_upload_mb=1))
    r = c.post("/api/query", content=b"\0" * (2 << 20), headers=PAGE)
    assert r.status_code == 413 and "1 MB" in r.json()["error"]
    assert list(tmpdir_watch.iterdir()) == []
    # the default cap (200 MB) reads nothing of a body that declares more
    r = client(lib_dir["index"]).post("/api/query", content=b"\0" * 16,
                                      headers={**PAGE, "Content-Length": str(300 << 20)})
    assert r.status_code == 413 and "200 MB" in r.json()["error"]


def _asgi_post(app, length: str | None, chunks: int, chunk: int = 64 << 10) -> tuple[int, int, int]:
    """POST ``chunks`` chunks straight to the ASGI app: (status, chunks it pulled, peak traced memory)."""
    pulled = [0]
    status = []

    async def receive():
        if pulled[0] >= chunks:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled[0] += 1
        return {"type": "http.request", "body": b"\0" * chunk, "more_body": True}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    headers = [(b"host", b"127.0.0.1:8000"), (b"x-videocontrast", b"1"), (b"content-type", b"video/mp4")]
    if length is not None:
        headers.append((b"content-length", length.encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/api/query", "raw_path": b"/api/query", "query_string": b"k=1", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    tracemalloc.start()
    try:
        asyncio.run(app(scope, receive, send))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return status[0], pulled[0], peak


@pytest.mark.parametrize("length", [None, "1000"], ids=["no Content-Length", "a lying Content-Length"])
def test_a_streamed_upload_stops_at_the_cap(lib_dir, tmpdir_watch, length):
    app = create_app(lib_dir["index"], limits=limits(max_upload_mb=1))
    status, pulled, peak = _asgi_post(app, length, chunks=512)  # 32 MB offered
    assert status == 413
    assert pulled <= 16 + 2, f"the app read {pulled} chunks of 64 KB for a 1 MB cap"
    assert peak < 8 << 20, f"{peak >> 20} MB held"
    assert list(tmpdir_watch.iterdir()) == []


def _scope(method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8000"), *headers], "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000)}


async def _status(app, scope: dict, receive) -> list[int]:
    """Call the ASGI app: the statuses it sent (none when it sent nothing)."""
    status: list[int] = []

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status


def _stalled_upload(started: asyncio.Event):
    """An upload that sends one chunk, then nothing more, ever (a client trickling nothing)."""
    sent = [False]

    async def receive():
        if not sent[0]:
            sent[0] = True
            started.set()
            return {"type": "http.request", "body": b"\0" * 1000, "more_body": True}
        await asyncio.Event().wait()

    return receive


UPLOAD = [(b"x-videocontrast", b"1"), (b"content-type", b"video/mp4")]


def test_a_stalled_upload_holds_no_decode_slot(lib_dir, tmpdir_watch, monkeypatch):
    app = create_app(lib_dir["index"], limits=limits(max_decodes=1, max_uploads=1))
    lib = app.state.library
    monkeypatch.setattr(lib, "embed_file", lambda path: lib.col.emb[2])
    path = str(lib_dir["videos"] / "a" / "v2.mp4")

    async def scenario():
        started = asyncio.Event()
        upload = asyncio.create_task(_status(app, _scope("POST", "/api/query", b"k=1", UPLOAD),
                                             _stalled_upload(started)))
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.sleep(0.05)  # the upload is now waiting for its next chunk

        async def no_body():
            return {"type": "http.request", "body": b"", "more_body": False}

        query = _scope("GET", "/api/query", urlencode({"k": 1, "path": path}).encode(), [(b"x-videocontrast", b"1")])
        got = await asyncio.wait_for(_status(app, query, no_body), 10)
        # uploads have their own bound (the temporary folder): one at a time here
        got += await asyncio.wait_for(_status(app, _scope("POST", "/api/query", b"k=1", UPLOAD), no_body), 10)
        upload.cancel()  # the client gives up
        with pytest.raises(asyncio.CancelledError):
            await upload
        return got

    assert asyncio.run(scenario()) == [200, 503]
    assert list(tmpdir_watch.iterdir()) == []


def test_an_upload_over_its_time_is_cut_with_408(lib_dir, tmpdir_watch):
    app = create_app(lib_dir["index"], limits=limits(max_decodes=1, upload_seconds=0.3))

    async def scenario():
        t0 = time.monotonic()
        got = await asyncio.wait_for(_status(app, _scope("POST", "/api/query", b"k=1", UPLOAD),
                                             _stalled_upload(asyncio.Event())), 10)
        return got, time.monotonic() - t0

    status, took = asyncio.run(scenario())
    assert status == [408] and took < 5, (status, took)
    assert list(tmpdir_watch.iterdir()) == []
    # its slot, had it taken one, would be gone: a query still decodes
    c = TestClient(app, base_url=BASE, raise_server_exceptions=False)
    body = (lib_dir["videos"] / "a" / "v0.mp4").read_bytes()
    assert c.post("/api/query?k=1", content=body, headers=PAGE).status_code == 200


def test_a_client_leaving_mid_upload_is_no_error(lib_dir, tmpdir_watch):
    app = create_app(lib_dir["index"])
    messages = iter([{"type": "http.request", "body": b"\0" * 1000, "more_body": True},
                     {"type": "http.disconnect"}])

    async def receive():
        return next(messages)

    status = asyncio.run(_status(app, _scope("POST", "/api/query", b"k=1", UPLOAD), receive))  # raises nothing
    assert 500 not in status, status
    assert list(tmpdir_watch.iterdir()) == []


def test_uploads_leave_no_temporary_file(lib_dir, served, tmpdir_watch):
    body = (lib_dir["videos"] / "a" / "v0.mp4").read_bytes()
    assert served.post("/api/query?k=1", content=body, headers=PAGE).status_code == 200
    bad = served.post("/api/query?k=1", content=b"not a video", headers=PAGE)
    assert bad.status_code == 400 and "cannot be read" in bad.json()["error"]
    assert str(tmpdir_watch) not in bad.json()["error"]
    assert list(tmpdir_watch.iterdir()) == []


# ------------------------------------------------------------------------------------------------ 13: video bombs

def _big_video(path: Path, width: int, height: int, frames: int = 2) -> bytes:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        black = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24")
        for _ in range(frames):
            for packet in stream.encode(black):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


@pytest.fixture
def no_decoding(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a frame was decoded")

    monkeypatch.setattr(embed_mod, "read_frames", refuse)


def test_a_huge_resolution_is_refused_before_decoding(lib_dir, served, tmp_path, tmpdir_watch, no_decoding):
    body = _big_video(tmp_path / "bomb.mp4", 3200, 3200)  # 10.2 Mpixel > 4096x2160
    t0 = time.monotonic()
    r = served.post("/api/query?k=1", content=body, headers=PAGE)
    assert r.status_code == 413 and "3200x3200" in r.json()["error"], r.text
    assert time.monotonic() - t0 < 5
    assert list(tmpdir_watch.iterdir()) == []


def test_too_many_frames_are_refused_before_decoding(lib_dir, tmpdir_watch, no_decoding):
    c = client(lib_dir["index"], limits=limits(max_frames=10))
    body = (lib_dir["videos"] / "a" / "v1.mp4").read_bytes()  # 14 frames
    r = c.post("/api/query?k=1", content=body, headers=PAGE)
    assert r.status_code == 413 and "14 frames" in r.json()["error"], r.text
    r = c.get("/api/query", params={"path": str(lib_dir["videos"] / "a" / "v1.mp4")}, headers=QUERY)
    assert r.status_code == 413


def test_at_most_max_decodes_queries_decode_at_once(lib_dir, monkeypatch):
    c = client(lib_dir["index"], limits=limits(max_decodes=2, max_uploads=5))
    lib = c.app.state.library
    inside, release = [], threading.Event()
    q = lib.col.emb[0]

    def slow(path):
        inside.append(path)
        release.wait(20)
        return q

    monkeypatch.setattr(lib, "embed_file", slow)
    body = (lib_dir["videos"] / "a" / "v0.mp4").read_bytes()
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(
        c.post("/api/query?k=1", content=body, headers=PAGE).status_code)) for _ in range(5)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 15
    # the three losers answer at once; the two winners may still be on their way into embed_file
    while (statuses.count(503) < 3 or len(inside) < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    busy, running = statuses.count(503), len(inside)
    release.set()
    for t in threads:
        t.join(20)
    assert (busy, running) == (3, 2), (statuses, len(inside))
    assert sorted(statuses) == [200, 200, 503, 503, 503]


def test_a_query_over_its_time_limit_answers_503_and_keeps_its_slot(lib_dir, monkeypatch):
    c = client(lib_dir["index"], limits=limits(max_decodes=1, max_seconds=0.5))
    lib = c.app.state.library
    release = threading.Event()
    monkeypatch.setattr(lib, "embed_file", lambda path: release.wait(20) and lib.col.emb[0])
    body = (lib_dir["videos"] / "a" / "v0.mp4").read_bytes()
    t0 = time.monotonic()
    r = c.post("/api/query?k=1", content=body, headers=PAGE)
    assert r.status_code == 503 and "0.5 s" in r.json()["error"] and time.monotonic() - t0 < 5
    # the abandoned decode still runs, so it still counts against max_decodes
    r = c.post("/api/query?k=1", content=body, headers=PAGE)
    assert r.status_code == 503 and "busy" in r.json()["error"]
    release.set()
    deadline = time.monotonic() + 10
    while (r := c.post("/api/query?k=1", content=body, headers=PAGE)).status_code == 503 and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert r.status_code == 200


# ------------------------------------------------------------------------------------------------ 20: the command

def test_a_port_out_of_range_is_one_line(lib_dir, capsys, no_serving):
    assert main(["serve", str(lib_dir["index"]), "--port", "99999"]) == 2
    line = one_line_error(capsys.readouterr().err, "serve")
    assert "--port 99999" in line and "65535" in line and no_serving == []


def _not_local() -> str:
    """A documentation address (RFC 5737) that this machine does not have (networks vary: this sandbox has
    192.0.2.2); skip where it has them all."""
    for address in ("192.0.2.1", "198.51.100.1", "203.0.113.1", "192.0.2.254"):
        with socket.socket() as s:
            try:
                s.bind((address, 0))
            except OSError:
                return address
    pytest.skip("this machine has every documentation address tried")


def test_a_bad_host_is_one_line(lib_dir, capsys, no_serving):
    for host in ("999.1.1.1", _not_local()):  # not an address; an address of another machine
        assert main(["serve", str(lib_dir["index"]), "--host", host, "--port", "0"]) == 2
        out, err = capsys.readouterr()
        line = one_line_error(err, "serve")
        assert f"--host {host}" in line and "serving" not in out
    assert no_serving == []


def test_a_port_in_use_is_one_line_and_nothing_claims_to_serve(lib_dir, capsys, no_serving):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        assert main(["serve", str(lib_dir["index"]), "--port", str(port)]) == 2
    finally:
        taken.close()
    out, err = capsys.readouterr()
    line = one_line_error(err, "serve")
    assert f"port {port} is in use" in line and "serving" not in out and no_serving == []


# ------------------------------------------------------------------------------------------------ 21: parameters

@pytest.mark.parametrize("url, name", [
    ("/api/neighbours/0?prefix=%00", "prefix"),
    ("/api/neighbours/0?label=a%00b", "label"),
    ("/api/neighbours/0?prefix=" + "x" * 5000, "prefix"),
    ("/api/neighbours/0?k=abc", "k"),
    ("/api/neighbours/0?k=-1", "k"),
    ("/api/neighbours/0?k=" + "9" * 40, "k"),
    ("/api/neighbours/0?k=1e3", "k"),
    ("/api/items?offset=abc", "offset"),
    ("/api/items?offset=-1", "offset"),
    ("/api/items?limit=0", "limit"),
    ("/api/items?limit=" + "9" * 5000, "limit"),
    ("/api/query?path=%00", "path"),
    ("/api/query?path=x&k=zz", "k"),
    ("/api/query?k=-5&prefix=%00", "k"),
])
def test_bad_query_parameters_are_400_naming_the_parameter(served, url, name):
    r = served.get(url, headers=QUERY)
    assert r.status_code == 400, (url, r.status_code)
    message = r.json()["error"]
    assert message.startswith(name + " ") and "\n" not in message, message
