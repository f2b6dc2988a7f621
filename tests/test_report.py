"""Tests for videocontrast.eval.report (offline HTML + PNG) and the confusion-matrix PNG."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import torch

from videocontrast.eval.metrics import confusion_matrix_png
from videocontrast.eval.report import html_page, image_html, retrieval_report, table_html


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs: list[str] = []
        self.scripts = 0
        self.links = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.srcs.append(attrs["src"])
        self.scripts += tag == "script"
        self.links += tag == "link"


def fake_reader(path: str):
    """Channels-last frames for 'a*', channels-first float frames for 'b*', an error otherwise."""
    g = torch.Generator().manual_seed(len(path))
    if path.startswith("a"):
        return torch.randint(0, 255, (3, 24, 32, 3), generator=g, dtype=torch.uint8).numpy()
    if path.startswith("b"):
        return torch.rand(3, 3, 20, 30, generator=g)
    raise OSError(f"cannot decode {path}")


def test_retrieval_report_writes_html_and_png(tmp_path):
    queries = [
        {"path": "a_query.mp4", "label_name": "Crawling", "neighbours": [
            {"path": "a_n1.mp4", "label_name": "Crawling", "sim": 0.91, "hit": True},
            {"path": "b_n2.mp4", "label_name": "RockClimbing", "sim": 0.85, "hit": False},
            {"path": "zz_broken.mp4", "label_name": "Boxing <ring>", "sim": 0.80, "hit": False}]},
        {"path": "b_query.mp4", "label_name": "Boxing", "neighbours": [
            {"path": "a_n3.mp4", "label_name": "Boxing", "sim": 0.7, "hit": True}]},
        {"path": "a_unlabeled.mp4", "label_name": "query", "neighbours": [  # search of an unlabeled folder
            {"path": "a_n4.mp4", "label_name": "folder", "sim": 0.6, "hit": None}]},
    ]
    page = retrieval_report(tmp_path / "out", queries, frame_reader=fake_reader, title="Retrieval test",
                            metrics={"R@1": 0.5, "R@5": 0.75, "protocol": {"similarity": "cosine"}})
    assert page == tmp_path / "out" / "retrieval.html" and page.is_file()
    text = page.read_text(encoding="utf-8")
    parser = _Images()
    parser.feed(text)
    assert parser.srcs and parser.scripts == 0 and parser.links == 0  # offline: no external JS/CSS
    for src in parser.srcs:
        assert not src.startswith(("http:", "https:", "/"))  # relative to the page
        img = mpimg.imread(page.parent / src)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert (tmp_path / "out" / "img" / "retrieval.png").is_file()
    assert "Boxing &lt;ring&gt;" in text and "<ring>" not in text  # names escaped
    assert "<td>50.0%</td>" in text and "<th>retrieval R@5</th>" in text and "0.5000" not in text
    assert "cosine" in text and "<td>0.910</td>" in text
    assert text.count("<td>yes</td>") == 2 and text.count("<td>no</td>") == 2 and text.count("<td>?</td>") == 1


def test_html_helpers_escape_and_structure():
    table = table_html([{"name": "a<b", "acc": 0.5}, {"name": "c", "extra": 1}])
    assert table.count("<tr>") == 3 and "a&lt;b" in table and "<th>extra</th>" in table and "0.5000" in table
    page = html_page("T & U", [("Results", table), ("Plot", image_html("img/x.png", 'a "plot"'))])
    assert page.startswith("<!DOCTYPE html>") and "<title>T &amp; U</title>" in page
    assert 'src="img/x.png"' in page and 'alt="a &quot;plot&quot;"' in page
    assert table_html([]) == "<p><em>(empty)</em></p>"


def test_confusion_matrix_png_101_classes(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 101, 500)
    pred = np.where(rng.random(500) < 0.6, labels, rng.integers(0, 101, 500))
    path = confusion_matrix_png(pred, labels, [f"Class{i:03d}" for i in range(101)], tmp_path / "cm" / "c.png")
    img = mpimg.imread(path)
    assert img.shape[0] >= 1500 and img.shape[1] >= 1500  # big enough for 101 legible tick labels


def test_confusion_matrix_png_small_values(tmp_path):
    path = confusion_matrix_png(np.array([0, 1, 1]), np.array([0, 1, 0]), ["x", "y"], Path(tmp_path) / "s.png")
    assert mpimg.imread(path).ndim == 3
