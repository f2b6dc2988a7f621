"""``videocontrast embed`` at scale (issue 13): inputs, the output folder, resume, bad files, per-clip spans.

References are independent of the folder-writing code: each file embedded on its own (so a row must hold the
embedding of the file its table row names, whatever else was in the run), spans worked out by hand from the frame
rate and the clip settings, and hand-written manifests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from videocontrast.api import load_encoder
from videocontrast.cli import main
from videocontrast.search.embed import embed_collection, read_inputs, read_table
from videocontrast.search.query import embed_queries

from conftest import write_pattern_video  # noqa: F401  (re-exported for other test modules)
from test_export import make_checkpoint, one_line_error

pytest.importorskip("pyarrow", reason="the table is Parquet: pip install 'videocontrast[search]'")


def video_setup(d: Path, frame_counts: tuple[int, ...], seed0: int = 0, by_class: bool = True) -> dict[str, Path]:
    """Videos v0, v1, ... with these frame counts under d/videos (in class folders a/ and b/ by parity, or flat)
    and a tiny checkpoint: the fixture of the embed tests."""
    videos = d / "videos"
    for i, n in enumerate(frame_counts):
        folder = videos / ("a" if i % 2 else "b") if by_class else videos
        write_video(folder / f"v{i}.mp4", n, seed=seed0 + i)
    return {"dir": d, "videos": videos, "ckpt": make_checkpoint(d / "last.pt")}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    return video_setup(tmp_path_factory.mktemp("embed"), (12, 16, 20, 24, 40))


def write_video(path: Path, num_frames: int, seed: int, fps: int = 25) -> Path:
    """A 64x48 H.264 video of a random colour texture of its own (``seed``) drifting sideways: unlike the
    pattern videos (the same frames in every file) each file looks different, so embeddings differ."""
    import av

    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (12, 40, 3)).repeat(4, 0).repeat(4, 1).astype(np.uint8)  # (48, 160, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for k in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[:, 2 * k % 96:2 * k % 96 + 64]),
                                               format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def alone(ckpt: Path, paths: list[str], clips: int = 2) -> np.ndarray:
    """Each file embedded by itself: the reference a row must match."""
    encoder = load_encoder(ckpt)
    return np.stack([embed_queries(encoder, [p], clips)[0] for p in paths])


def _embed(setup, out: Path, root=None, **kw) -> Path:
    return embed_collection(setup["ckpt"], root or setup["videos"], out, clips=2, progress=False, **kw)


def test_folder_output_is_standard_files_aligned_with_the_table(setup, tmp_path):
    videos = setup["videos"]
    (videos / "b" / "broken.mp4").write_bytes(b"not a video")  # in the middle of the sorted order
    try:
        with pytest.warns(UserWarning, match="broken.mp4"):
            out = _embed(setup, tmp_path / "out")
    finally:
        (videos / "b" / "broken.mp4").unlink()
    emb = np.load(out / "embeddings.npy", allow_pickle=False)  # no pickles anywhere
    table = read_table(out)
    meta = json.loads((out / "meta.json").read_text())
    names = [Path(p).name for p in table["path"]]
    assert sorted(names) == ["v0.mp4", "v1.mp4", "v2.mp4", "v3.mp4", "v4.mp4"] and len(emb) == 5
    assert [u["path"].endswith("broken.mp4") for u in meta["unreadable"]] == [True]
    assert list(table["label"]) == [Path(p).parent.name for p in table["path"]]
    assert set(table["fingerprint"]) == {meta["fingerprint"]}
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(emb, alone(setup["ckpt"], list(table["path"])), atol=1e-5)
    for p, dur in zip(table["path"], table["duration"]):  # 25 fps pattern videos
        assert dur == pytest.approx({"v0": 12, "v1": 16, "v2": 20, "v3": 24, "v4": 40}[Path(p).stem] / 25)
    assert (out / "index.faiss").is_file() and json.loads((out / "index.json").read_text())["kind"] == "flat"


def test_float16_output(setup, tmp_path):
    out = _embed(setup, tmp_path / "h", dtype="float16")
    emb = np.load(out / "embeddings.npy", allow_pickle=False)
    assert emb.dtype == np.float16
    ref = np.load(_embed(setup, tmp_path / "f") / "embeddings.npy")
    np.testing.assert_allclose(emb.astype(np.float32), ref, atol=2e-3)


def test_csv_manifest_with_labels_and_spans_per_clip(setup, tmp_path):
    v4 = setup["videos"] / "b" / "v4.mp4"  # 40 frames at 25 fps
    manifest = tmp_path / "list.csv"
    manifest.write_text(f"path,label,start,end\n{v4},dive,0.4,1.2\n{setup['videos'] / 'a' / 'v1.mp4'},knit,,\n")
    out = _embed(setup, tmp_path / "clips", root=manifest, per_clip=True)
    t = read_table(out)
    assert list(t["label"]) == ["dive", "dive", "knit", "knit"] and list(t["clip"]) == [0, 1, 0, 1]
    # span 0.4-1.2 s = frames 10..29; clip_len 4, 2 clips evenly spaced: frames 10-13 and 26-29
    np.testing.assert_allclose(t["clip_start"][:2], [10 / 25, 26 / 25])
    np.testing.assert_allclose(t["clip_end"][:2], [14 / 25, 30 / 25])
    assert t["start"][0] == 0.4 and t["end"][0] == 1.2 and np.isnan(t["start"][2])
    # v1: 16 frames, whole video: clips at 0-3 and 12-15
    np.testing.assert_allclose(t["clip_start"][2:], [0, 12 / 25])
    np.testing.assert_allclose(t["clip_end"][2:], [4 / 25, 16 / 25])
    assert np.load(out / "embeddings.npy").shape[0] == 4


@pytest.mark.parametrize("text, field", [("path,label,start,end\nx.mp4,a,zero,1\n", "start 'zero'"),
                                         ("x.mp4,a,2,1\n", "end 1.0 is not after start 2.0"),
                                         ("path,colour\nx.mp4,red\n", "unknown column(s) colour"),
                                         ("x.mp4,a,1,2,3\n", "5 fields")])
def test_bad_manifest_lines_are_one_line_errors(text, field, setup, tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    assert main(["embed", "--checkpoint", str(setup["ckpt"]), "--root", str(manifest), "--out",
                 str(tmp_path / "o")]) == 2
    line = one_line_error(capsys.readouterr().err, "embed")
    assert str(manifest) in line and field in line


def test_list_file_relative_paths_and_labels(setup, tmp_path):
    lst = setup["videos"] / "list.txt"
    lst.write_text("# a comment\na/v1.mp4 knitting\n\nb/v2.mp4\n")
    try:
        items, roots = read_inputs(lst)
    finally:
        lst.unlink()
    assert [(Path(i.path).relative_to(setup["videos"]).as_posix(), i.label) for i in items] == [
        ("a/v1.mp4", "knitting"), ("b/v2.mp4", "")]
    # each row's own folder: their common parent could hold files that no row is (see usable_roots)
    assert roots == [str((setup["videos"] / d).resolve()) for d in ("a", "b")]


def test_a_killed_run_resumes_and_changed_files_are_embedded_again(setup, tmp_path, monkeypatch):
    import videocontrast.search.embed as embed_mod

    videos = tmp_path / "videos"
    for p in sorted(setup["videos"].rglob("*.mp4")):
        (videos / p.parent.name).mkdir(parents=True, exist_ok=True)
        (videos / p.parent.name / p.name).write_bytes(p.read_bytes())
    seen: list[str] = []
    real = embed_mod._Clips.__getitem__

    def counting(self, i):
        if len(seen) == 3:
            raise KeyboardInterrupt  # killed after 3 files
        seen.append(self.items[i].path)
        return real(self, i)

    monkeypatch.setattr(embed_mod._Clips, "__getitem__", counting)
    with pytest.raises(KeyboardInterrupt):
        embed_collection(setup["ckpt"], videos, tmp_path / "out", clips=2, flush_every=1, batch_size=2,
                         progress=False)
    assert len(seen) == 3 and not (tmp_path / "out" / "embeddings.npy").exists()
    first = list(seen)
    seen.clear()
    monkeypatch.setattr(embed_mod._Clips, "__getitem__", lambda self, i: (seen.append(self.items[i].path),
                                                                         real(self, i))[1])
    out = embed_collection(setup["ckpt"], videos, tmp_path / "out", clips=2, progress=False)
    assert sorted(seen) == sorted(set(map(str, videos.rglob("*.mp4"))) - set(first))  # only the rest
    full = embed_collection(setup["ckpt"], videos, tmp_path / "fresh", clips=2, progress=False)
    np.testing.assert_allclose(np.load(out / "embeddings.npy"), np.load(full / "embeddings.npy"), atol=1e-6)
    assert list(read_table(out)["path"]) == list(read_table(full)["path"])

    # a file replaced by another video (new size and mtime) is embedded again; the others are not
    changed = videos / "a" / "v1.mp4"
    changed.write_bytes((videos / "b" / "v4.mp4").read_bytes())
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    seen.clear()
    out = embed_collection(setup["ckpt"], videos, tmp_path / "out", clips=2, progress=False)
    assert seen == [str(changed)]
    t = read_table(out)
    emb = np.load(out / "embeddings.npy")
    row = list(t["path"]).index(str(changed))
    np.testing.assert_allclose(emb[row], alone(setup["ckpt"], [str(changed)])[0], atol=1e-5)


def test_embed_cli_prints_rows_and_search_reads_the_folder(setup, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["embed", "--checkpoint", str(setup["ckpt"]), "--root", str(setup["videos"]), "--out", str(out),
                 "--clips", "2"]) == 0
    assert f"wrote {out}: 5 rows (videos)" in capsys.readouterr().out
    emb = np.load(out / "embeddings.npy")
    paths = list(read_table(out)["path"])
    assert main(["search", str(out), "row:2", "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    want = np.argsort(-(emb @ emb[2]), kind="stable")[:3]  # NumPy brute force
    assert [line.split()[-1] for line in lines] == [paths[i] for i in want]
    assert len(set(np.round(emb @ emb.T, 4).ravel())) > 5  # the videos are told apart (a real check above)
