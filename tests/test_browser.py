"""Reports open offline in a real browser: headless Chromium loads each page, every image loads, and the
console shows no errors. Skips (with the reason) where Debian's chromium is not installed."""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=4000", "--dump-dom"]
PROBE = ("<script>window.addEventListener('load',()=>{const bad=[...document.images].filter(i=>!i.complete||"
         "i.naturalWidth===0).map(i=>i.getAttribute('src'));document.body.setAttribute('data-images',"
         "document.images.length);document.body.setAttribute('data-broken',JSON.stringify(bad));});</script>")


def open_in_chromium(page: Path, tmp_path: Path) -> tuple[int, list[str], list[str]]:
    """Load ``page`` (a copy with a probe script, next to it so relative paths hold) and return
    (number of images, images that failed to load, console error lines)."""
    probe = page.with_name(f".probe-{page.name}")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    try:
        proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", probe.as_uri()],
                              capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    body = re.search(r"<body([^>]*)>", proc.stdout)
    assert body, f"chromium returned no page for {page}: {proc.stderr[-1000:]}"
    attrs = dict(re.findall(r'(data-[a-z]+)="([^"]*)"', body.group(1)))
    console = [line for line in proc.stderr.splitlines()
               if "CONSOLE" in line or "Uncaught" in line or "Failed to load resource" in line]
    return int(attrs["data-images"]), json.loads(html_lib.unescape(attrs["data-broken"])), console


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_demo_and_retrieval_reports_render_in_chromium(tmp_path):
    from videocontrast.cli import main
    from test_cli import TINY

    out = tmp_path / "run"
    assert main(["demo", "--out", str(out), f"data.root={tmp_path / 'data'}", *TINY]) == 0
    res = json.loads((out / "results.json").read_text())
    pages = [out / "report.html", *(out / name / "retrieval.html" for name in ("pretrained", "random_init",
                                                                                "random_init_rgb", "supervised"))]
    # loss, label efficiency, embeddings, retrieval of pretrained and the best baseline
    assert pages[0].read_text().count("<img") >= 5 and 'src="label_efficiency.png"' in pages[0].read_text()
    assert f'src="{res["best_baseline"]}/img/retrieval.png"' in pages[0].read_text()
    for page in pages:
        n, broken, console = open_in_chromium(page, tmp_path)
        assert n >= 1, f"{page} shows no image"
        assert broken == [], f"{page}: images that did not load: {broken}"
        assert console == [], f"{page}: console errors: {console}"
