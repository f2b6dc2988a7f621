"""Issue 9, section 4: models that load anywhere.

``videocontrast export`` writes the backbone alone (a plain state dict or a safetensors file) that loads with
``strict=True`` into torchvision's constructor (``fc`` replaced by ``Identity``; videocontrast's own
``build_backbone`` for ``r3d_small``) and gives the features ``load_encoder`` gives, plus a JSON describing the
input. ``load_encoder``, ``embed`` and ``search`` take what ``--checkpoint`` takes elsewhere (a checkpoint, an
exported file, external weights with ``--config``, ``random``); an index remembers the SHA-1 of the weights, so
``search --checkpoint`` can follow a moved file and refuses other weights.

Checkpoints here are written directly (no training): a tiny method with random weights and perturbed
BatchNorm statistics, so a dropped buffer would change the features.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import torchvision

import videocontrast as vc
from videocontrast.build.components import method_from_config
from videocontrast.cli import main
from videocontrast.search.embed import read_table
from videocontrast.config import load_config
from videocontrast.engine.checkpoint import save_checkpoint
from videocontrast.models import build_backbone

from conftest import write_pattern_video

TINY = ["data.clip_len=4", "data.decode_size=20", "data.size=16", "data.num_workers=0", "data.eval_clips=2",
        "model.width=8", "model.head_hidden=32"]


def make_checkpoint(path: Path, *overrides: str, seed: int = 0) -> Path:
    """A pretraining checkpoint of the ``demo`` preset shrunk by TINY, with random weights and BN statistics."""
    cfg = load_config("demo", [*TINY, *overrides])
    torch.manual_seed(seed)
    method = method_from_config(cfg)
    with torch.no_grad():
        for m in method.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    save_checkpoint(path, {"kind": "pretrain", "model": method.state_dict(), "config": cfg.to_dict(), "epoch": 1})
    return path


def one_line_error(err: str, command: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith(f"videocontrast {command}: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("videos")
    for i, n in enumerate((12, 16, 20)):
        write_pattern_video(d / f"v{i}.mp4", n)
    return d


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "last.pt")


# --- export ---------------------------------------------------------------------------------------------

def _plain_model(backbone: str, meta: dict) -> torch.nn.Module:
    if backbone in ("r3d_small", "hara_r3d_18"):  # videocontrast's own networks: its constructor, no torchvision
        assert "torchvision" not in meta["constructor"] and backbone in meta["constructor"]
        return build_backbone(backbone, **meta["backbone_kwargs"])
    model = getattr(torchvision.models.video, backbone)()
    model.fc = torch.nn.Identity()
    return model


@pytest.mark.parametrize("backbone", ["r3d_18", "r2plus1d_18", "mc3_18", "r3d_small", "hara_r3d_18"])
def test_export_loads_strictly_into_the_plain_constructor_with_the_same_features(backbone, tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "ckpt.pt", f"model.backbone={backbone}")
    encoder = vc.load_encoder(ckpt)
    x = torch.randn(2, 3, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = encoder(x)
    for fmt, name in (("torchvision", "encoder.pt"), ("safetensors", "encoder.safetensors")):
        out = tmp_path / name
        assert main(["export", str(ckpt), "--out", str(out), "--format", fmt]) == 0
        assert str(out) in capsys.readouterr().out
        meta = json.loads(out.with_name(out.name + ".json").read_text())  # the whole name: m.pt.json
        state = (torch.load(out, map_location="cpu", weights_only=True) if fmt == "torchvision"
                 else safetensors.torch.load_file(str(out)))
        model = _plain_model(backbone, meta)
        model.load_state_dict(state, strict=True)  # every key, nothing extra
        model.eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x), want, rtol=1e-4, atol=1e-5)
        assert meta["format"] == fmt and meta["backbone"] == backbone and meta["feature_dim"] == want.shape[1]
        inp = meta["input"]
        assert inp["layout"].startswith("(B, C, T, H, W)") and inp["clip_len"] == 4 and inp["size"] == 16
        assert inp["decode_size"] == 20 and inp["residual"] is True  # the demo preset trains on frame differences
        assert inp["mean"] == pytest.approx(list(encoder.mean)) and inp["std"] == pytest.approx(list(encoder.std))
        assert meta["config"]["model"]["backbone"] == backbone


def test_export_format_follows_the_file_name_and_refuses_unknown_input(ckpt, tmp_path, capsys):
    out = tmp_path / "enc.safetensors"
    assert main(["export", str(ckpt), "--out", str(out)]) == 0
    safetensors.torch.load_file(str(out))  # a real safetensors file
    assert json.loads((tmp_path / "enc.safetensors.json").read_text())["format"] == "safetensors"
    capsys.readouterr()
    assert main(["export", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "nope.pt" in one_line_error(capsys.readouterr().err, "export")


# --- load_encoder / embed / search take every --checkpoint ----------------------------------------------

@pytest.mark.parametrize("fmt", ["torchvision", "safetensors"])
def test_load_encoder_takes_an_exported_file(fmt, ckpt, tmp_path):
    out = tmp_path / ("enc.pt" if fmt == "torchvision" else "enc.safetensors")
    assert main(["export", str(ckpt), "--out", str(out), "--format", fmt]) == 0
    a, b = vc.load_encoder(ckpt), vc.load_encoder(out)
    assert (b.clip_len, b.input_size, b.decode_size) == (a.clip_len, a.input_size, a.decode_size) == (4, 16, 20)
    x = torch.randn(1, 3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x))


def test_load_encoder_takes_random_and_external_weights_with_a_config(ckpt, tmp_path):
    cfg = load_config("demo", TINY)
    r1, r2 = vc.load_encoder("random", config=cfg), vc.load_encoder("random", config=cfg)
    x = torch.randn(1, 3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(r1(x), r2(x))  # seeded: the same random network every time
    assert r1.feature_dim == 64 and r1.clip_len == 4
    weights = tmp_path / "backbone_weights.pt"  # a plain state dict, no JSON beside it
    torch.save(vc.load_encoder(ckpt).state_dict(), weights)
    ext = vc.load_encoder(weights, config=cfg)
    with torch.no_grad():
        torch.testing.assert_close(ext(x), vc.load_encoder(ckpt)(x))


def _spec(kind: str, ckpt: Path, tmp_path: Path) -> list[str]:
    """``--checkpoint ...`` arguments for each kind of encoder source."""
    if kind == "checkpoint":
        return ["--checkpoint", str(ckpt)]
    if kind in ("exported-pt", "exported-safetensors"):
        out = tmp_path / ("e.pt" if kind == "exported-pt" else "e.safetensors")
        assert main(["export", str(ckpt), "--out", str(out)]) == 0
        return ["--checkpoint", str(out)]
    if kind == "external":
        weights = tmp_path / "w.pt"
        torch.save(vc.load_encoder(ckpt).state_dict(), weights)
        return ["--checkpoint", str(weights), "--config", "demo", *TINY]
    assert kind == "random"
    return ["--checkpoint", "random", "--config", "demo", *TINY]


@pytest.mark.parametrize("kind", ["checkpoint", "exported-pt", "exported-safetensors", "external", "random"])
def test_embed_and_search_take_every_kind_of_checkpoint(kind, ckpt, videos, tmp_path, capsys):
    index = tmp_path / "i.emb"
    assert main(["embed", *_spec(kind, ckpt, tmp_path), "--root", str(videos), "--out", str(index)]) == 0
    meta = json.loads((index / "meta.json").read_text())
    paths = [str(p) for p in read_table(index)["path"]]
    assert meta["fingerprint"].startswith("random:" if kind == "random" else "sha1:")
    capsys.readouterr()
    assert main(["search", str(index), paths[1], "-k", "2"]) == 0
    first = capsys.readouterr().out.splitlines()[0].split()
    assert first[-1] == paths[1] and float(first[1]) > 0.999


def test_index_stores_the_weights_fingerprint_and_follows_a_moved_checkpoint(videos, tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "run" / "last.pt")
    index = tmp_path / "i.emb"
    assert main(["embed", "--checkpoint", str(ckpt), "--root", str(videos), "--out", str(index)]) == 0
    meta = json.loads((index / "meta.json").read_text())
    assert meta["fingerprint"] == "sha1:" + hashlib.sha1(ckpt.read_bytes()).hexdigest()
    query = str(videos / "v0.mp4")

    moved = tmp_path / "elsewhere" / "model.pt"
    moved.parent.mkdir()
    ckpt.rename(moved)
    capsys.readouterr()
    assert main(["search", str(index), query]) == 2
    line = one_line_error(capsys.readouterr().err, "search")
    assert str(ckpt) in line and "--checkpoint" in line

    assert main(["search", str(index), query, "--checkpoint", str(moved), "-k", "3"]) == 0
    hits = {line.split()[-1]: float(line.split()[1]) for line in capsys.readouterr().out.splitlines()}
    assert hits[query] > 0.999  # the same weights: the query finds itself

    other = make_checkpoint(tmp_path / "other.pt", seed=1)  # different weights: the index does not fit them
    assert main(["search", str(index), query, "--checkpoint", str(other)]) == 2
    line = one_line_error(capsys.readouterr().err, "search")
    assert str(other) in line and "fingerprint" in line

    make_checkpoint(ckpt, seed=2)  # training went on and overwrote the file at the recorded path
    assert main(["search", str(index), query]) == 2
    assert "fingerprint" in one_line_error(capsys.readouterr().err, "search")
