"""The product end to end through the command line: demo, evaluation commands, embed/search, ablate,
data info. One tiny demo run is shared by the tests of this module (CI keeps this end-to-end path)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from videocontrast.cli import build_parser, main
from videocontrast.search.embed import read_table

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ["demo", "pretrain", "linear", "finetune", "knn", "retrieve", "embed", "search", "serve", "data", "ablate"]
# The demo preset shrunk so the whole demo runs in well under a minute on 2 CPU cores.
TINY = ["data.synthetic_videos_per_class=6", "data.synthetic_frames=12", "data.synthetic_size=32",
        "data.clip_len=4", "data.decode_size=24", "data.size=16", "model.width=8", "model.head_hidden=32",
        "optim.batch_size=8", "train.epochs=2", "data.num_workers=0", "eval.cv_folds=2"]


def fractions(d: dict, keys) -> None:
    for k in keys:
        assert 0.0 <= d[k] <= 1.0, (k, d[k])


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    data = tmp_path_factory.mktemp("data") / "synthetic"
    assert main(["demo", "--out", str(out / "run"), f"data.root={data}", *TINY]) == 0
    return out / "run", data


def test_every_command_has_help_with_an_example(capsys):
    parser = build_parser()
    for cmd in COMMANDS:
        with pytest.raises(SystemExit):
            parser.parse_args([cmd, "--help"])
        text = capsys.readouterr().out
        assert "example:" in text, cmd


def test_demo_writes_results_and_report(demo_run):
    run, _ = demo_run
    res = json.loads((run / "results.json").read_text())
    # the demo preset is on residual input: random init on RGB is a baseline too, and supervised from scratch
    encoders = ("pretrained", "random_init", "random_init_rgb", "supervised")
    for name in encoders:
        fractions(res[name], ["linear_top1", "knn_top1", "R@1", "R@5"])
        assert res[name]["R@1"] <= res[name]["R@5"]
    assert res["random_init_rgb"]["protocol"]["linear"]["clip_len"] == 3  # as many frames as 4-frame residual clips
    best = res["best_baseline"]
    assert best in encoders[1:] and all(res[best]["linear_top1"] >= res[b]["linear_top1"] for b in encoders[1:])
    assert res["margin_vs_best"] == pytest.approx(res["pretrained"]["linear_top1"] - res[best]["linear_top1"])
    # its 95% interval from the two encoders' saved test predictions brackets it, and the verdict states it
    low, high = res["margin_ci95"]
    assert -1 <= low <= res["margin_vs_best"] <= high <= 1
    assert f"The 95% interval of that margin is {100 * low:+.1f} to {100 * high:+.1f} points" in res["verdict"]
    # the supervised baseline: the same backbone trained on the labels, a checkpoint of kind "supervised"
    from videocontrast.engine.checkpoint import load_checkpoint

    sup = load_checkpoint(res["supervised"]["training"]["checkpoint"])
    assert sup["kind"] == "supervised" and sup["config"]["model"] == res["config"]["model"]
    # ... with its own augmentation, not pretraining's colour jitter and grayscale (demo: no flip, it changes the class)
    assert res["config"]["aug"]["jitter"] and res["config"]["aug"]["gray"]
    assert sup["config"]["eval"]["finetune_augment"] == res["supervised"]["training"]["augment"] == "crop"
    assert (sup["config"]["aug"]["min_scale"], sup["config"]["aug"]["jitter"], sup["config"]["aug"]["gray"],
            sup["config"]["aug"]["flip"]) == (0.5, False, False, False)
    assert "grayscale" not in res["supervised"]["training"]["augment_spatial"]
    assert "(eval.finetune_augment=crop)" in res["verdict"]
    assert res["supervised"]["training"]["budget_s"] == pytest.approx(
        sum(h["time_s"] for h in res["pretrain"]["history"]))
    # TINY: 8 synthetic classes of 6 videos
    assert res["dataset"]["num_classes"] == 8 and res["dataset"]["chance"] == 0.125
    assert res["dataset"]["train_videos"] + res["dataset"]["test_videos"] == 48
    assert res["pretrain"] | {"history": None} == res["pretrain"] | {"history": None, "epochs": 2,
                                                                     "epochs_planned": 2, "cut_by_time_limit": False}
    assert "config" in res and res["timings"]["total"] > 0
    # TINY has 4 training videos per class: the few-label result (1 per class) leads, then all labels
    assert res["verdict"].startswith("With 1 labelled video per class, pretrained") and "chance level 12.5%" in \
        res["verdict"] and "With all labels, pretraining" in res["verdict"]
    html = (run / "report.html").read_text()
    for img in ("loss.png", "embeddings.png", "pretrained/img/retrieval.png", f"{best}/img/retrieval.png",
                f"{best}/confusion_linear.png"):
        assert img in html and (run / img).exists(), img
    assert (run / "pretrain" / "checkpoints" / "last.pt").exists()


def test_demo_says_what_it_reuses_and_refuses_a_run_with_other_settings(demo_run, tmp_path, capsys, monkeypatch):
    import videocontrast.demo.baselines as demo

    # This test is about the run folder; the evaluation (checked above) is stubbed where it is slow.
    monkeypatch.setattr(demo, "run_linear", lambda *a, **k: {"top1": 0.5, "protocol": {}})
    monkeypatch.setattr(demo, "run_retrieve", lambda *a, **k: {"R@1": 0.5, "R@5": 0.5, "protocol": {}})
    run, data = demo_run
    out = tmp_path / "demo"
    shutil.copytree(run, out)  # the shared run stays as it is
    ckpt = out / "pretrain" / "checkpoints" / "last.pt"
    stamp = ckpt.stat().st_mtime_ns
    capsys.readouterr()
    # the same demo again: the finished pretraining is reused, and it says so
    assert main(["demo", "--out", str(out), f"data.root={data}", *TINY]) == 0
    said = capsys.readouterr().out
    assert f"reusing the finished pretraining run in {out / 'pretrain'} (2 epochs)" in said
    assert "rerun into the same folder: reused pretraining (2 epochs), supervised training" in said
    assert ckpt.stat().st_mtime_ns == stamp
    first = json.loads((run / "results.json").read_text())["timings"]
    assert json.loads((out / "results.json").read_text())["timings"] == first  # the first run's, not the rerun's
    # a demo with other settings into it: refused before any work, naming the difference and the way out
    results = (out / "results.json").read_text()
    assert main(["demo", "--quick", "--out", str(out), f"data.root={data}", *TINY, "aug.temporal=none"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a demo run with different settings" in err
    assert "aug.temporal: stored shift, requested none" in err and "--fresh" in err and "another --out" in err
    assert (out / "results.json").read_text() == results and ckpt.stat().st_mtime_ns == stamp
    # --fresh starts over in that folder with the requested settings; here the time limit cuts it after epoch 1
    assert main(["demo", "--quick", "--fresh", "--out", str(out), f"data.root={data}", *TINY,
                 "aug.temporal=none", "train.epochs=3", "train.time_limit_s=0.01"]) == 0
    said = capsys.readouterr().out
    assert "--fresh" in said and "--resume" not in said
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["aug"]["temporal"] == "none"
    again = (f"videocontrast demo --out {out} --quick data.root={data} {' '.join(TINY)} aug.temporal=none "
             "train.epochs=3 train.time_limit_s=0.01")
    assert res["pretrain"]["cut_by_time_limit"] is True and res["pretrain"]["continue_command"] == again
    for text in (res["verdict"], said, (out / "report.html").read_text()):
        assert "cut by the time limit (train.time_limit_s=0.01) at epoch 1 of 3" in text
    from videocontrast.engine.checkpoint import load_checkpoint

    assert load_checkpoint(ckpt)["config"]["aug"]["temporal"] == "none"


def test_demo_refuses_a_supervised_baseline_trained_with_another_augmentation(demo_run, tmp_path, capsys):
    from videocontrast.engine.checkpoint import load_checkpoint, save_checkpoint

    run, data = demo_run
    out = tmp_path / "demo"
    shutil.copytree(run, out)  # the shared run stays as it is
    capsys.readouterr()
    assert main(["demo", "--out", str(out), f"data.root={data}", *TINY, "eval.finetune_augment=resize"]) == 2
    err = capsys.readouterr().err
    assert "eval.finetune_augment: stored crop, requested resize" in err and "--fresh" in err
    # a demo folder from before eval.finetune_augment existed: its supervised baseline trained with pretraining's
    # augmentation, so it is not reused as if it were this one
    ckpt = out / "supervised" / "train" / "checkpoints" / "last.pt"
    state = load_checkpoint(ckpt)
    state["config"]["aug"] = load_checkpoint(out / "pretrain" / "checkpoints" / "last.pt")["config"]["aug"]
    del state["config"]["eval"]["finetune_augment"]
    save_checkpoint(ckpt, state)
    results = (out / "results.json").read_text()
    assert main(["demo", "--out", str(out), f"data.root={data}", *TINY]) == 2
    err = capsys.readouterr().err
    assert "trained with another augmentation" in err and "aug.jitter: stored true, requested false" in err
    assert "--fresh" in err and (out / "results.json").read_text() == results


def test_demo_into_a_pretrain_run_folder_is_refused(demo_run, capsys):
    run, data = demo_run
    pretrain_run = run / "pretrain"
    before = sorted(p.name for p in pretrain_run.iterdir())
    assert main(["demo", "--quick", "--out", str(pretrain_run), f"data.root={data}", *TINY]) == 2
    err = capsys.readouterr().err
    assert "holds a pretrain run" in err and "another --out" in err
    assert sorted(p.name for p in pretrain_run.iterdir()) == before


def test_eval_commands_write_results_json(demo_run, tmp_path):
    run, data = demo_run
    ckpt = run / "pretrain" / "checkpoints" / "last.pt"
    expect = {"linear": ["top1", "top5", "video_top1"], "knn": ["top1", "top5", "video_top1"],
              "retrieve": ["R@1", "R@5", "R@10", "R@20", "R@50"]}
    for cmd, keys in expect.items():
        out = tmp_path / cmd
        assert main([cmd, "--checkpoint", str(ckpt), "--out", str(out), f"data.root={data}", "--config", "demo",
                     *TINY]) == 0
        res = json.loads((out / "results.json").read_text())
        fractions(res, keys)
        assert "protocol" in res and res["protocol"]["clips_per_video"] >= 1
    assert (tmp_path / "retrieve" / "retrieval.html").exists()


def test_random_baseline_through_the_same_command(demo_run, tmp_path):
    _, data = demo_run
    assert main(["knn", "--checkpoint", "random", "--out", str(tmp_path), "--config", "demo",
                 f"data.root={data}", *TINY]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["protocol"]["encoder"].startswith("random init")


def test_embed_and_search_own_videos(demo_run, tmp_path, capsys):
    run, data = demo_run
    ckpt = run / "pretrain" / "checkpoints" / "last.pt"
    videos = data / "test"
    index = tmp_path / "videos.emb"
    assert main(["embed", "--checkpoint", str(ckpt), "--root", str(videos), "--out", str(index)]) == 0
    emb = np.load(index / "embeddings.npy", allow_pickle=False)
    paths = [str(p) for p in read_table(index)["path"]]
    assert emb.shape[0] == len(paths) == len(list(videos.rglob("*.mp4")))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    query = paths[3]
    capsys.readouterr()
    assert main(["search", str(index), query, "-k", "3", "--html", str(tmp_path / "s.html")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    # The query itself is in the index: it must come first with similarity ~1.
    first = lines[0].split()
    assert first[-1] == query and float(first[1]) > 0.999
    assert (tmp_path / "s.html").exists()


def test_embed_skips_a_corrupt_video(demo_run, tmp_path):
    run, data = demo_run
    folder = tmp_path / "mine"
    folder.mkdir()
    src = sorted((data / "test").rglob("*.mp4"))[:2]
    for p in src:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    index = tmp_path / "i.emb"
    with pytest.warns(UserWarning, match="broken.mp4"):
        main(["embed", "--checkpoint", str(run / "pretrain" / "checkpoints" / "last.pt"), "--root", str(folder),
              "--out", str(index)])
    assert len(read_table(index)["path"]) == 2 and "broken.mp4" in (index / "meta.json").read_text()


def test_ablate_grid_resumes_without_recomputing(demo_run, tmp_path):
    _, data = demo_run
    args = ["ablate", "--config", "demo", "--grid", "aug.temporal=none,shift", "--out", str(tmp_path),
            "--eval", "knn", f"data.root={data}", *TINY, "train.epochs=1"]
    assert main(args) == 0
    cells = sorted((tmp_path / "cells").glob("*/cell.json"))
    assert len(cells) == 2
    stamps = [c.stat().st_mtime_ns for c in cells]
    assert main(args) == 0
    assert [c.stat().st_mtime_ns for c in cells] == stamps  # finished cells were not recomputed
    table = (tmp_path / "results.md").read_text()
    assert "temporal" in table and "none" in table and "shift" in table
    assert (tmp_path / "results.csv").exists() and (tmp_path / "results.png").exists()


def test_data_info_json_on_a_ucf101_download(ucf101_like, capsys):
    u = ucf101_like
    assert main(["data", "info", "--dataset", "ucf101", "--root", str(u.videos), "--splits",
                 str(u.splits), "--split", "1", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["train"] == sum(u.train.values()) == 5 + 6 + 5 and info["test"] == sum(u.test.values()) == 3 + 4 + 2
    assert info["classes"] == u.classes and info["missing"] == 6 + 5 and info["unreadable"] == []


def test_missing_root_is_a_clear_error(tmp_path, capsys):
    code = main(["data", "info", "--dataset", "ucf101", "--root", str(tmp_path / "nope")])
    assert code == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err


def test_pretrain_under_torchrun_two_processes(demo_run, tmp_path):
    """The same command under torchrun (gloo on CPU): 2 ranks, global batch split, one checkpoint."""
    _, data = demo_run
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
           "-m", "videocontrast", "pretrain", "--out", str(out), "--config", "demo", f"data.root={data}", *TINY,
           "train.epochs=1", "method.name=simclr"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world 2" in proc.stdout
    assert (out / "checkpoints" / "last.pt").exists()
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if x["kind"] == "epoch"] == [1]


def test_data_preview_writes_a_png(demo_run, tmp_path):
    _, data = demo_run
    assert main(["data", "preview", "--config", "demo", "--out", str(tmp_path), f"data.root={data}", *TINY]) == 0
    import matplotlib.image as mpimg

    img = mpimg.imread(tmp_path / "preview.png")
    assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 0.01


def test_ucf101_end_to_end(ucf101_like, tmp_path):
    """Brief pretraining on a UCF101 download (MPEG-4 AVIs with sound, official split 1 files listing absent
    classes too), then probe, kNN and retrieval for it and for random init; the report and results are written."""
    u = ucf101_like
    out = tmp_path / "run"
    assert main(["demo", "--dataset", "ucf101", "--root", str(u.videos), "--splits",
                 str(u.splits), "--split", "1", "--out", str(out), "data.clip_len=4",
                 "data.stride=4", "data.decode_size=24", "data.size=16", "data.eval_clips=1", "model.width=8",
                 "model.head_hidden=32", "train.epochs=1", "optim.batch_size=8", "eval.cv_folds=2",
                 "data.num_workers=0", "data.input=rgb"]) == 0
    res = json.loads((out / "results.json").read_text())
    for name in ("pretrained", "random_init", "supervised"):
        fractions(res[name], ["linear_top1", "knn_top1", "R@1", "R@5"])
    assert "random_init_rgb" not in res  # on RGB input random init on RGB is random_init itself
    assert res["pretrained"]["protocol"]["linear"]["dataset"] == "ucf101"
    # split 1 of the 3 classes on disk: 5+6+5 training and 3+4+2 test videos (tests/conftest.py's ucf101_like)
    assert {k: res["dataset"][k] for k in ("num_classes", "train_videos", "test_videos")} == \
        {"num_classes": 3, "train_videos": 16, "test_videos": 9}
    assert "3 classes, 16 training / 9 test videos; chance level 33.3%" in res["verdict"]
    assert (out / "report.html").exists() and (out / "pretrained" / "retrieval.html").exists()


def test_demo_on_a_folder_with_one_class_folder_fails_before_training(mp4_folder, tmp_path, capsys):
    # as ../shared/data/ucf101-tiny-mp4, mp4_folder holds videos/ (one folder, 10 videos): a split cannot be
    # drawn from one class
    out = tmp_path / "run"
    code = main(["demo", "--dataset", "folder", "--root", str(mp4_folder), "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "one class folder (videos/)" in err and mp4_folder.name in err
    assert not (out / "pretrain" / "checkpoints").exists()  # nothing was trained for nothing


def test_python_api_load_encoder_and_embed_videos(demo_run):
    import torch

    import videocontrast as vc

    run, data = demo_run
    encoder = vc.load_encoder(run / "pretrain" / "checkpoints" / "last.pt")
    assert not encoder.training and encoder.clip_len == 4 and encoder.input_size == 16
    paths = sorted((data / "test").rglob("*.mp4"))[:3]
    emb = vc.embed_videos(encoder, paths, clips_per_video=2)
    assert emb.shape == (3, encoder.feature_dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # the same video embedded twice gives the same vector (evaluation sampling is deterministic)
    again = vc.embed_videos(encoder, paths[:1], clips_per_video=2)
    np.testing.assert_allclose(again[0], emb[0], atol=1e-5)
    with pytest.raises(Exception, match="nope.mp4"):
        vc.embed_videos(encoder, [data / "nope.mp4"])
    assert isinstance(encoder, torch.nn.Module)


def test_three_crop_features_have_three_rows_per_clip(demo_run, tmp_path):
    from videocontrast.config import load_config
    from videocontrast.eval.run import features, resolve_encoder

    _, data = demo_run
    cfg1 = load_config("demo", [f"data.root={data}", *TINY, "data.eval_clips=2"])
    cfg3 = load_config("demo", [f"data.root={data}", *TINY, "data.eval_clips=2", "data.eval_crops=3"])
    f1 = features(resolve_encoder("random", cfg1, "cpu", tmp_path), "test", "cpu", tmp_path / "cache")
    f3 = features(resolve_encoder("random", cfg3, "cpu", tmp_path), "test", "cpu", tmp_path / "cache")
    assert len(f3["feats"]) == 3 * len(f1["feats"])
    np.testing.assert_array_equal(np.unique(f3["video_ids"]), np.unique(f1["video_ids"]))
    # the centre crop is the middle third and equals the single-crop features
    n = len(f1["feats"])
    np.testing.assert_allclose(f3["feats"][n:2 * n], f1["feats"], rtol=1e-5, atol=1e-6)
