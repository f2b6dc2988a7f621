"""The thesis's evaluation settings (issue 10): the resized-frame evaluation input, the thesis's retrieval
protocol (test queries test, projection head, 3 neighbours) and the saved fine-tuned model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_eval import BrightnessVideos
from videocontrast.build.components import build_eval_transform
from videocontrast.build.encoder import model_from_checkpoint
from videocontrast.config import ConfigError, load_config
from videocontrast.engine.checkpoint import load_checkpoint
from videocontrast.eval.finetune import finetune
from videocontrast.eval.retrieval import retrieve_within
from videocontrast.transforms.functional import KINETICS_MEAN, KINETICS_STD

# ---------------------------------------------------------------- eval.linear_input


def _ramp_clip(h: int, w: int) -> torch.Tensor:
    """uint8 (1, 2, 3, h, w): pixel (y, x) = x in every channel and frame (a horizontal ramp, x < 256)."""
    row = torch.arange(w, dtype=torch.uint8)
    return row.view(1, 1, 1, 1, w).expand(1, 2, 3, h, w).contiguous()


def _unnormalize(y: torch.Tensor) -> torch.Tensor:
    """Model input (B, 3, T, H, W) -> pixel values 0..255 (inverse of ClipEval's normalisation)."""
    mean = torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1)
    return (y * std + mean) * 255


def test_resize_input_is_the_whole_frame_resized_by_hand():
    # 80x160 frame, network size 40: the crop keeps columns 60..99; the resize maps output column j to input
    # coordinate (j + 0.5) * 160 / 40 - 0.5 = 4j + 1.5, and a ramp stays a ramp under a symmetric filter, so
    # pixel j = 4j + 1.5 away from the borders (where the antialias filter is cut off).
    x = _ramp_clip(80, 160)
    crop = _unnormalize(build_eval_transform(load_config(None, ["data.size=40", "data.decode_size=80"]))(x))
    cfg = load_config(None, ["data.size=40", "data.decode_size=80", "eval.linear_input=resize"])
    resized = _unnormalize(build_eval_transform(cfg)(x))
    assert crop.shape == resized.shape == (1, 3, 2, 40, 40)
    j = torch.arange(40, dtype=torch.float32)
    assert torch.allclose(crop[0, 0, 0, 5], 60 + j, atol=1e-3)  # centre crop: columns 60..99
    assert torch.allclose(resized[0, 0, 0, 5, 2:-2], 4 * j[2:-2] + 1.5, atol=1e-3)
    assert torch.allclose(resized[0, :, :, :, 2:-2], resized[0, :1, :1, 5:6, 2:-2].expand(3, 2, 40, 36), atol=1e-3)
    # the whole frame is there: the first column is near 0 and the last near 159 (the crop sees neither)
    assert resized[0, 0, 0, 0, 0] < 3 and resized[0, 0, 0, 0, -1] > 156


def test_linear_input_is_checked():
    assert load_config(None).eval.linear_input == "crop"
    with pytest.raises(ConfigError, match="eval.linear_input='squash'"):
        load_config(None, ["eval.linear_input=squash"])
    with pytest.raises(ConfigError, match="data.eval_crops=3 needs eval.linear_input=crop"):
        load_config(None, ["eval.linear_input=resize", "data.eval_crops=3"])
    with pytest.raises(ConfigError, match="eval.retrieval_protocol='mine'"):
        load_config(None, ["eval.retrieval_protocol=mine"])


# ---------------------------------------------------------------- eval.retrieval_protocol=thesis


def test_thesis_retrieval_hand_worked():
    # 4 test videos, 2 identical clips each. Cosine similarities (worked by hand):
    #   v0=(1,0)   v1=(1,1)   v2=(0.1,1)   v3=(1,0.2)
    #   v0: v3 .981, v1 .707, v2 .0995     v1: v3 .832, v2 .774, v0 .707
    #   v2: v1 .774, v3 .293, v0 .0995     v3: v0 .981, v1 .832, v2 .293
    # labels 0, 1, 1, 0 -> nearest other video: v3 hit, v3 miss, v1 hit, v0 hit: R@1 = 3/4; R@2 = 1.
    vecs = np.array([[1, 0], [1, 1], [0.1, 1], [1, 0.2]], dtype=np.float32)
    test = {"feats": np.repeat(vecs, 2, axis=0), "labels": np.repeat([0, 1, 1, 0], 2),
            "video_ids": np.repeat([10, 11, 12, 13], 2), "paths": ["a", "b", "c", "d"]}
    res = retrieve_within(test, ks=[1, 2, 3, 50], class_names=["x", "y"], report_k=3)
    assert res["R@1"] == pytest.approx(0.75) and res["R@2"] == 1.0 and res["R@50"] == 1.0
    order = {q["path"]: [n["path"] for n in q["neighbours"]] for q in res["neighbours"]}
    assert order == {"a": ["d", "b", "c"], "b": ["d", "c", "a"], "c": ["b", "d", "a"], "d": ["a", "b", "c"]}
    sims = [n["sim"] for n in res["neighbours"][0]["neighbours"]]
    assert sims == pytest.approx([1 / np.sqrt(1.04), 1 / np.sqrt(2), 0.1 / np.sqrt(1.01)], abs=1e-5)
    assert res["gallery_size"] == 3 and res["num_queries"] == 4
    assert "other test videos" in res["protocol"]["task"] and res["protocol"]["neighbours_shown"] == 3


def test_thesis_retrieval_leaves_out_the_query_even_with_duplicates():
    # two identical videos: each must find the other, never itself
    test = {"feats": np.array([[1, 0], [1, 0], [0, 1]], np.float32), "labels": np.array([0, 0, 1]),
            "video_ids": np.array([0, 1, 2])}
    res = retrieve_within(test, ks=[1], report_k=1)
    assert [q["neighbours"][0]["video_id"] for q in res["neighbours"]][:2] == [1, 0]
    assert res["R@1"] == pytest.approx(2 / 3)


# ---------------------------------------------------------------- fine-tuning keeps finetuned.pt


def test_finetune_saves_a_loadable_finetuned_model(tmp_path):
    from videocontrast.build.components import backbone_from_config

    cfg = load_config(None, ["model.backbone=r3d_small", "model.width=8", "data.size=16", "data.decode_size=16",
                             "data.clip_len=4", "data.num_workers=0", "optim.batch_size=4", "train.device=cpu",
                             "aug.jitter=false", "aug.gray=false", "aug.blur=false", "eval.finetune_epochs=2",
                             "train.precision=fp32"])
    test = torch.utils.data.DataLoader(BrightnessVideos(4, 1, seed=4, size=16), batch_size=4)
    res = finetune(backbone_from_config(cfg), cfg, tmp_path / "ft", BrightnessVideos(8, 1, seed=8, size=16), test,
                   quiet=True)
    path = tmp_path / "ft" / "finetuned.pt"
    assert res["model"] == str(path) and path.is_file()
    state = load_checkpoint(path)
    assert state["kind"] == "finetune" and state["final"] and "optimizer" not in state
    backbone, loaded_cfg = model_from_checkpoint(state)
    assert loaded_cfg.model.backbone == "r3d_small" and loaded_cfg.eval.finetune_epochs == 2
    trained = {k[len("backbone."):]: v for k, v in load_checkpoint(res["checkpoint"])["model"].items()
               if k.startswith("backbone.")}
    for name, value in backbone.state_dict().items():  # the trained backbone, not a fresh one
        assert torch.equal(value, trained[name]), name
    assert state["model"]["head.weight"].shape == (2, backbone.feature_dim)


def test_feature_cache_keys_tell_the_evaluation_inputs_apart(tmp_path, monkeypatch):
    """Crop vs resized frame and backbone vs projection head give different features: never one cache entry."""
    from videocontrast.eval import run as eval_run

    keys = []
    monkeypatch.setattr(eval_run.FeatureCache, "load_or_compute", lambda self, key, fn: keys.append(key) or {})
    base = ["data.dataset=folder", f"data.root={tmp_path}"]
    for extra in ([], ["eval.linear_input=resize"]):
        cfg = load_config(None, base + extra)
        enc = eval_run.Encoder(torch.nn.Identity(), "sha1:x", "test", cfg, projection=torch.nn.Identity())
        eval_run.features(enc, "test", torch.device("cpu"), tmp_path)
        eval_run.features(enc, "test", torch.device("cpu"), tmp_path, layer="head")
    assert len({eval_run.FeatureCache.key(k) for k in keys}) == 4
    assert "layer" not in keys[0] and "input_view" not in keys[0]  # the default key is the one of earlier caches
    no_head = eval_run.Encoder(torch.nn.Identity(), "sha1:x", "random init", load_config(None, base))
    with pytest.raises(ValueError, match="has no projection head"):
        eval_run.features(no_head, "test", torch.device("cpu"), tmp_path, layer="head")
