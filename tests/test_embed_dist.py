"""``embed`` under ``torchrun --nproc_per_node=2`` (gloo, CPU) gives the embeddings of one process (to float
tolerance) in the same order, and the merged FAISS index answers the same neighbours as NumPy brute force on the
one-process embeddings (issue 13, "done when").

The fast test embeds a few generated H.264 .mp4 and MPEG-4 .avi files (tests/conftest.py's mp4_folder and
ucf101_like); the slow one (``pytest -m slow``) all of the real ucf101-mini and ucf101-tiny-mp4 of ../shared/data
through one CSV manifest, skipping when ../shared/data is absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss", reason="the merged index is FAISS: pip install 'videocontrast[search]'")
pytest.importorskip("pyarrow", reason="the table is Parquet: pip install 'videocontrast[search]'")

from videocontrast.search.embed import embed_collection, read_table  # noqa: E402
from videocontrast.search.query import load_collection, nearest  # noqa: E402

from test_export import make_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], torchrun: bool, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] if torchrun \
        else [sys.executable]
    proc = subprocess.run([*launcher, "-m", "videocontrast", "embed", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _compare(one: Path, two: Path, k: int) -> None:
    a, b = load_collection(one), load_collection(two)
    assert list(a.table["path"]) == list(b.table["path"]) and len(a) > 0
    assert list(a.table["label"]) == list(b.table["label"])
    np.testing.assert_allclose(a.table["clip_start"], b.table["clip_start"])
    np.testing.assert_allclose(b.emb, a.emb, atol=1e-5)
    parts = sorted(p.name.split("-")[0] for p in (two / "parts").glob("r*-*.csv"))
    assert set(parts) == {"r0", "r1"}, parts  # both ranks wrote shards
    # neighbours of every row: the 2-process folder's FAISS index vs NumPy brute force on the 1-process embeddings
    k = min(k, len(a))
    _, rows = nearest(b, b.emb, k)
    sims = a.emb @ a.emb.T
    want_sims = -np.sort(-sims, axis=1)[:, :k]
    got_sims = np.take_along_axis(sims, rows, 1)
    np.testing.assert_allclose(got_sims, want_sims, atol=1e-4)  # same neighbours (ties may swap places)
    assert (rows == np.argsort(-sims, axis=1, kind="stable")[:, :k]).mean() > 0.95


def test_two_processes_embed_like_one(mp4_folder, ucf101_like, tmp_path):
    videos = sorted((mp4_folder / "videos").rglob("*.mp4"))[::2]  # one per class
    videos += sorted(ucf101_like.videos.rglob("*.avi"))[::8]  # and MPEG-4 AVIs with a sound track
    assert len(videos) == 5 + 4
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p} {p.parent.name}\n" for p in videos))
    ckpt = make_checkpoint(tmp_path / "last.pt")
    args = ["--checkpoint", str(ckpt), "--root", str(listing), "--clips", "2", "--batch-size", "3"]
    embed_collection(ckpt, listing, tmp_path / "one", clips=2, batch_size=3, progress=False)  # one process: here
    _run([*args, "--out", str(tmp_path / "two")], torchrun=True, timeout=300)
    _compare(tmp_path / "one", tmp_path / "two", k=5)
    assert list(read_table(tmp_path / "two")["label"]) == [p.parent.name for p in videos]


@pytest.mark.slow
def test_two_processes_embed_ucf101_mini_and_tiny_like_one(shared_data, tmp_path):
    files = sorted((shared_data / "ucf101-mini" / "videos").rglob("*.avi")) + \
        sorted((shared_data / "ucf101-tiny-mp4" / "videos").rglob("*.mp4"))
    manifest = tmp_path / "all.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in files))
    args = ["--checkpoint", "random", "--config", "cpu-small", "--root", str(manifest)]
    _run([*args, "--out", str(tmp_path / "one")], torchrun=False, timeout=3600)
    _run([*args, "--out", str(tmp_path / "two")], torchrun=True, timeout=3600)
    _compare(tmp_path / "one", tmp_path / "two", k=10)
    assert len(load_collection(tmp_path / "one")) == len(files)
