"""One reader of weights files and one encoder resolver (models.weights, build.encoder), one device resolver.

A backbone's weights load the same whichever way they are given (``model.weights=PATH``, ``--checkpoint PATH``
of external weights) and in either format (``.pt``, ``.safetensors``), with the same key rules: the wrapper
prefixes ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) stripped, a method's ``backbone.*`` selected, a
classifier's ``fc.*`` dropped. The reference is the source network itself: the loaded copy must equal it.
"""

from __future__ import annotations

import pytest
import safetensors.torch
import torch

from videocontrast.api import check_device
from videocontrast.build.encoder import load_weights
from videocontrast.config import load_config
from videocontrast.engine.device import default_device, resolve_device
from videocontrast.models import build_backbone
from videocontrast.models.weights import backbone_state

ARCH = ["model.backbone=r3d_small", "model.width=4", "data.root=/d"]


def _source() -> torch.nn.Module:
    torch.manual_seed(0)
    src = build_backbone("r3d_small", width=4)
    src(torch.randn(2, 3, 4, 16, 16))  # BatchNorm running stats away from their init: a dropped buffer shows
    return src.eval()


def _save(state: dict[str, torch.Tensor], path) -> None:
    if path.suffix == ".safetensors":
        safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)


PREFIXES = ["", "module.", "_orig_mod.", "backbone.", "module.backbone.", "_orig_mod.module."]


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("prefix", PREFIXES)
def test_both_formats_load_every_prefix_the_same_way(tmp_path, suffix, prefix):
    src = _source()
    state = {prefix + k: v for k, v in src.state_dict().items()}
    state[prefix.replace("backbone.", "") + "fc.weight"] = torch.randn(10, 32)  # a classifier: dropped
    path = tmp_path / f"w{suffix}"
    _save(state, path)
    x = torch.randn(1, 3, 4, 16, 16)
    via_config = build_backbone("r3d_small", width=4, weights=str(path)).eval()
    enc = load_weights(path, load_config("demo", ARCH))
    assert enc.kind == "external" and enc.cfg.model.weights == str(path)
    with torch.no_grad():
        want = src(x)
        torch.testing.assert_close(via_config(x), want, rtol=0, atol=0)
        torch.testing.assert_close(enc.module.eval()(x), want, rtol=0, atol=0)


def test_backbone_state_by_hand():
    t = torch.zeros(1)
    got = backbone_state({"_orig_mod.module.backbone.a": t, "module.backbone.b": t, "module.head.c": t,
                          "backbone.fc.w": t})
    assert sorted(got) == ["a", "b"]
    assert sorted(backbone_state({"module.stem.0.weight": t, "fc.bias": t})) == ["stem.0.weight"]


def test_a_misfit_is_one_line_that_names_the_architecture(tmp_path):
    torch.save(build_backbone("r3d_small", width=8).state_dict(), tmp_path / "w8.safetensors.pt")
    with pytest.raises(ValueError) as e:
        load_weights(tmp_path / "w8.safetensors.pt", load_config("demo", ARCH))
    assert "\n" not in str(e.value)
    assert "model.backbone=r3d_small" in str(e.value) and "--config" in str(e.value)


def test_each_weights_file_is_read_once(tmp_path, monkeypatch):
    """A Kinetics-size file costs one read however ``--checkpoint`` is resolved (it was read twice: once to see
    whether it is a checkpoint, once as weights)."""
    import videocontrast.serialization as ser

    reads: list[str] = []
    real = torch.load
    monkeypatch.setattr(ser.torch, "load", lambda p, *a, **k: (reads.append(str(p)), real(p, *a, **k))[1])
    torch.save(_source().state_dict(), tmp_path / "ext.pt")
    load_weights(tmp_path / "ext.pt", load_config("demo", ARCH))
    assert reads == [str(tmp_path / "ext.pt")]


@pytest.mark.parametrize("name", [None, "auto", "cpu"])
def test_one_meaning_of_auto(name):
    assert check_device(name) == resolve_device(name, field="--device")
    assert resolve_device("auto") == resolve_device(None) == default_device()
    if not torch.cuda.is_available():
        assert default_device() == torch.device("cpu")


def test_device_messages_name_the_setting_as_the_user_wrote_it():
    with pytest.raises(ValueError, match=r"^--device='cud' is not a device"):
        check_device("cud")
    with pytest.raises(ValueError, match=r"^train.device='cud' is not a device"):
        resolve_device("cud")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^--device cuda: CUDA is not available.*use --device cpu$"):
            check_device("cuda")
        with pytest.raises(ValueError, match=r"^train.device=cuda: CUDA is not available.*or auto$"):
            resolve_device("cuda")
