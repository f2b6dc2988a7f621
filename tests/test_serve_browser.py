"""The search page in a real headless Chromium (issue 13): load the grid, click a clip, see its neighbours (checked
against NumPy brute force), play one, no console errors; a screenshot is saved in the test's tmp folder.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages ending in a
NUL byte on file descriptors 3 and 4), so no websocket library or browser driver is needed. Skips (with the reason)
where Debian's chromium is not installed.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="serve needs starlette: pip install 'videocontrast[search]'")
uvicorn = pytest.importorskip("uvicorn", reason="serve needs uvicorn: pip install 'videocontrast[search]'")

from videocontrast.search.embed import embed_collection  # noqa: E402
from videocontrast.search.serve import create_app  # noqa: E402

from test_embed import write_video  # noqa: E402
from test_export import make_checkpoint  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class DevTools:
    """The smallest DevTools-protocol client: send a command, wait for its answer, keep the events."""

    def __init__(self, write_fd: int, read_fd: int) -> None:
        self.w, self.r, self.buf, self.next_id, self.events = write_fd, read_fd, b"", 0, []

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self.buf:
            ready, _, _ = select.select([self.r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self.buf += chunk
        msg, _, self.buf = self.buf.partition(b"\0")
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._message(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads seen so far."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif e.get("method") == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("exception", {}).get("description", str(p)))
            elif e.get("method") == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out


@pytest.fixture
def server(tmp_path):
    videos = tmp_path / "videos"
    for i in range(6):
        write_video(videos / ("a" if i < 3 else "b") / f"v{i}.mp4", 30 + 4 * i, seed=40 + i)
    index = embed_collection(make_checkpoint(tmp_path / "last.pt"), videos, tmp_path / "videos.emb", clips=2,
                             progress=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(create_app(index), log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", index
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def chromium(tmp_path):
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    log = open(tmp_path / "chromium.log", "w")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--mute-audio", "--autoplay-policy=no-user-gesture-required",
             "--remote-debugging-pipe", f"--user-data-dir={tmp_path / 'profile'}", "about:blank"]
    # bash puts the two pipe ends on the file descriptors 3 and 4 that --remote-debugging-pipe reads and writes
    proc = subprocess.Popen(["bash", "-c", f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}', CHROMIUM, *flags],
                            pass_fds=(to_chrome_r, from_chrome_w), stdout=log, stderr=log)
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    try:
        yield DevTools(to_chrome_w, from_chrome_r)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        os.close(to_chrome_w)
        os.close(from_chrome_r)
        log.close()


def _wait(cdp: DevTools, session: str, expression: str, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = cdp.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        value = r.get("result", {}).get("value")
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; console: {cdp.errors()}")


def _click(cdp: DevTools, session: str, selector: str) -> None:
    """A real mouse click (pressed + released) in the middle of the element."""
    box = _wait(cdp, session, f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
                              f" e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();"
                              f" return [r.x + r.width / 2, r.y + r.height / 2]; }})()", selector)
    for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
        cdp.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                              "clickCount": 1}, session)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_grid_click_neighbours_play_in_chromium(server, chromium, tmp_path):
    url, index = server
    cdp = chromium
    target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Runtime", "Log", "Page"):
        cdp.send(f"{domain}.enable", {}, session)
    cdp.send("Emulation.setDeviceMetricsOverride", {"width": 1200, "height": 900, "deviceScaleFactor": 1,
                                                    "mobile": False}, session)
    cdp.send("Page.navigate", {"url": url + "/"}, session)

    # 1. the grid: one tile per row, previews (animated WebP made by the server) loaded
    n = _wait(cdp, session, "document.body.dataset.ready === '1' && document.querySelectorAll('#grid .tile').length",
              "the grid")
    assert n == 6
    _wait(cdp, session, "[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)",
          "the previews")

    # 2. click a clip: its neighbours, best first, with their similarity
    _click(cdp, session, '#grid .tile[data-row="4"] img')
    got = _wait(cdp, session, "(() => { const t = [...document.querySelectorAll('#neighbours .tile')];"
                              " return t.length ? t.map(e => [Number(e.dataset.row),"
                              " Number(e.querySelector('.sim').textContent)]) : null; })()", "the neighbours")
    emb = np.load(index / "embeddings.npy")
    want = [i for i in np.argsort(-(emb @ emb[4]), kind="stable") if i != 4]
    assert [r for r, _ in got] == want
    np.testing.assert_allclose([s for _, s in got], emb[want] @ emb[4], atol=2e-3)
    _wait(cdp, session, "[...document.querySelectorAll('#neighbours img')].every(i => i.complete && i.naturalWidth > 0)",
          "the neighbours' previews")

    # 3. play the first neighbour: the served .mp4 plays in a <video> (or, for a format the browser cannot
    #    play, its animated preview stays)
    _click(cdp, session, "#neighbours .tile button.play")
    played = _wait(cdp, session, "document.querySelector('#neighbours .tile').dataset.played", "playback")
    assert played == "video", f"the video did not play ({played})"
    _wait(cdp, session, "(() => { const v = document.querySelector('#neighbours video'); return v && v.currentTime > 0"
                        " && !v.error; })()", "the video to advance")

    shot = cdp.send("Page.captureScreenshot", {"format": "png"}, session)
    (tmp_path / "serve.png").write_bytes(base64.b64decode(shot["data"]))
    assert (tmp_path / "serve.png").stat().st_size > 1000
    assert cdp.errors() == [], f"console errors: {cdp.errors()}"
