"""Backbones and heads: every backbone's surface, gradients, local weight loading."""

import pytest
import torch
from torch import nn

from videocontrast.models import BACKBONES, build_backbone, build_head
from videocontrast.models.heads import build_mlp

# Tiny but valid inputs; r3d_small at width 16 keeps the CPU cost low.
CASES = {
    "r3d_18": ({}, (2, 3, 4, 32, 32)),
    "r2plus1d_18": ({}, (2, 3, 4, 32, 32)),
    "mc3_18": ({}, (2, 3, 4, 32, 32)),
    "hara_r3d_18": ({}, (2, 3, 4, 32, 32)),
    "r3d_small": ({"width": 16}, (2, 3, 4, 16, 16)),
}


def test_cases_cover_registry():
    assert set(CASES) == set(BACKBONES)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_shape_finite_and_every_parameter_gets_gradient(name):
    torch.manual_seed(0)
    kw, shape = CASES[name]
    model = build_backbone(name, **kw)
    x = torch.randn(shape)
    feats = model.forward_features(x)
    assert feats.dim() == 5 and feats.shape[:2] == (shape[0], model.feature_dim)
    out = model(x)
    assert out.shape == (shape[0], model.feature_dim)
    assert torch.isfinite(out).all()
    # A random projection (not a sum: BN makes the gradient of a plain sum vanish).
    (out * torch.randn_like(out)).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert no_grad == []


def test_torchvision_backbones_are_512d():
    assert build_backbone("mc3_18").feature_dim == 512


@pytest.mark.parametrize("width,stem,size", [(8, "basic", (8, 32, 32)), (8, "small", (8, 32, 32)), (4, "small", (4, 16, 16))])
def test_r3d_small_options(width, stem, size):
    model = build_backbone("r3d_small", width=width, stem=stem, layers=[1, 2, 1, 1])
    assert model.feature_dim == 8 * width
    assert len(model.layer2) == 2
    assert model(torch.randn(2, 3, *size)).shape == (2, 8 * width)


def test_r3d_small_channels_last_3d_matches_contiguous():
    torch.manual_seed(0)
    model = build_backbone("r3d_small", width=8).eval()
    x = torch.randn(2, 3, 4, 16, 16)
    ref = model(x)
    cl = model.to(memory_format=torch.channels_last_3d)(x.to(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-5)


def test_unknown_backbone_and_options_raise():
    with pytest.raises(ValueError, match="r3d_small"):
        build_backbone("resnet50")
    with pytest.raises(ValueError, match="widht"):
        build_backbone("r3d_small", widht=8)
    with pytest.raises(ValueError, match="stem"):
        build_backbone("r3d_small", stem="huge")


def _assert_same_state(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("prefix", ["", "module.", "backbone.", "module.backbone."])
def test_weights_round_trip_with_prefixes(tmp_path, prefix):
    torch.manual_seed(0)
    src = build_backbone("r3d_small", width=4)
    src(torch.randn(2, 3, 4, 16, 16))  # move BN running stats away from their init
    state = {prefix + k: v for k, v in src.state_dict().items()}
    state["fc.weight"] = torch.randn(10, 32)  # a classifier: dropped silently
    if prefix.endswith("backbone."):
        state[prefix.replace("backbone.", "head.") + "0.weight"] = torch.randn(3, 3)  # rest of a method: ignored
    path = tmp_path / "w.pt"
    torch.save(state, path)
    torch.manual_seed(1)
    dst = build_backbone("r3d_small", width=4, weights=str(path))
    _assert_same_state(src, dst)


def test_weights_nested_checkpoint_dict(tmp_path):
    src = build_backbone("r3d_small", width=4)
    torch.save({"epoch": 3, "model": {"backbone." + k: v for k, v in src.state_dict().items()}}, tmp_path / "c.pt")
    _assert_same_state(src, build_backbone("r3d_small", width=4, weights=str(tmp_path / "c.pt")))


def test_weights_from_training_checkpoint_with_numpy_state(tmp_path):
    import numpy as np

    src = build_backbone("r3d_small", width=4)
    state = {"model": {"backbone." + k: v for k, v in src.state_dict().items()},
             "rng": {"numpy": np.random.get_state()}, "config": {"model": {"backbone": "r3d_small"}}}
    torch.save(state, tmp_path / "ckpt.pt")
    _assert_same_state(src, build_backbone("r3d_small", width=4, weights=str(tmp_path / "ckpt.pt")))


def test_corrupt_weights_file_raises(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="weights.*bad.pt"):
        build_backbone("r3d_small", width=4, weights=str(tmp_path / "bad.pt"))


def test_torchvision_state_dict_loads(tmp_path):
    # The layout of torchvision's Kinetics-400 file: a full VideoResNet state dict, fc included.
    from torchvision.models.video import r3d_18

    tv = r3d_18(weights=None)
    torch.save(tv.state_dict(), tmp_path / "r3d_18.pt")
    model = build_backbone("r3d_18", weights=str(tmp_path / "r3d_18.pt"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, tv.state_dict()[k]), k
    tv.eval(), model.eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv.avgpool(tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.stem(x)))))).flatten(1))


def test_missing_and_mismatched_keys_are_listed(tmp_path):
    state = build_backbone("r3d_small", width=4).state_dict()
    del state["layer4.0.conv2.1.weight"]
    del state["stem.0.weight"]
    torch.save(state, tmp_path / "m.pt")
    with pytest.raises(ValueError, match=r"missing keys \(2\).*layer4\.0\.conv2\.1\.weight") as e:
        build_backbone("r3d_small", width=4, weights=str(tmp_path / "m.pt"))
    assert "stem.0.weight" in str(e.value)
    # Same names, other width: every shape mismatch is reported.
    torch.save(build_backbone("r3d_small", width=8).state_dict(), tmp_path / "w8.pt")
    with pytest.raises(ValueError, match="shape mismatches"):
        build_backbone("r3d_small", width=4, weights=str(tmp_path / "w8.pt"))


def test_unexpected_keys_warn(tmp_path):
    state = build_backbone("r3d_small", width=4).state_dict()
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "u.pt")
    with pytest.warns(UserWarning, match="extra.weight"):
        build_backbone("r3d_small", width=4, weights=str(tmp_path / "u.pt"))


def test_missing_weights_file_raises(tmp_path):
    with pytest.raises(ValueError, match="weights.*nope.pt"):
        build_backbone("r3d_small", width=4, weights=str(tmp_path / "nope.pt"))


def test_heads():
    x = torch.randn(5, 32)
    mlp = build_head("mlp", 32, hidden_dim=16, out_dim=8)
    assert [type(m) for m in mlp] == [nn.Linear, nn.ReLU, nn.Linear]
    assert mlp(x).shape == (5, 8)
    lin = build_head("linear", 32, out_dim=128)
    assert [type(m) for m in lin] == [nn.Linear] and lin(x).shape == (5, 128)
    bn = build_head("mlp", 32, 16, 8, hidden_bn=True)
    assert [type(m) for m in bn] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    three = build_mlp(3, 32, 16, 8, last_bn=True)
    assert sum(isinstance(m, nn.Linear) for m in three) == 3 and isinstance(three[-1], nn.BatchNorm1d)
    assert three(x).shape == (5, 8)
    with pytest.raises(ValueError, match="kind"):
        build_head("transformer", 32)
