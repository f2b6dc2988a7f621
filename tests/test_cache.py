"""Tests for videocontrast.data.cache (data.cache: the decoded-frame cache).

References: the uncached dataset path (files decoded per item, seek + partial decode) on real UCF101 clips, the
frame number printed into generated pattern videos (conftest.read_pattern), and the bad-file behaviour of an
uncached dataset.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import read_pattern, write_pattern_video
from videocontrast.config import ConfigError, load_config
from videocontrast.data import cache as cache_mod
from videocontrast.data.cache import CACHE_FILE, CacheDoesNotFit, attach_cache, estimate_bytes
from videocontrast.data.datasets import VideoDataset, build_dataset
from videocontrast.data.splits import VideoRecord
from videocontrast.transforms.temporal import TwoViews

def _ucf_files(videos: Path, n: int) -> list[str]:
    files = sorted(str(p) for p in videos.glob("*/*.avi"))
    assert len(files) >= n
    return files[:: len(files) // n][:n]


def _pair(records, views, decode_size=40, aspect=(3, 4)):
    return (VideoDataset(records, ["a"], views, decode_size=decode_size, aspect=aspect),
            VideoDataset(records, ["a"], views, decode_size=decode_size, aspect=aspect))


@pytest.mark.parametrize("mode", ["memory", "disk"])
def test_cached_items_equal_uncached_items_on_ucf101_avis(tmp_path, ucf101_like, mode):
    # MPEG-4 AVIs with B-frames and a sound track, 80x60 (4:3) as UCF101's 320x240
    records = [VideoRecord(f, 0) for f in _ucf_files(ucf101_like.videos, 4)]
    plain, cached = _pair(records, TwoViews("shift", 9, 4, 2))
    assert attach_cache(cached, mode, tmp_path, quiet=True) == mode
    assert (tmp_path / CACHE_FILE).exists() == (mode == "disk")
    for epoch in (0, 3):
        plain.set_epoch(epoch), cached.set_epoch(epoch)
        for i in range(len(records)):
            a, b = plain[i]["video"], cached[i]["video"]
            assert a.shape == b.shape == (2, 9, 3, 40, 53)
            assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["memory", "disk"])
def test_cache_gives_the_sampled_frame_numbers_and_works_in_workers(tmp_path, mode):
    paths = [write_pattern_video(tmp_path / "v" / f"c{i}.mp4", 30 + 7 * i, "libx264") for i in range(3)]
    records = [VideoRecord(str(p), i) for i, p in enumerate(paths)]
    views = TwoViews("shift", 6, 3, 1)
    plain, cached = _pair(records, views, decode_size=32, aspect=(1, 2))  # the pattern videos' 32x64
    attach_cache(cached, mode, tmp_path / "run", quiet=True)
    # The frames are the ones the sampler asked for: read back from the picture itself.
    for i in range(3):
        wanted = views(cached._info(i).num_frames, cached.item_rng(i))
        got = cached[i]["video"]
        for v in range(2):
            assert [read_pattern(f.numpy()) for f in got[v]] == [int(k) for k in wanted[v]]
    # Two worker processes read the same cache (shared memory / the mapped file) and give the same batches.
    loader = lambda ds, w: DataLoader(ds, batch_size=2, num_workers=w)  # noqa: E731
    for x, y in zip(loader(plain, 0), loader(cached, 2)):
        assert torch.equal(x["video"], y["video"]) and torch.equal(x["label"], y["label"])


def test_bad_file_is_reported_once_and_replaced_as_without_cache(tmp_path):
    good = [write_pattern_video(tmp_path / "cls" / f"good{i}.mp4", 20, "libx264") for i in range(2)]
    bad = tmp_path / "cls" / "good0_truncated.mp4"  # sorts between the two good files
    bad.write_bytes(good[0].read_bytes()[:400])
    plain = build_dataset("folder", tmp_path, views_fn=TwoViews("shift", 4, 2, 1), decode_size=32)
    paths = [r.path for r in plain.records]
    j = paths.index(str(bad))
    expected = plain[j]["path"]  # the uncached rule: the next readable video stands in
    assert expected != str(bad)

    from videocontrast.data.reports import reset_reports

    reset_reports()
    cached = build_dataset("folder", tmp_path, views_fn=TwoViews("shift", 4, 2, 1), decode_size=32)
    with pytest.warns(RuntimeWarning) as record:
        attach_cache(cached, "memory", quiet=True)
        items = [cached[i] for i in range(3)] + [cached[i] for i in range(3)]
    assert sum(str(bad) in str(w.message) for w in record) == 1  # reported once, however often it is met
    assert items[j]["path"] == expected
    assert [d["path"] for d in cached.unreadable] == [str(bad)]
    assert torch.equal(items[j]["video"], plain[j]["video"])


def test_refusal_names_the_field_and_auto_falls_back(tmp_path, monkeypatch):
    records = [VideoRecord(str(write_pattern_video(tmp_path / "v" / "a.mp4", 20, "libx264")), 0)]
    ds = VideoDataset(records, ["a"], TwoViews("none", 4, 0, 1), decode_size=32, aspect=(1, 2))
    need, frames = estimate_bytes(ds)
    assert frames == 20 and need == 20 * 32 * 64 * 3  # every frame at the frame box, uint8 RGB

    monkeypatch.setattr(cache_mod, "available_memory", lambda: need)  # half of it is allowed: too little
    with pytest.raises(CacheDoesNotFit, match=r"^data\.cache=memory needs .* RAM") as err:
        attach_cache(ds, "memory", tmp_path, quiet=True)
    assert "\n" not in str(err.value)
    assert attach_cache(ds, "auto", tmp_path, quiet=True) == "disk"

    class Usage:
        free = need // 2

    monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(CacheDoesNotFit, match=r"^data\.cache=disk needs"):
        attach_cache(ds, "disk", tmp_path, quiet=True)
    ds.frame_cache = None
    assert attach_cache(ds, "auto", tmp_path, quiet=True) == "none" and ds.frame_cache is None


def test_config_field_is_checked_and_demo_presets_default_to_auto():
    with pytest.raises(ConfigError, match="data.cache"):
        load_config("cpu-small", ["data.cache=ram"])
    assert load_config("cpu-small").data.cache == "none"
    assert load_config("demo").data.cache == "auto"
