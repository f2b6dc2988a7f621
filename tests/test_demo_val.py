"""`videocontrast demo --val` (issue 21): every encoder scored on a validation split carved out of the training
videos, grouped by source, the test split never read; the supervised baselines and the label subsets use only the
other training videos. One tiny synthetic demo is shared by the tests here."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

import videocontrast.build.components as build
import videocontrast.demo.baselines as baselines
import videocontrast.demo.run as demo
from videocontrast.cli import main

from test_label_efficiency import LE_TINY


def split_lines(path: Path) -> set[str]:
    return {line.split()[0] for line in path.read_text().splitlines() if line.strip()}


@pytest.fixture(scope="module")
def val_run(tmp_path_factory):
    """The demo with --val 0.25; records every subset of the dataset that was opened and the videos each
    supervised baseline trained on."""
    out = tmp_path_factory.mktemp("val") / "run"
    data = tmp_path_factory.mktemp("val-data") / "synthetic"
    opened: list[str] = []
    trained_on: list[set[str]] = []
    real_build, real_sup = build.build_dataset, demo.train_supervised_baseline

    def spy_build(*args, **kw):
        opened.append(kw.get("subset"))
        return real_build(*args, **kw)

    def spy_sup(cfg, device, run_dir, budget_s, quiet=False, train_set=None, **kw):
        def recorded():
            ds = train_set()
            trained_on.append({r.path for r in ds.records})
            return ds
        return real_sup(cfg, device, run_dir, budget_s, quiet, train_set=recorded, **kw)

    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setattr(build, "build_dataset", spy_build)
        # the all-labels baseline is trained from run, the label subsets' baselines from baselines
        mp.setattr(demo, "train_supervised_baseline", spy_sup)
        mp.setattr(baselines, "train_supervised_baseline", spy_sup)
        assert main(["demo", "--val", "0.25", "--out", str(out), f"data.root={data}", *LE_TINY]) == 0
    return out, data, opened, trained_on, printed.getvalue()


def test_the_test_split_is_never_opened(val_run):
    _, _, opened, _, _ = val_run
    assert opened and "test" not in opened, opened


def test_results_are_on_the_validation_split_and_say_so(val_run):
    out, _, _, _, printed = val_run
    res = json.loads((out / "results.json").read_text())
    val = split_lines(out / "val" / "val_split.txt")
    assert res["evaluated_on"] == "validation" and res["dataset"]["evaluated_on"] == "validation"
    assert res["dataset"]["test_videos"] == len(val) == res["dataset"]["validation"]["val_videos"]
    assert res["dataset"]["train_videos"] + len(val) == 48  # 8 classes x 6 training videos
    for name in ("pretrained", "random_init", "supervised"):
        assert 0.0 <= res[name]["linear_top1"] <= 1.0
    assert res["verdict"].startswith("On a validation split")
    assert "validation videos" in res["verdict"] and " test videos" not in res["verdict"]
    assert "On a validation split" in printed
    assert "validation split" in (out / "report.html").read_text()


def test_supervised_baselines_and_label_subsets_never_use_a_validation_video(val_run):
    out, data, _, trained_on, _ = val_run
    val = split_lines(out / "val" / "val_split.txt")
    root = data.resolve()
    assert len(trained_on) >= 2  # the all-labels baseline and at least the 1-per-class one
    for videos in trained_on:
        rel = {Path(p).resolve().relative_to(root).as_posix() for p in videos}
        assert rel and not rel & val, sorted(rel & val)
    res = json.loads((out / "results.json").read_text())
    assert res["label_efficiency"]["labels_per_class"], res["label_efficiency"]
    for n in res["label_efficiency"]["labels_per_class"]:
        here = out / "label_efficiency" / f"{n}_per_class"
        assert split_lines(here / "val_split.txt") == val  # every encoder scored on the same validation videos
        assert not split_lines(here / "labelled_split.txt") & val


def test_the_scores_are_those_of_the_linear_command_on_the_same_split(val_run, tmp_path):
    """An independent path to the same figure: `videocontrast linear --val` on the demo's checkpoint."""
    out, data, _, _, _ = val_run
    res = json.loads((out / "results.json").read_text())
    ck = out / "pretrain" / "checkpoints" / "last.pt"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["linear", "--checkpoint", str(ck), "--config", "demo", "--val", "0.25",
                     "--out", str(tmp_path / "lin"), f"data.root={data}", *LE_TINY]) == 0
    lin = json.loads((tmp_path / "lin" / "results.json").read_text())
    assert split_lines(tmp_path / "lin" / "val_split.txt") == split_lines(out / "val" / "val_split.txt")
    assert lin["val_top1"] == pytest.approx(res["pretrained"]["linear_top1"])


def test_a_demo_folder_scored_on_test_refuses_a_rerun_with_val(val_run, capsys):
    out, data, _, _, _ = val_run
    assert main(["demo", "--out", str(out), f"data.root={data}", *LE_TINY]) == 2
    err = capsys.readouterr().err
    assert "data.val_fraction" in err and "--fresh" in err and "Traceback" not in err
