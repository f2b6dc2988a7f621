"""data/ on real, messy folders of videos (decode, discover, datasets): mixed frame sizes, runs of bad files, bad files
in evaluation, truncated files, missing files, messages said once, symlink loops, progress on long extractions.

Every test builds tiny videos (a 4000x3000 one has 3 frames) and checks what a user sees: exit codes, messages,
counts, files.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import write_pattern_video
from videocontrast.cli import main
from videocontrast.search.embed import read_table
from videocontrast.data.datasets import VideoDataset, build_dataset
from videocontrast.data.discover import find_videos
from videocontrast.data.info import dataset_info
from videocontrast.data.splits import VideoRecord
from videocontrast.data.decode import probe_video, read_frames
from videocontrast.transforms.eval import ClipEval
from videocontrast.transforms.spatial import ClipAugment
from videocontrast.transforms.temporal import TwoViews

REPO = Path(__file__).resolve().parents[1]
# The demo preset shrunk (as in test_cli.py) for a folder dataset: seconds per command on 2 cores.
TINY = ["data.clip_len=4", "data.decode_size=24", "data.size=16", "model.width=8", "model.head_hidden=32",
        "optim.batch_size=4", "train.epochs=1", "data.num_workers=0", "eval.cv_folds=2", "data.eval_clips=2"]
SIZES = [(320, 240), (64, 64), (240, 320), (4000, 3000)]  # (width, height): landscape, square, portrait, huge


def write_video(path: Path, width: int, height: int, num_frames: int, codec: str = "libx264", seed: int = 0) -> Path:
    """A small video of ``width`` x ``height``: a bright bar that moves right over a noisy background."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 80, (max(height // 8, 1), max(width // 8, 1), 3), dtype=np.uint8)
    base = np.repeat(np.repeat(base, 8, 0), 8, 1)[:height, :width]
    frames = []
    for k in range(num_frames):
        img = base.copy()
        x = (k * width) // (num_frames + 1)
        img[:, x: x + max(width // 8, 2)] = 230
        frames.append(img)
    return _encode(path, frames, codec)


def _encode(path: Path, frames: list[np.ndarray], codec: str) -> Path:
    """Write RGB ``(H, W, 3)`` uint8 frames as a 25 fps video with ``codec``."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        for k, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, 25)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_bad(path: Path, kind: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind % 2:
        path.write_bytes(b"")
    else:
        path.write_text("not a video\n" * 10)
    return path


def _size_video(path: Path, wh: tuple[int, int], seed: int) -> Path:
    w, h = wh
    return write_video(path, w, h, 3 if w * h > 10 ** 6 else 10, seed=seed)


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    """A labeled folder (train/ and test/, classes a and b) whose videos mix 64x64, 320x240, 240x320 and a
    4000x3000 file."""
    root = tmp_path_factory.mktemp("mixed")
    land, square, tall, huge = SIZES
    layout = {"train/a": [land, square, land], "train/b": [tall, huge, land], "test/a": [land, tall],
              "test/b": [square, land]}  # 6 of 10 are 4:3 landscape
    seed = 0
    for folder, sizes in layout.items():
        for i, wh in enumerate(sizes):
            seed += 1
            _size_video(root / folder / f"{folder[-1]}{i}.mp4", wh, seed)
    return root


@pytest.fixture(autouse=True)
def _fresh_reports():
    """Each test sees its own first reports (the process-wide "said once" memory is per run)."""
    from videocontrast.data.reports import reset_reports

    reset_reports()
    yield
    reset_reports()


# ----------------------------------------------------------------------------- mixed frame sizes


def test_mixed_sizes_share_one_frame_box_and_batch(mixed_folder):
    shapes = {probe_video(p).height * 10000 + probe_video(p).width for p in mixed_folder.rglob("*.mp4")}
    assert len(shapes) == 4  # really mixed
    ds = build_dataset("folder", mixed_folder, subset="all", views_fn=TwoViews("shift", 4, 2, 1), decode_size=24)
    # Most videos here are 4:3 landscape (320x240 and 4000x3000): the box is 24x32, everything else is cropped.
    assert ds.frame_box == (24, 32)
    for i in range(len(ds)):
        assert ds[i]["video"].shape == (2, 4, 3, 24, 32), ds.records[i].path
    batch = next(iter(DataLoader(ds, batch_size=len(ds))))  # before: "stack expects each tensor to be equal size"
    assert batch["video"].shape == (len(ds), 2, 4, 3, 24, 32)
    aug = ClipAugment(size=16)(batch["video"][:, 0], generator=torch.Generator().manual_seed(0))
    assert aug.shape == (len(ds), 3, 4, 16, 16)
    assert ClipEval(size=16)(batch["video"][:, 1]).shape == (len(ds), 3, 4, 16, 16)


def test_huge_frame_is_resized_on_decode_to_the_box(tmp_path):
    big = write_video(tmp_path / "big.mp4", 4000, 3000, 3)
    clip = read_frames(big, [0, 2, 1], size=(24, 32), fit="cover")
    assert clip.shape == (3, 3, 24, 32) and clip.dtype == torch.uint8
    # The bright bar moves right: its column in frame 2 is right of frame 0's (the picture is the whole frame).
    cols = [int(f.float().mean((0, 1)).argmax()) for f in clip[:2]]
    assert cols[0] < cols[1]
    # A portrait frame in a landscape box is resized to cover it and centre-cropped, never stretched.
    tall = write_video(tmp_path / "tall.mp4", 240, 320, 4)
    assert read_frames(tall, [0], size=(24, 32), fit="cover").shape == (1, 3, 24, 32)


def test_pretrain_linear_and_embed_on_mixed_sizes(mixed_folder, tmp_path, capsys):
    run = tmp_path / "run"
    data = ["--dataset", "folder", "--root", str(mixed_folder)]
    assert main(["pretrain", *data, "--out", str(run), "--config", "demo", *TINY]) == 0
    ckpt = run / "checkpoints" / "last.pt"
    assert ckpt.is_file()
    assert main(["linear", "--checkpoint", str(ckpt), *data, "--out", str(tmp_path / "lin"), "--config", "demo",
                 *TINY]) == 0
    res = json.loads((tmp_path / "lin" / "results.json").read_text())
    assert 0.0 <= res["top1"] <= 1.0
    index = tmp_path / "mixed.emb"
    assert main(["embed", "--checkpoint", str(ckpt), "--root", str(mixed_folder), "--out", str(index)]) == 0
    assert len(read_table(index)["path"]) == len(list(mixed_folder.rglob("*.mp4"))) == 10


# ----------------------------------------------------------------------------- runs of bad files


def test_twenty_bad_files_in_a_row_do_not_stop_pretraining(tmp_path):
    root = tmp_path / "runs_of_bad"
    bad = [str(write_bad(root / f"a_bad{i:02d}.mp4", i)) for i in range(20)]  # sorted first: one run of 20
    for i in range(4):
        write_video(root / f"z_good{i}.mp4", 64, 48, 10, seed=i)
    with pytest.warns(RuntimeWarning) as record:
        code = main(["pretrain", "--dataset", "folder", "--root", str(root), "--out", str(tmp_path / "run"),
                     "--config", "demo", *TINY])
    assert code == 0 and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    messages = [str(w.message) for w in record if "unreadable" in str(w.message)]
    for path in bad:  # each bad file reported, once
        assert sum(path in m for m in messages) == 1, path


def test_a_folder_of_only_bad_files_is_one_clear_error(tmp_path, capsys):
    root = tmp_path / "all_bad"
    for i in range(5):
        write_bad(root / f"v{i}.mp4", i)
    code = main(["pretrain", "--dataset", "folder", "--root", str(root), "--out", str(tmp_path / "run"),
                 "--config", "demo", *TINY, "data.num_workers=2"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "none of the 5 videos" in lines[0] and str(root) in lines[0], err
    assert "Traceback" not in err


# ----------------------------------------------------------------------------- evaluation


def _eval_tree(root: Path) -> list[Path]:
    good = []
    for subset in ("train", "test"):
        for ci, cls in enumerate(("a", "b")):
            for i in range(3):
                good.append(write_video(root / subset / cls / f"{cls}{i}.mp4", 64, 48, 10, seed=10 * ci + i))
    write_bad(root / "train" / "a" / "a0_broken.mp4", 0)  # sorted right after a0.mp4: its neighbour
    write_bad(root / "train" / "b" / "b1_empty.mp4", 1)
    return good


class MeanPool(torch.nn.Module):
    def forward(self, x):  # (B, C, T, H, W) -> (B, C)
        return x.mean((2, 3, 4))


def test_evaluation_leaves_bad_videos_out_instead_of_counting_a_neighbour_twice(tmp_path):
    from videocontrast.build.components import build_eval_transform, eval_loader
    from videocontrast.config import load_config
    from videocontrast.eval.features import extract_features

    root = tmp_path / "labeled"
    _eval_tree(root)
    cfg = load_config("demo", ["data.dataset=folder", f"data.root={root}", *TINY, "data.input=rgb"])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        loader = eval_loader(cfg, "train")
        feats = extract_features(MeanPool(), loader, build_eval_transform(cfg), "cpu")
    # 6 readable videos x 2 clips; each video once (before: 8 x 2 rows, a0.mp4 and b2.mp4 twice).
    assert len(feats["feats"]) == 6 * 2 and len(np.unique(feats["video_ids"])) == 6
    assert sorted(Path(p).name for p in feats["paths"]) == ["a0.mp4", "a1.mp4", "a2.mp4", "b0.mp4", "b1.mp4",
                                                             "b2.mp4"]
    messages = [str(w.message) for w in record]
    assert any(re.search(r"2 of 8 videos .*left out", m) for m in messages), messages
    assert any("a0_broken.mp4" in m for m in messages)


def test_a_video_that_probes_but_does_not_decode_is_left_out_of_features(tmp_path, monkeypatch):
    import videocontrast.data.datasets as datasets_mod
    from videocontrast.build.components import build_eval_transform, eval_loader
    from videocontrast.config import load_config
    from videocontrast.data.decode import VideoDecodeError
    from videocontrast.eval.features import extract_features

    root = tmp_path / "labeled"
    _eval_tree(root)
    real = datasets_mod.read_frames

    def failing(path, *args, **kwargs):
        if str(path).endswith("a1.mp4"):
            raise VideoDecodeError(path, "no frame of the video stream decodes")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(datasets_mod, "read_frames", failing)
    cfg = load_config("demo", ["data.dataset=folder", f"data.root={root}", *TINY, "data.input=rgb"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loader = eval_loader(cfg, "train")
    with pytest.warns(RuntimeWarning, match=r"a1\.mp4"):
        feats = extract_features(MeanPool(), loader, build_eval_transform(cfg), "cpu")
    names = sorted(Path(p).name for p in feats["paths"])
    assert names == ["a0.mp4", "a2.mp4", "b0.mp4", "b1.mp4", "b2.mp4"]
    assert len(feats["feats"]) == 5 * 2 and feats.get("unreadable") and "a1.mp4" in feats["unreadable"][0]["path"]


# ----------------------------------------------------------------------------- truncated files


def write_noise_avi(path: Path, num_frames: int) -> Path:
    """An MPEG-4 AVI of noise frames: packets of similar size, so a cut at x% keeps about x% of the frames."""
    rng = np.random.default_rng(0)
    return _encode(path, [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(num_frames)], "mpeg4")


def test_truncated_avi_is_reported_as_truncated(tmp_path):
    full = write_noise_avi(tmp_path / "full.avi", 125)
    cut = tmp_path / "cls" / "cut.avi"
    cut.parent.mkdir()
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.3)])
    assert probe_video(full).truncated is False
    info = probe_video(cut)
    assert info.truncated and info.header_frames == 125 and 20 <= info.num_frames <= 40
    ds = VideoDataset([VideoRecord(str(cut), 0)], ["cls"])
    with pytest.warns(RuntimeWarning, match=r"truncated.*125 frames") as record:
        ds[0]
    assert str(cut) in str(record[0].message) and f"{info.num_frames}" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = dataset_info("folder", tmp_path / "cls")
    assert [t["path"] for t in summary["truncated"]] == [str(cut)]
    assert summary["truncated"][0]["header_frames"] == 125


def test_a_complete_avi_with_an_audio_track_is_complete(tmp_path):
    # Written as the UCF101-like tree's AVIs are: video and aac timestamps as given, every frame there.
    path = write_pattern_video(tmp_path / "a.avi", 40, "mpeg4", audio=True, size=(60, 80))
    info = probe_video(path)
    assert (info.num_frames, info.header_frames, info.truncated) == (40, 40, False)


def test_an_avi_whose_video_starts_after_aac_priming_is_not_called_truncated(tmp_path):
    # ffmpeg's default muxing shifts the video 3 frame periods past aac's priming; the header counts 128 frames
    path = write_pattern_video(tmp_path / "a.avi", 125, "mpeg4", audio=True, shift_audio_start=True)
    info = probe_video(path)
    assert info.header_frames == 128 and info.num_frames == 125 and not info.truncated
    # while the same file cut short still is truncated
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 7 // 10])
    info = probe_video(cut)
    assert info.truncated and info.num_frames < 100


def test_real_ucf101_clips_are_not_called_truncated(shared_data):
    # Real AVIs whose header counts N-VOP packets (96 vs 90 decodable frames) are complete, not truncated.
    for rel in ("Basketball/v_Basketball_g16_c04.avi", "Basketball/v_Basketball_g16_c06.avi"):
        info = probe_video(shared_data / "ucf101-mini" / "videos" / rel)
        assert info.header_frames > info.num_frames and not info.truncated


# ----------------------------------------------------------------------------- missing files named


def _ucf_with_missing(tmp_path: Path, clip: Path, n_missing: int) -> Path:
    root, splits = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    splits.mkdir(parents=True)
    (splits / "classInd.txt").write_text("1 Jump\n2 Run\n")
    train = [f"Jump/v_Jump_g{g:02d}_c01.avi 1" for g in range(1, 3)]
    train += [f"Run/v_Run_g{g:02d}_c01.avi 2" for g in range(1, n_missing + 1)]  # none on disk
    (splits / "trainlist01.txt").write_text("\n".join(train) + "\n")
    (splits / "testlist01.txt").write_text("Jump/v_Jump_g01_c01.avi\n")
    for g in (1, 2):
        (root / "Jump").mkdir(parents=True, exist_ok=True)
        (root / "Jump" / f"v_Jump_g{g:02d}_c01.avi").write_bytes(clip.read_bytes())
    return root


@pytest.fixture(scope="module")
def avi_clip(tmp_path_factory) -> Path:
    return write_pattern_video(tmp_path_factory.mktemp("clip") / "c.avi", 20, "mpeg4")


def test_missing_files_are_named_and_listed_in_data_info(tmp_path, avi_clip, caplog, capsys):
    root = _ucf_with_missing(tmp_path, avi_clip, 12)
    with caplog.at_level(logging.WARNING):
        ds = build_dataset("ucf101", root)
    lines = [r.getMessage() for r in caplog.records if "missing" in r.getMessage()]
    assert len(lines) == 1
    assert "12 of 14 videos" in lines[0]
    assert "Run/v_Run_g01_c01.avi" in lines[0] and "and 9 more" in lines[0] and "data info --json" in lines[0]
    assert ds.missing == 12 and ds.missing_files[0] == "Run/v_Run_g01_c01.avi" and len(ds.missing_files) == 12
    assert main(["data", "info", "--dataset", "ucf101", "--root", str(root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["missing"] == 12 and len(info["missing_files"]) == 12
    assert "Run/v_Run_g12_c01.avi" in info["missing_files"]


# ----------------------------------------------------------------------------- each thing said once


def test_the_missing_line_is_said_once_however_many_loaders(tmp_path, avi_clip, caplog):
    from videocontrast.build.components import eval_loader
    from videocontrast.config import load_config

    root = _ucf_with_missing(tmp_path, avi_clip, 3)
    cfg = load_config("demo", ["data.dataset=ucf101", f"data.root={root}", *TINY])
    with caplog.at_level(logging.WARNING):
        for _ in range(4):  # the real-data demo builds eight loaders
            build_dataset("ucf101", root)
            eval_loader(cfg, "train")
    lines = [r.getMessage() for r in caplog.records if "missing" in r.getMessage()]
    assert len(lines) == 1, lines


def test_bad_files_are_reported_once_with_two_workers(tmp_path):
    """Two DataLoader workers, two epochs (workers restarted), then an evaluation pass in the main process: each
    bad file is named once on stderr (before: once per worker that met it)."""
    root = tmp_path / "folder"
    bad = [str(write_bad(root / f"b{i}_bad.mp4", i)) for i in range(3)]
    for i in range(6):
        write_video(root / f"b{i}_good.mp4", 64, 48, 10, seed=i)
    script = textwrap.dedent(f"""
        import warnings
        from torch.utils.data import DataLoader
        from videocontrast.data.datasets import build_dataset
        from videocontrast.transforms.temporal import UniformClips
        ds = build_dataset("folder", {str(root)!r}, views_fn=UniformClips(4, 1, 1), decode_size=16)
        for epoch in range(2):
            ds.set_epoch(epoch)
            n = sum(len(b["path"]) for b in DataLoader(ds, batch_size=1, num_workers=2))
            assert n == 9, n
        ev = build_dataset("folder", {str(root)!r}, views_fn=UniformClips(4, 1, 1), decode_size=16)
        getattr(ev, "drop_unreadable", lambda: None)()
        print("unreadable", len(ds.unreadable), len(ev.unreadable), len(ev))
    """)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [line for line in proc.stderr.splitlines() if "unreadable video" in line]
    for path in bad:
        assert sum(path in line for line in reports) == 1, (path, proc.stderr)
    assert "unreadable 3 3 6" in proc.stdout  # the main process knows what its workers found


# ----------------------------------------------------------------------------- symlinks


def test_find_videos_lists_symlink_loops_and_broken_links(tmp_path):
    root = tmp_path / "links"
    good = write_video(root / "ok.mp4", 64, 48, 4)
    (root / "loop.mp4").symlink_to(root / "loop.mp4")  # a link to itself
    (root / "gone.mp4").symlink_to(root / "nowhere.mp4")  # a dangling link
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to(root, target_is_directory=True)  # a folder loop
    skipped: list[dict] = []
    paths = find_videos(root, skipped=skipped)
    assert paths == [good]
    reasons = {Path(s["path"]).name: s["reason"] for s in skipped}
    assert "symbolic link loop" in reasons["loop.mp4"]
    assert "broken symbolic link" in reasons["gone.mp4"]
    assert "symbolic link loop" in reasons["up"]
    assert find_videos(root) == [good]  # without the list: same videos, nothing raised


def test_find_videos_follows_folder_links_once(tmp_path):
    elsewhere = write_video(tmp_path / "elsewhere" / "far.mp4", 64, 48, 4)
    root = tmp_path / "root"
    near = write_video(root / "cls" / "near.mp4", 64, 48, 4)
    (root / "linked").symlink_to(elsewhere.parent, target_is_directory=True)  # a class folder kept elsewhere
    (root / "again").symlink_to(root / "cls", target_is_directory=True)  # inside root: listed once, as cls/
    skipped: list[dict] = []
    assert find_videos(root, skipped=skipped) == [near, root / "linked" / "far.mp4"]
    assert skipped == []


# ----------------------------------------------------------------------------- progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clips(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> dict:
        return {"video": torch.zeros(1, 2, 3, 4, 4, dtype=torch.uint8), "label": 0, "index": i, "path": f"v{i}"}


def _loader() -> DataLoader:
    return DataLoader(_Clips(), batch_size=2)


def test_extract_features_shows_a_progress_bar(monkeypatch, capsys):
    from videocontrast.eval.features import extract_features

    to_model = lambda x: x.float().permute(0, 2, 1, 3, 4)  # noqa: E731
    extract_features(MeanPool(), _loader(), to_model, "cpu", progress=True, desc="train features")
    err = capsys.readouterr().err
    assert "train features" in err and "3/3" in err
    extract_features(MeanPool(), _loader(), to_model, "cpu")  # default: only on a terminal; tests have none
    assert capsys.readouterr().err == ""
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    extract_features(MeanPool(), _loader(), to_model, "cpu")
    assert "3/3" in term.getvalue()


def test_evaluation_shows_progress_on_a_terminal(tmp_path, monkeypatch):
    from videocontrast.config import load_config
    from videocontrast.eval.run import features, resolve_encoder

    root = tmp_path / "labeled"
    _eval_tree(root)
    cfg = load_config("demo", ["data.dataset=folder", f"data.root={root}", *TINY])
    enc = resolve_encoder("random", cfg, torch.device("cpu"), tmp_path)
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        features(enc, "test", torch.device("cpu"), tmp_path / "cache")
    assert "6/6" in term.getvalue() and "features" in term.getvalue()
