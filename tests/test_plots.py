"""Every figure is a matplotlib Figure of its own (videocontrast.eval.plots), never pyplot: each plot function
writes a readable PNG and leaves the user's matplotlib backend as it was; and the one percent format."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from videocontrast import names

PKG = Path(__file__).resolve().parents[1] / "videocontrast"
ROOT = PKG.parent

# The plot functions, each drawing a small figure into DIR (a pathlib.Path); run here and in a fresh interpreter.
PLOTS = textwrap.dedent('''
    import numpy as np, torch
    from videocontrast.demo.report import embedding_plot, label_efficiency_plot, loss_curve
    from videocontrast.eval.ablate import write_tables
    from videocontrast.eval.metrics import confusion_matrix_png
    from videocontrast.eval.report import retrieval_figure
    from videocontrast.reproduce.run import _bars, _retrieval_png
    from videocontrast.reproduce.thesis import TABLES

    def reader(path):
        return torch.randint(0, 255, (3, 16, 20, 3), generator=torch.Generator().manual_seed(len(path)),
                             dtype=torch.uint8).numpy()

    written = {}
    written["confusion"] = confusion_matrix_png(np.array([0, 1, 1, 2]), np.array([0, 1, 0, 2]), ["a", "b", "c"],
                                                DIR / "confusion.png")
    written["loss"] = loss_curve([{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}], DIR / "loss.png")
    written["label_efficiency"] = label_efficiency_plot(
        {"label_efficiency": {"labels_per_class": [1, 5], "pretrained": {"linear_top1": [0.2, 0.4]},
                              "random_init": {"linear_top1": [0.1, 0.2]}},
         "pretrained": {"linear_top1": 0.5}, "random_init": {"linear_top1": 0.3}, "dataset": {"chance": 0.1}},
        DIR / "label_efficiency.png")
    g = torch.Generator().manual_seed(0)
    sets = {n: {"feats": torch.randn(12, 8, generator=g), "video_ids": np.repeat(np.arange(6), 2),
                "labels": np.repeat(np.arange(6) % 3, 2)} for n in ("pretrained", "random_init")}
    written["embedding"] = embedding_plot(sets, ["x", "y", "z"], DIR / "embedding.png")
    write_tables([{"method": "simclr", "linear_top1": 0.5, "retrieve_R@1": 0.25, "final_loss": 1.0},
                  {"method": "moco-v2", "linear_top1": 0.4, "retrieve_R@1": 0.5, "final_loss": 2.0}],
                 DIR / "ablate", ["method"], caption="scored on test")
    written["ablate"] = DIR / "ablate" / "results.png"
    queries = [{"path": "q.mp4", "label_name": "Boxing", "neighbours": [
        {"path": "n1.mp4", "label_name": "Boxing", "sim": 0.9, "hit": True},
        {"path": "n2.mp4", "label_name": "Crawling", "sim": 0.5, "hit": False}]}]
    written["retrieval"] = retrieval_figure(DIR / "retrieval.png", queries, reader, title="retrieval")
    table = TABLES["table1"]
    written["bars"] = _bars(DIR / "bars.png", table, [[0.5 for _ in cells] for _, cells in table.rows])
    fig4 = TABLES["fig4"]
    written["not_run"] = _retrieval_png(DIR / "not_run.png", fig4, {c.job: "not run" for _, cells in fig4.rows
                                                                     for c in cells if c is not None})
''')


def _run_plots(out: Path) -> dict[str, Path]:
    space = {"DIR": out}
    exec(PLOTS, space)
    return space["written"]


def test_each_plot_function_writes_a_png(tmp_path):
    written = _run_plots(tmp_path)
    assert len(written) == 8
    for name, path in written.items():
        assert path is not None and path.is_file(), name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        img = mpimg.imread(path)
        assert img.ndim == 3 and img.shape[0] > 10 and img.shape[1] > 10 and img.shape[2] in (3, 4), name


def test_the_preview_writes_a_png_without_pyplot(tmp_path, monkeypatch):
    """data preview's grid (its dataset and augmentation stubbed: what is drawn is the question here)."""
    from videocontrast.build import preview as preview_mod

    class Videos:
        classes = ["a", "b"]

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return {"video": torch.randint(0, 255, (2, 4, 3, 16, 16), dtype=torch.uint8), "label": i % 2}

    monkeypatch.setattr(preview_mod, "dataset_from_config", lambda cfg, split, purpose: Videos())
    # the augmentation gives (B, C, T, H, W) floats
    monkeypatch.setattr(preview_mod, "build_augment",
                        lambda cfg: lambda v, generator: v.float().permute(0, 2, 1, 3, 4) / 255)
    cfg = SimpleNamespace(train=SimpleNamespace(seed=0), data=SimpleNamespace(dataset="synthetic"),
                          aug=SimpleNamespace(temporal="none", spatial_mode="chunk"))
    path = preview_mod.preview(cfg, tmp_path, num_videos=2, frames_shown=3)
    assert path == tmp_path / "preview.png"
    assert mpimg.imread(path).shape[2] in (3, 4)


def test_plotting_leaves_the_users_backend_alone(tmp_path):
    """In a fresh interpreter whose backend is chosen (svg), every plot function runs and then the backend is
    still svg and pyplot was never imported."""
    code = ("import sys\nfrom pathlib import Path\nimport matplotlib\nmatplotlib.rcParams['backend'] = 'svg'\n"
            f"DIR = Path({str(tmp_path)!r})\n" + PLOTS +
            "print(matplotlib.rcParams['backend'], 'matplotlib.pyplot' in sys.modules, len(written))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-3:] == ["svg", "False", "8"]


def test_no_module_uses_pyplot_or_switches_the_backend():
    bad = re.compile(r"matplotlib\.use\(|import matplotlib\.pyplot|from matplotlib import pyplot|"
                     r"from matplotlib\.pyplot import")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in sorted(PKG.rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if bad.search(line)]
    assert hits == []


def test_new_figure():
    from matplotlib.figure import Figure

    from videocontrast.eval.plots import colormap, new_figure

    fig, ax = new_figure((4, 3), dpi=50)
    assert isinstance(fig, Figure) and fig.dpi == 50 and tuple(fig.get_size_inches()) == (4, 3)
    assert ax.figure is fig
    fig, axes = new_figure((4, 3), 2, 3, squeeze=False)
    assert axes.shape == (2, 3)
    fig, none = new_figure((4, 1), None)
    assert none is None and fig.axes == []
    assert colormap("tab10").N == 10


@pytest.mark.parametrize("x, digits, text", [
    (0.775, 1, "77.5%"), (0.5, 1, "50.0%"), (1, 1, "100.0%"), (0, 1, "0.0%"), (1 / 3, 1, "33.3%"),
    (0.12345, 2, "12.35%"), (0.5, 0, "50%"), (-0.05, 1, "-5.0%"), (np.float32(0.25), 1, "25.0%"),
    (None, 1, "-"), ("n/a", 1, "-"),
])
def test_percent(x, digits, text):
    assert names.percent(x, digits) == text


def test_every_report_formats_percent_with_names_percent():
    from videocontrast.demo import report as demo_report, verdict
    from videocontrast.eval import ablate, report
    from videocontrast.reproduce import run

    assert report.percent is demo_report.percent is verdict.percent is ablate.percent is run.percent \
        is names.percent
    # reproduce's tables hold fractions; the thesis's numbers (percent, as printed) are shown as they are
    assert run._ours_text(0.775) == "77.5%" and run._ours_text(None) == "" and run._ours_text("not run") == "not run"


def test_one_metric_key_list():
    from videocontrast.demo import report as demo_report, verdict
    from videocontrast.eval import report, retrieval

    assert retrieval.DEFAULT_KS is names.RECALL_KS == (1, 5, 10, 20, 50)
    assert list(demo_report.COLUMNS) == list(names.DEMO_METRICS)
    assert demo_report.COLUMNS["R@5"] == "retrieval R@5" == names.metric_label("R@5")
    assert list(verdict.METRICS) == list(names.VERDICT_METRICS)
    assert verdict.METRICS["linear_top1"] == "linear-probe top-1"  # in a sentence; a header has no hyphen
    assert names.metric_label("linear_top1") == "linear probe top-1"
    assert report._metric_header("R@3") == "retrieval R@3" and report._metric_header("num_queries") == "num queries"
