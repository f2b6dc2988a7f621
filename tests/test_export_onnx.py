"""Issue 23: ``videocontrast export --format onnx``.

The backbone alone as an ONNX model (input ``clips`` ``(B, C, T, H, W)``, output ``features``, the batch axis
dynamic) that onnxruntime runs to the features ``videocontrast.load_encoder`` gives -- on random clips and on clips
decoded the way ``embed_videos`` decodes them from H.264 files, MPEG-4 AVIs with sound and real UCF101 clips --, with the JSON beside it as for the other
formats (its SHA-1 the ``.onnx`` file's, its ``load`` snippet onnxruntime's). videocontrast refuses the ``.onnx``
file as ``--checkpoint``; without the onnx packages the export is one line naming the extra.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import videocontrast as vc
from videocontrast.build.components import build_eval_transform
from videocontrast.cli import main
from videocontrast.data.datasets import VideoDataset
from videocontrast.data.splits import VideoRecord
from videocontrast.transforms.temporal import UniformClips

from conftest import write_pattern_video
from test_export import make_checkpoint, one_line_error

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'videocontrast[onnx]'")
pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript: "
                                         "pip install 'videocontrast[onnx]'")

ATOL = 1e-4
FOUND: dict[str, float] = {}  # max |onnxruntime - load_encoder|, printed with -s


def session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def features(sess, x: torch.Tensor) -> np.ndarray:
    return sess.run(None, {"clips": x.numpy()})[0]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "last.pt")  # the demo preset: residual input


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "encoder.onnx"
    assert main(["export", str(ckpt), "--out", str(out), "--format", "onnx"]) == 0
    return out


def test_the_json_beside_it_names_the_onnx_file_and_says_how_to_run_it(ckpt, exported, tmp_path):
    side = exported.with_name(exported.name + ".json")
    meta = json.loads(side.read_text())
    assert meta["sha1"] == hashlib.sha1(exported.read_bytes()).hexdigest()
    assert meta["format"] == "onnx" and meta["weights"] == "encoder.onnx"
    assert "onnxruntime.InferenceSession('encoder.onnx')" in meta["load"]
    assert "sess.run(None, {'clips': x})[0]" in meta["load"]
    assert "torch" not in meta["load"]
    assert meta["onnx"]["input"] == "clips" and meta["onnx"]["output"] == "features"
    assert meta["onnx"]["dynamic_axes"] == {"batch": 0}
    sess = session(exported)
    (inp,), (outp,) = sess.get_inputs(), sess.get_outputs()
    assert inp.name == "clips" and outp.name == "features"
    assert isinstance(inp.shape[0], str) and isinstance(outp.shape[0], str)  # symbolic: any batch
    # The input description is the other formats': the backbone alone, frame differences the caller's.
    pt = tmp_path / "encoder.pt"
    assert main(["export", str(ckpt), "--out", str(pt)]) == 0
    other = json.loads(pt.with_name(pt.name + ".json").read_text())
    assert meta["input"] == other["input"] and meta["output"] == other["output"]
    assert meta["input"]["residual"] is True and meta["input"]["frames"] == meta["input"]["clip_len"] - 1
    assert inp.shape[1:] == [3, meta["input"]["frames"], meta["input"]["size"], meta["input"]["size"]]
    assert meta["feature_dim"] == outp.shape[1] == other["feature_dim"]


def test_onnxruntime_gives_load_encoders_features_on_random_clips_of_any_batch(ckpt, exported):
    encoder, sess = vc.load_encoder(ckpt), session(exported)
    t, size = encoder.clip_len - 1, encoder.input_size  # residual input: clip_len - 1 differences
    gen = torch.Generator().manual_seed(0)
    for batch in (1, 3):
        x = torch.randn(batch, 3, t, size, size, generator=gen)
        with torch.no_grad():
            want = encoder(x).numpy()
        got = features(sess, x)
        assert got.shape == want.shape == (batch, encoder.feature_dim)
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
        FOUND[f"random batch {batch}"] = float(np.abs(got - want).max())


def decoded_clips(encoder, paths: list[Path], clips_per_video: int = 2) -> torch.Tensor:
    """The model input ``embed_videos`` builds: evenly spaced clips, decoded, cropped, normalised, differenced."""
    ds = VideoDataset([VideoRecord(str(p), -1) for p in paths], [],
                      UniformClips(encoder.clip_len, clips_per_video, encoder.stride),
                      decode_size=encoder.decode_size, strict=True)
    transform = build_eval_transform(encoder.config)
    xs = []
    for batch in DataLoader(ds, batch_size=2, num_workers=0):
        video = batch["video"]  # (B, V, T, C, H, W) uint8
        with torch.no_grad():
            xs.append(transform(video.reshape(-1, *video.shape[2:])))
    return torch.cat(xs)


def _clip_paths(source: str, tmp_path: Path, request) -> list[Path]:
    """Three videos: generated H.264 ones, the generated UCF101-like MPEG-4 AVIs with sound (every clone), or
    three real UCF101 clips of ../shared/data/ucf101-mini (skipped where that is absent)."""
    if source == "h264":
        return [write_pattern_video(tmp_path / f"v{i}.mp4", n) for i, n in enumerate((12, 20, 30))]
    if source == "mpeg4-avi":
        like = request.getfixturevalue("ucf101_like")
        return sorted(like.videos.rglob("*.avi"))[:3]
    videos = request.getfixturevalue("shared_data") / "ucf101-mini" / "videos"
    return [sorted((videos / c).glob("*.avi"))[0] for c in ("BalanceBeam", "BaseballPitch", "Basketball")]


@pytest.mark.parametrize("source", ["h264", "mpeg4-avi", "ucf101-mini"])
def test_onnxruntime_gives_load_encoders_features_on_decoded_clips(source, ckpt, exported, tmp_path, request):
    paths = _clip_paths(source, tmp_path, request)
    assert len(paths) == 3
    encoder, sess = vc.load_encoder(ckpt), session(exported)
    x = decoded_clips(encoder, paths)
    assert x.shape == (6, 3, encoder.clip_len - 1, encoder.input_size, encoder.input_size)
    assert x.dtype == torch.float32 and x.abs().max() > 0.1
    with torch.no_grad():
        want = encoder(x).numpy()
    got = features(sess, x)  # the 6 clips in one batch
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    FOUND[source] = float(np.abs(got - want).max())
    # the clips are embed_videos' own: its per-clip (L2-normalised) vectors are onnxruntime's, normalised
    per_clip = vc.embed_videos(encoder, paths, clips_per_video=2, per_clip=True).reshape(len(x), -1)
    np.testing.assert_allclose(got / np.linalg.norm(got, axis=1, keepdims=True), per_clip, rtol=0, atol=ATOL)
    print(f"\nmax |onnxruntime - load_encoder|: {FOUND}")


@pytest.mark.parametrize("mode", ["rgb", "both"])
def test_other_inputs_export_with_their_channels_and_frames(mode, tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt.pt", f"data.input={mode}", "model.backbone=r3d_small")
    out = tmp_path / "enc.onnx"
    assert main(["export", str(ckpt), "--out", str(out)]) == 0  # the .onnx name picks the format
    meta = json.loads((tmp_path / "enc.onnx.json").read_text())
    assert meta["format"] == "onnx" and meta["input"]["input"] == mode
    encoder, sess = vc.load_encoder(ckpt), session(out)
    c, t = (6, 3) if mode == "both" else (3, 4)
    assert sess.get_inputs()[0].shape[1:] == [c, t, 16, 16] and meta["input"]["frames"] == t
    x = torch.randn(2, c, t, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        np.testing.assert_allclose(features(sess, x), encoder(x).numpy(), rtol=0, atol=ATOL)


def test_an_onnx_export_is_refused_as_checkpoint(ckpt, exported, tmp_path, capsys):
    with pytest.raises(ValueError, match="ONNX export, which is for onnxruntime"):
        vc.load_encoder(exported)
    capsys.readouterr()
    assert main(["export", str(exported), "--out", str(tmp_path / "again.pt")]) == 2
    line = one_line_error(capsys.readouterr().err, "export")
    assert "onnxruntime" in line and ".pt/.safetensors export" in line and "encoder.onnx" in line
    assert not (tmp_path / "again.pt").exists()
    # an ONNX file under another name is known by its JSON
    odd = tmp_path / "odd.pt"
    assert main(["export", str(ckpt), "--out", str(odd), "--format", "onnx"]) == 0
    with pytest.raises(ValueError, match="ONNX export, which is for onnxruntime"):
        vc.load_encoder(odd)


def test_an_onnx_name_with_another_format_is_refused(ckpt, tmp_path, capsys):
    assert main(["export", str(ckpt), "--out", str(tmp_path / "e.onnx"), "--format", "torchvision"]) == 2
    assert "--format onnx" in one_line_error(capsys.readouterr().err, "export")
    assert not list(tmp_path.iterdir())


def test_without_the_onnx_packages_the_export_is_one_line_naming_the_extra(ckpt, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    assert main(["export", str(ckpt), "--out", str(tmp_path / "e.onnx")]) == 2
    line = one_line_error(capsys.readouterr().err, "export")
    assert "pip install 'videocontrast[onnx]'" in line and "onnx" in line
    assert not list(tmp_path.iterdir())
