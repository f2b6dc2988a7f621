"""The thesis's backbone: Hara et al.'s 3D ResNet-18 (3D-ResNets-PyTorch, models/resnet.py), key format and
feature-map sizes, and loading Hara-format checkpoints through the one weights path."""

import pytest
import torch

from videocontrast.models import BACKBONES, build_backbone

# Key names of kenshohara/3D-ResNets-PyTorch models/resnet.py (ResNet with BasicBlock, shortcut type B):
# conv1/bn1 stem, layerN.i.conv1/bn1/conv2/bn2, layerN.0.downsample.0 (1x1x1 conv) / .1 (BN), fc head.
HARA_KEYS_SAMPLE = ["conv1.weight", "bn1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer1.0.bn1.bias",
                    "layer1.1.conv2.weight", "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_var",
                    "layer4.1.bn2.num_batches_tracked"]


def test_registered_and_hara_key_format():
    assert "hara_r3d_18" in BACKBONES and "r3d_18" in BACKBONES
    model = build_backbone("hara_r3d_18")
    keys = model.state_dict().keys()
    for k in HARA_KEYS_SAMPLE:
        assert k in keys
    assert "layer1.0.downsample.0.weight" not in keys  # 64 -> 64, stride 1: identity shortcut
    assert not any(k.startswith(("fc.", "stem.")) for k in keys)
    assert tuple(model.conv1.weight.shape) == (64, 3, 7, 7, 7)
    assert model.conv1.stride == (1, 2, 2) and model.conv1.padding == (3, 3, 3)
    assert model.feature_dim == 512
    # conv1 7x7x7 + BN, then per BasicBlock two 3x3x3 convs + 2 BNs, a 1x1x1 conv + BN where the shape changes.
    def block(cin, cout):
        return 27 * cin * cout + 27 * cout * cout + 4 * cout + (cin * cout + 2 * cout if cin != cout else 0)
    expected = 64 * 3 * 7 ** 3 + 2 * 64 + sum(block(a, b) + block(b, b) for a, b in
                                              [(64, 64), (64, 128), (128, 256), (256, 512)])
    assert sum(p.numel() for p in model.parameters()) == expected


# Output size of a conv/pool: floor((n + 2p - k) / s) + 1.
# 112x112, T=16:  conv1 k7 s(1,2,2) p3: T (16+6-7)/1+1 = 16, H floor((112+6-7)/2)+1 = 56
#                 maxpool k3 s2 p1:     T floor((16+2-3)/2)+1 = 8,  H floor((56+2-3)/2)+1 = 28
#                 layer1 (stride 1):    8x28x28
#                 layer2 k3 s2 p1:      T floor((8+2-3)/2)+1 = 4,   H floor((28+2-3)/2)+1 = 14
#                 layer3:               T floor((4-1)/2)+1 = 2,     H floor((14-1)/2)+1 = 7
#                 layer4:               T floor((2-1)/2)+1 = 1,     H floor((7-1)/2)+1 = 4     -> 1x4x4
# 56x56, T=16:    conv1 16x28x28, maxpool 8x14x14, layer2 4x7x7, layer3 2x4x4 (floor(6/2)+1), layer4 1x2x2
# (Hara's avgpool kernel is ceil(16/16) x ceil(size/32)^2: 1x4x4 at 112 and 1x2x2 at 56, the same sizes.)
@pytest.mark.parametrize("size,expected", [
    (56, [(16, 28, 28), (8, 14, 14), (8, 14, 14), (4, 7, 7), (2, 4, 4), (1, 2, 2)]),
    (112, [(16, 56, 56), (8, 28, 28), (8, 28, 28), (4, 14, 14), (2, 7, 7), (1, 4, 4)]),
])
def test_feature_map_sizes(size, expected):
    model = build_backbone("hara_r3d_18").eval()
    x = torch.randn(1, 3, 16, size, size)
    got = []
    with torch.no_grad():
        x = model.relu(model.bn1(model.conv1(x)))
        got.append(tuple(x.shape[2:]))
        x = model.maxpool(x)
        got.append(tuple(x.shape[2:]))
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            x = layer(x)
            got.append(tuple(x.shape[2:]))
        feats = model.forward_features(torch.randn(1, 3, 16, size, size))
    assert got == expected
    assert tuple(feats.shape) == (1, 512) + expected[-1]


def test_every_parameter_gets_gradient():
    torch.manual_seed(0)
    model = build_backbone("hara_r3d_18")
    out = model(torch.randn(2, 3, 4, 32, 32))
    assert out.shape == (2, 512) and torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()] == []


def _hara_checkpoint(model):
    """What Hara's training script saves: {'epoch', 'arch', 'state_dict' (DataParallel: 'module.' prefixes,
    with the 400-way fc head), 'optimizer'}; built here by hand from the key format."""
    state = {f"module.{k}": v.clone() for k, v in model.state_dict().items()}
    state["module.fc.weight"] = torch.randn(400, 512)
    state["module.fc.bias"] = torch.randn(400)
    return {"epoch": 200, "arch": "resnet-18", "state_dict": state}


def _randomise_bn(model):
    g = torch.Generator().manual_seed(1)
    for name, buf in model.named_buffers():
        if name.endswith(("running_mean", "running_var")):
            buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)


def test_hara_checkpoint_loads_strictly_and_gives_identical_outputs(tmp_path, recwarn):
    torch.manual_seed(3)
    src = build_backbone("hara_r3d_18")
    _randomise_bn(src)
    torch.save(_hara_checkpoint(src), tmp_path / "resnet-18-kinetics.pth")
    dst = build_backbone("hara_r3d_18", weights=str(tmp_path / "resnet-18-kinetics.pth"))
    assert not [w for w in recwarn if "unexpected" in str(w.message)]  # fc.* dropped, nothing else left over
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    x = torch.randn(2, 3, 16, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(dst.eval()(x), src.eval()(x), rtol=0, atol=0)


def test_hara_checkpoint_through_config(tmp_path):
    from videocontrast.build.components import backbone_from_config
    from videocontrast.config import load_config

    src = build_backbone("hara_r3d_18")
    torch.save(_hara_checkpoint(src), tmp_path / "h.pth")
    cfg = load_config("ucf101-simclr", ["data.root=/d", "model.backbone=hara_r3d_18",
                                        f"model.weights={tmp_path / 'h.pth'}"])
    assert cfg.model.backbone == "hara_r3d_18"
    got = backbone_from_config(cfg)
    assert torch.equal(got.conv1.weight, src.conv1.weight)


def test_shape_mismatch_names_the_first_mismatched_key(tmp_path):
    ckpt = _hara_checkpoint(build_backbone("hara_r3d_18"))
    # e.g. a checkpoint of Hara's 3x7x7-free variant (conv1_t_size=3) and a wrong layer3 width
    ckpt["state_dict"]["module.conv1.weight"] = torch.zeros(64, 3, 3, 7, 7)
    ckpt["state_dict"]["module.layer3.0.conv1.weight"] = torch.zeros(128, 128, 3, 3, 3)
    torch.save(ckpt, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as e:
        build_backbone("hara_r3d_18", weights=str(tmp_path / "bad.pth"))
    first = str(e.value).splitlines()[0]
    assert "conv1.weight: file (64, 3, 3, 7, 7) vs model (64, 3, 7, 7, 7)" in first
    assert "first" in first and "layer3" not in first
    assert "layer3.0.conv1.weight" in str(e.value)  # the others still listed below


def test_torchvision_r3d_18_weights_do_not_fit_hara(tmp_path):
    torch.save(build_backbone("r3d_18").state_dict(), tmp_path / "tv.pt")
    with pytest.raises(ValueError, match="does not fit"):
        build_backbone("hara_r3d_18", weights=str(tmp_path / "tv.pt"))


def test_hara_checkpoint_as_dash_dash_checkpoint(tmp_path):
    """``--checkpoint PATH`` (build.encoder.load_weights): external weights, the architecture from the config."""
    from videocontrast.config import load_config
    from videocontrast.build.encoder import load_weights

    src = build_backbone("hara_r3d_18")
    _randomise_bn(src)
    torch.save(_hara_checkpoint(src), tmp_path / "h.pth")
    cfg = load_config("ucf101-simclr", ["data.root=/d", "model.backbone=hara_r3d_18"])
    enc = load_weights(str(tmp_path / "h.pth"), cfg)
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc.module.eval()(x), src.eval()(x), rtol=0, atol=0)
    bad = _hara_checkpoint(src)
    bad["state_dict"]["module.layer2.0.bn1.weight"] = torch.ones(7)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as e:
        load_weights(str(tmp_path / "bad.pth"), cfg)
    assert "first mismatched key layer2.0.bn1.weight: file (7,) vs model (128,)" in str(e.value)


def test_thesis_code_simclr_checkpoint_loads(tmp_path):
    """simionAndrei/MScThesis train_videos_3d.py saves {'model': (DataParallel) state dict of its resnet3d.py
    ResNet (Hara's names) with a projection head fc1 (512->512) / fc2 (512->256), 'optimizer', 'scheduler'}:
    the backbone loads, the projection head is reported as unexpected keys (a warning, not an error)."""
    src = build_backbone("hara_r3d_18")
    state = {f"module.{k}": v for k, v in src.state_dict().items()}
    state.update({"module.fc1.weight": torch.zeros(512, 512), "module.fc1.bias": torch.zeros(512),
                  "module.fc2.weight": torch.zeros(256, 512), "module.fc2.bias": torch.zeros(256)})
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 3e-4}]},
                "scheduler": {"last_epoch": 90}}, tmp_path / "simclr.pth")
    with pytest.warns(UserWarning, match="fc1.bias, fc1.weight, fc2.bias, fc2.weight"):
        got = build_backbone("hara_r3d_18", weights=str(tmp_path / "simclr.pth"))
    assert torch.equal(got.layer4[1].conv2.weight, src.layer4[1].conv2.weight)


def test_reproduce_reads_a_kinetics_file_once_as_hara_or_as_our_checkpoint(tmp_path, monkeypatch):
    """reproduce's Kinetics rows: Hara et al.'s file is hara_r3d_18 with the table's clip settings; one of our
    checkpoints keeps its own architecture but gets the table's clip settings. Either way the file is read once."""
    from test_export import make_checkpoint

    import videocontrast.build.encoder as encoder_mod
    from videocontrast.config import load_config
    from videocontrast.reproduce.run import Reproduction
    from videocontrast.reproduce.thesis import Enc, Job

    src = build_backbone("hara_r3d_18")
    torch.save(_hara_checkpoint(src), tmp_path / "k.pth")
    reads = []
    real = encoder_mod.read_weights
    monkeypatch.setattr(encoder_mod, "read_weights", lambda *a, **k: reads.append(a) or real(*a, **k))
    cfg = load_config("ucf101-simclr", ["data.root=/d", "data.clip_len=8", "data.size=48"])
    job = Job(Enc("kinetics", "Kinetics"), "linear", "ucf101")
    loaded = Reproduction(tmp_path / "out", {}, str(tmp_path / "k.pth")).encoder(job, cfg, torch.device("cpu"))
    assert loaded.kind == "external" and loaded.cfg.model.backbone == "hara_r3d_18" and len(reads) == 1
    assert torch.equal(loaded.module.conv1.weight, src.conv1.weight)
    assert (loaded.cfg.data.clip_len, loaded.cfg.data.size) == (8, 48)

    ours = make_checkpoint(tmp_path / "last.pt")
    reads.clear()
    loaded = Reproduction(tmp_path / "out", {}, str(ours)).encoder(job, cfg, torch.device("cpu"))
    assert loaded.kind == "checkpoint" and loaded.cfg.model.backbone != "hara_r3d_18" and len(reads) == 1
    assert (loaded.cfg.data.clip_len, loaded.cfg.data.size) == (8, 48)
