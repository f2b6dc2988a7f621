"""Dataset builders (split parsing, quirks, missing/bad files) and the item contract of VideoDataset."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import read_pattern, write_audio_only, write_pattern_video
from videocontrast.data.datasets import VideoDataset, build_dataset
from videocontrast.data.info import dataset_info
from videocontrast.data.splits import VideoRecord
from videocontrast.data.decode import VideoDecodeError


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """One 40-frame pattern video (frame k shows k) to copy into dataset trees."""
    return write_pattern_video(tmp_path_factory.mktemp("clip") / "c.mp4", 40, "libx264")


def _place(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


# ----------------------------------------------------------------------------- UCF101


def test_ucf101_split1_counts_and_official_labels(ucf101_like):
    """The official split files of a partial download: labels by classInd's 1-based numbers, groups g01-g07
    test and g08-g25 train (as the files say), listed videos not on disk counted as missing."""
    u = ucf101_like
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = build_dataset("ucf101", u.videos, split=1, subset="train")  # splits found at root/../ucfTrainTestlist
        test = build_dataset("ucf101", u.videos, split=1, subset="test")
    assert train.classes == test.classes == u.classes and len(train.classes) == 8
    assert train.present_classes == test.present_classes == ["BalanceBeam", "BaseballPitch", "Basketball"]
    for name, (n_train, n_test, label) in {"BalanceBeam": (5, 3, 4), "BaseballPitch": (6, 4, 6),
                                           "Basketball": (5, 2, 7)}.items():  # classInd 5, 7, 8
        assert (u.train[name], u.test[name]) == (n_train, n_test)  # what the fixture wrote
        assert train.classes[label] == name
        assert sum(r.label == label for r in train.records) == n_train
        assert sum(r.label == label for r in test.records) == n_test
    assert len(train) == 16 and len(test) == 9
    assert train.missing == u.missing_train == 6 and test.missing == u.missing_test == 5
    for r, subset in [(r, "train") for r in train.records] + [(r, "test") for r in test.records]:
        assert Path(r.path).is_file() and Path(r.path).parent.name == train.classes[r.label]
        group = int(Path(r.path).stem.split("_g")[1][:2])
        assert (group >= 8) == (subset == "train"), r.path
    with pytest.raises(FileNotFoundError, match="missing"):
        build_dataset("ucf101", u.videos, split=1, require_complete=True)


def test_ucf101_mini_split1_counts_and_official_labels(shared_data):
    """The real ucf101-mini against the unmodified official split files (101 classes, 3 on disk)."""
    root = shared_data / "ucf101-mini" / "videos"  # splits found at root/../ucfTrainTestlist
    expected = {"BalanceBeam": (77, 31, 4), "BaseballPitch": (107, 43, 6), "Basketball": (99, 35, 7)}  # classInd 5, 7, 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = build_dataset("ucf101", root, split=1, subset="train")
        test = build_dataset("ucf101", root, split=1, subset="test")
    assert len(train.classes) == 101 and train.classes[0] == "ApplyEyeMakeup" and train.classes[-1] == "YoYo"
    assert train.present_classes == test.present_classes == sorted(expected)
    for name, (n_train, n_test, label) in expected.items():
        assert train.classes[label] == name
        assert sum(r.label == label for r in train.records) == n_train
        assert sum(r.label == label for r in test.records) == n_test
    assert len(train) == 283 and len(test) == 109
    # The official lists name 9537 train / 3783 test videos; the rest of UCF101 is not on disk.
    assert train.missing == 9537 - 283 and test.missing == 3783 - 109
    for r in train.records + test.records:
        assert Path(r.path).is_file() and Path(r.path).parent.name == train.classes[r.label]
    with pytest.raises(FileNotFoundError, match="missing"):
        build_dataset("ucf101", root, split=1, require_complete=True)


def _ucf_tree(tmp_path: Path, clip: Path, crlf: bool) -> tuple[Path, Path]:
    root, splits = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    nl = "\r\n" if crlf else "\n"
    splits.mkdir()
    (splits / "classInd.txt").write_bytes(nl.join(["1 ApplyEyeMakeup", "2 HandstandPushups", "3 YoYo"]).encode() + nl.encode())
    train = ["HandstandPushups/v_HandstandPushups_g01_c01.avi 2",  # list and disk differ in case
             "HandstandPushups/v_HandstandPushups_g02_c01.avi 2",
             "YoYo/v_YoYo_g01_c01.avi 3",
             "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1"]  # not on disk
    test = ["HandstandPushups/v_HandstandPushups_g03_c01.avi", "YoYo/v_YoYo_g02_c01.avi"]
    (splits / "trainlist01.txt").write_bytes((nl.join(train) + nl).encode())
    (splits / "testlist01.txt").write_bytes((nl.join(test) + nl).encode())
    for g in (1, 2, 3):
        _place(clip, root / "HandstandPushups" / f"v_HandStandPushups_g0{g}_c01.avi")
    for g in (1, 2):
        _place(clip, root / "YoYo" / f"v_YoYo_g0{g}_c01.avi")
    return root, splits


@pytest.mark.parametrize("crlf", [True, False])
def test_ucf101_case_quirk_crlf_and_missing(tmp_path, clip, crlf):
    root, splits = _ucf_tree(tmp_path, clip, crlf)
    train = build_dataset("ucf101", root)  # splits found at root/../ucfTrainTestlist
    assert train.classes == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    assert [(Path(r.path).name, r.label) for r in train.records] == [
        ("v_HandStandPushups_g01_c01.avi", 1), ("v_HandStandPushups_g02_c01.avi", 1), ("v_YoYo_g01_c01.avi", 2)]
    assert train.missing == 1 and train.present_classes == ["HandstandPushups", "YoYo"]
    test = build_dataset("ucf101", root, splits=splits, subset="test")
    assert [(Path(r.path).name, r.label) for r in test.records] == [
        ("v_HandStandPushups_g03_c01.avi", 1), ("v_YoYo_g02_c01.avi", 2)]
    assert test.missing == 0
    assert len(build_dataset("ucf101", root, subset="all")) == 5
    with pytest.raises(FileNotFoundError, match="ApplyEyeMakeup"):
        build_dataset("ucf101", root, require_complete=True)
    build_dataset("ucf101", root, subset="test", require_complete=True)  # nothing missing there
    item = train[0]
    assert item["video"].shape == (1, 16, 3, 32, 64) and item["label"] == 1


def test_ucf101_missing_root_or_splits_name_the_path(tmp_path, clip):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        build_dataset("ucf101", tmp_path / "nope")
    root, splits = _ucf_tree(tmp_path, clip, crlf=True)
    with pytest.raises(FileNotFoundError, match=r"ucfTrainTestlist.*classInd\.txt.*crcv\.ucf\.edu"):
        build_dataset("ucf101", root, splits=tmp_path / "elsewhere")
    (splits / "testlist01.txt").unlink()
    with pytest.raises(FileNotFoundError, match="testlist01.txt"):
        build_dataset("ucf101", root)
    with pytest.raises(FileNotFoundError, match="trainlist02.txt"):
        build_dataset("ucf101", root, split=2)


def test_ucf101_nothing_present_is_an_error(tmp_path, clip):
    root, splits = _ucf_tree(tmp_path, clip, crlf=False)
    shutil.rmtree(root)
    root.mkdir()
    with pytest.raises(FileNotFoundError, match="none of the"):
        build_dataset("ucf101", root)


# ----------------------------------------------------------------------------- HMDB51, folder


def test_hmdb51_split_files(tmp_path, clip):
    root, splits = tmp_path / "hmdb51", tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    (splits / "wave_test_split1.txt").write_text("a.avi 1 \nb.avi 2 \nc.avi 0 \n")
    (splits / "brush_hair_test_split1.txt").write_text("d.avi 2\r\ne.avi 1\r\nmissing.avi 1\r\n")
    for rel in ("wave/a.avi", "wave/b.avi", "wave/c.avi", "brush_hair/d.avi", "brush_hair/e.avi"):
        _place(clip, root / rel)
    train = build_dataset("hmdb51", root)
    assert train.classes == ["brush_hair", "wave"]
    assert sorted((Path(r.path).name, r.label) for r in train.records) == [("a.avi", 1), ("e.avi", 0)]
    assert train.missing == 1
    test = build_dataset("hmdb51", root, subset="test")
    assert sorted((Path(r.path).name, r.label) for r in test.records) == [("b.avi", 1), ("d.avi", 0)]
    with pytest.raises(FileNotFoundError, match="_test_split2.txt"):
        build_dataset("hmdb51", root, split=2)


def test_folder_labeled_unlabeled_and_train_test(tmp_path, clip):
    labeled = tmp_path / "labeled"
    for rel in ("b_cls/x.MP4", "a_cls/y.avi", "a_cls/z.mkv", "a_cls/readme.txt"):
        _place(clip, labeled / rel)
    ds = build_dataset("folder", labeled)
    assert ds.classes == ["a_cls", "b_cls"]
    assert sorted((Path(r.path).name, r.label) for r in ds.records) == [("x.MP4", 1), ("y.avi", 0), ("z.mkv", 0)]
    assert len(build_dataset("folder", labeled, subset="test")) == 0

    flat = tmp_path / "flat"
    _place(clip, flat / "one.mp4")
    _place(clip, flat / "two.webm")
    ds = build_dataset("folder", flat)
    assert ds.classes == [] and [r.label for r in ds.records] == [-1, -1]

    split = tmp_path / "synth"
    for rel in ("train/circle/0.mp4", "train/square/0.mp4", "train/square/1.mp4", "test/circle/0.mp4"):
        _place(clip, split / rel)
    for name in ("folder", "synthetic"):
        train, test = build_dataset(name, split), build_dataset(name, split, subset="test")
        assert train.classes == test.classes == ["circle", "square"]
        assert sorted(r.label for r in train.records) == [0, 1, 1] and [r.label for r in test.records] == [0]
    with pytest.raises(FileNotFoundError, match="generate_synthetic"):
        build_dataset("synthetic", flat)
    with pytest.raises(FileNotFoundError, match="no video files"):
        build_dataset("folder", _empty_dir(tmp_path))
    with pytest.raises(ValueError, match="dataset must be one of"):
        build_dataset("kinetics", flat)


def _empty_dir(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d


# ----------------------------------------------------------------------------- items


class Views:
    """Two fixed views, to check each view gets exactly its frames (picklable)."""

    def __call__(self, num_frames, rng):
        start = int(rng.integers(0, num_frames - 12))
        return [np.arange(start, start + 8), np.arange(start + 4, start + 12)[::-1]]


def test_item_decodes_each_view_exactly_and_deterministically(tmp_path, clip):
    ds = VideoDataset([VideoRecord(str(clip), 3)] * 4, ["a", "b", "c", "d"], Views(), seed=7)
    item = ds[2]
    assert item["video"].dtype == torch.uint8 and item["video"].shape == (2, 8, 3, 32, 64)
    assert item["label"] == 3 and item["index"] == 2 and item["path"] == str(clip)
    start = int(np.random.default_rng([7, 0, 2]).integers(0, 40 - 12))  # the documented per-item RNG
    assert [read_pattern(f.numpy()) for f in item["video"][0]] == list(range(start, start + 8))
    assert [read_pattern(f.numpy()) for f in item["video"][1]] == list(range(start + 11, start + 3, -1))
    assert torch.equal(ds[2]["video"], item["video"])  # same seed/epoch/index -> same clip
    other = VideoDataset([VideoRecord(str(clip), 3)] * 4, ["a", "b", "c", "d"], Views(), seed=7)
    assert torch.equal(other[2]["video"], item["video"])
    # A different epoch or index changes the draw (as the reference RNG says it should).
    ds.set_epoch(1)
    start1 = int(np.random.default_rng([7, 1, 2]).integers(0, 40 - 12))
    assert [read_pattern(f.numpy()) for f in ds[2]["video"][0]][0] == start1


def test_default_view_and_decode_size(clip):
    ds = VideoDataset([VideoRecord(str(clip), -1)], [], decode_size=16)
    video = ds[0]["video"]
    assert video.shape == (1, 16, 3, 16, 32)
    assert [read_pattern(f.numpy()) for f in video[0]] == list(range(16))


def test_transform_is_applied(clip):
    ds = VideoDataset([VideoRecord(str(clip), 0)], ["a"], transform=lambda v: v.float().mean())
    assert isinstance(ds[0]["video"], torch.Tensor) and ds[0]["video"].ndim == 0


@pytest.fixture
def bad_tree(tmp_path, clip) -> tuple[Path, list[str]]:
    root = tmp_path / "bad"
    good = [_place(clip, root / "cls" / f"good{i}.mp4") for i in range(2)]
    (root / "cls" / "a_empty.mp4").write_bytes(b"")
    (root / "cls" / "b_truncated.mp4").write_bytes(clip.read_bytes()[:500])
    (root / "cls" / "c_noise.avi").write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    write_audio_only(root / "cls" / "d_audio.avi")
    (root / "cls" / "e_text.mkv").write_text("not a video\n" * 20)
    bad = sorted(str(p) for p in (root / "cls").iterdir() if not p.name.startswith("good"))
    return root, bad


def test_bad_files_are_skipped_counted_and_warned_once(bad_tree):
    root, bad = bad_tree
    with pytest.warns(RuntimeWarning) as record:
        ds = build_dataset("folder", root)  # the bad files sorted before the first good one are reported here
        assert len(ds) == 7
        items = [ds[i] for i in range(len(ds))]
        items += [ds[i] for i in range(len(ds))]  # second pass: no new warnings
    assert all(str(item["path"]).endswith(("good0.mp4", "good1.mp4")) for item in items)
    assert sorted(d["path"] for d in ds.unreadable) == bad
    assert all(d["reason"] for d in ds.unreadable)
    messages = [str(w.message) for w in record]
    assert len(messages) == len(bad) and all(any(p in m for m in messages) for p in bad)

    info = dataset_info("folder", root)
    assert info["train"] == 2 and info["test"] == 0 and info["classes"] == ["cls"]
    assert sorted(d["path"] for d in info["unreadable"]) == bad
    assert info["frames"] == {"min": 40.0, "median": 40.0, "max": 40.0}


@pytest.mark.parametrize("which", range(5))
def test_strict_raises_naming_the_file(bad_tree, which):
    root, bad = bad_tree
    ds = build_dataset("folder", root, strict=True)
    index = [r.path for r in ds.records].index(bad[which])
    with pytest.raises(VideoDecodeError) as err:
        ds[index]
    assert err.value.path == bad[which] and bad[which] in str(err.value)


def test_dataset_info_on_a_ucf101_download(ucf101_like):
    u = ucf101_like
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = dataset_info("ucf101", u.videos, probe=True)
    assert (info["train"], info["test"], info["unreadable"]) == (16, 9, [])
    assert info["missing"] == 6 + 5 and info["classes"] == u.classes
    assert info["present_classes"] == ["BalanceBeam", "BaseballPitch", "Basketball"]
    frames = sorted(u.frames.values())
    assert (info["frames"]["min"], info["frames"]["median"], info["frames"]["max"]) == \
        (frames[0], frames[len(frames) // 2], frames[-1]) == (24, 41, 60)  # 25 videos: the 13th
    assert info["fps"]["min"] == pytest.approx(25.0) and info["fps"]["max"] == pytest.approx(29.97, abs=0.01)


def test_bench_data_json_reports_the_two_view_cpu_rate(ucf101_like, tmp_path):
    """A tiny run of bench/bench_data.py --json prints one JSON object with our rate and the peer's (no timing
    is asserted: benchmarks are for reading, not for tests)."""
    import json
    import os
    import subprocess
    import sys

    data = tmp_path / "data"  # bench_data.py reads DATA/ucf101-mini/videos/*/*.avi
    data.mkdir()
    (data / "ucf101-mini").symlink_to(ucf101_like.root, target_is_directory=True)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    out = subprocess.run([sys.executable, str(repo / "bench" / "bench_data.py"), "--json", "--only-side-by-side",
                          "--seconds", "0.2", "--files", "2", "--data", str(data)],
                         capture_output=True, text=True, env=env, timeout=600, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["two_view_cpu_aug_per_core"] > 0 and result["peer_two_view_per_core"] > 0
    assert result["ratio_vs_peer"] == pytest.approx(
        result["two_view_cpu_aug_per_core"] / result["peer_two_view_per_core"], rel=1e-2)
