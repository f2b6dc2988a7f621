"""Shared fixtures: the real UCF101 clips in ../shared/data and tiny generated videos.

Generated videos carry their frame number in the picture (see :func:`pattern_frame`), so a test can
read back which frame a decoder returned, independently of the decoder under test.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# 8 bits -> 8 blocks of 16x16 pixels in a 64x32 frame: black/white blocks survive lossy coding.
_BLOCK, _COLS, _ROWS = 16, 4, 2
PATTERN_H, PATTERN_W = _BLOCK * _ROWS, _BLOCK * _COLS


def pattern_frame(k: int, height: int = PATTERN_H, width: int = PATTERN_W) -> np.ndarray:
    """Frame ``k`` of a test video: uint8 (height, width, 3) (default (32, 64, 3)), the frame cut into 2 rows of
    4 blocks, block b white iff bit b of k is set."""
    bits = [(k >> b) & 1 for b in range(_ROWS * _COLS)]
    grid = np.array(bits, dtype=np.uint8).reshape(_ROWS, _COLS) * 220 + 16
    rows, cols = np.arange(height) * _ROWS // height, np.arange(width) * _COLS // width
    return grid[rows][:, cols][..., None].repeat(3, axis=2)


def read_pattern(frame_chw: np.ndarray) -> int:
    """Inverse of :func:`pattern_frame` for a decoded (3, H, W) frame of any size (block means)."""
    gray = frame_chw.astype(np.float32).mean(0)
    h, w = gray.shape
    k = 0
    for b in range(_ROWS * _COLS):
        r, c = divmod(b, _COLS)
        block = gray[r * h // _ROWS:(r + 1) * h // _ROWS, c * w // _COLS:(c + 1) * w // _COLS]
        # Centre of the block only: scaling blurs the edges between blocks.
        bh, bw = block.shape
        if block[bh // 4: 3 * bh // 4, bw // 4: 3 * bw // 4].mean() > 128:
            k |= 1 << b
    return k


def write_pattern_video(path: Path, num_frames: int, codec: str = "libx264", gop: int = 8,
                        b_frames: int = 2, fps: int | Fraction = 25, audio: bool = False,
                        size: tuple[int, int] = (PATTERN_H, PATTERN_W), shift_audio_start: bool = False) -> Path:
    """Write a video whose frame k shows :func:`pattern_frame` (k), keyframe every ``gop`` frames; ``size`` is
    (height, width); ``fps`` may be a Fraction (``Fraction(30000, 1001)``: NTSC's 29.97); ``audio`` adds an aac
    stream of silence (as most UCF101 AVIs carry a sound track).

    With audio the muxer would by default shift every stream so that aac's priming samples start at 0, which
    delays the video's first frame by a few frame periods and makes an AVI's header count those periods as frames
    (header 43 for 40 frames): ``shift_audio_start`` keeps that (ffmpeg's default), otherwise timestamps are
    written as given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fps = Fraction(fps)
    height, width = size
    options = {"avoid_negative_ts": "disabled"} if audio and not shift_audio_start else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": str(b_frames)}
        elif b_frames:
            stream.codec_context.max_b_frames = b_frames
        audio_stream = None
        if audio:
            audio_stream = container.add_stream("aac", rate=8000)
        for k in range(num_frames):
            frame = av.VideoFrame.from_ndarray(pattern_frame(k, height, width), format="rgb24")
            frame.pts = k
            frame.time_base = 1 / fps
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio_stream is not None:
            _write_silence(container, audio_stream)
    return path


def _write_silence(container, stream, frames: int = 4) -> None:
    """Encode ``frames`` x 1024 samples of mono silence into an 8 kHz aac ``stream`` and flush it."""
    for i in range(frames):
        af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
        af.sample_rate = 8000
        af.pts = i * 1024
        for packet in stream.encode(af):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_audio_only(path: Path) -> Path:
    """An .avi-named file with one audio stream and no video stream."""
    with av.open(str(path), "w", format="matroska") as container:
        _write_silence(container, container.add_stream("aac", rate=8000))
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real UCF101 clips); skips when absent, as in a fresh clone.

    ``VIDEOCONTRAST_TEST_NO_SHARED=1`` hides it even where it exists, to see what a user's fresh clone runs:
    ``VIDEOCONTRAST_TEST_NO_SHARED=1 pytest -rs`` lists what skips there."""
    if os.environ.get("VIDEOCONTRAST_TEST_NO_SHARED"):
        pytest.skip("../shared/data hidden by VIDEOCONTRAST_TEST_NO_SHARED (as in a fresh clone)")
    if not (SHARED_DATA / "ucf101-mini").is_dir():
        pytest.skip(f"real UCF101 test clips not found at {SHARED_DATA} (only present in the project workspace)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def pattern_videos(tmp_path_factory) -> dict[str, Path]:
    """60-frame pattern videos: H.264 .mp4 (B-frames), MPEG-4 .avi (B-frames), H.264 .mkv (no frame-count header)."""
    d = tmp_path_factory.mktemp("pattern")
    return {
        "mp4": write_pattern_video(d / "p.mp4", 60, "libx264"),
        "avi": write_pattern_video(d / "p.avi", 60, "mpeg4"),
        "mkv": write_pattern_video(d / "p.mkv", 60, "libx264", audio=True),
    }


def shared_dir(*parts: str) -> Path | None:
    """``SHARED_DATA.parent/<parts>`` (e.g. ``shared_dir("data", "ucf101-mini")``) when it exists and is not hidden
    by ``VIDEOCONTRAST_TEST_NO_SHARED``, else None: for skip conditions outside the ``shared_data`` fixture."""
    path = SHARED_DATA.parent.joinpath(*parts)
    return None if os.environ.get("VIDEOCONTRAST_TEST_NO_SHARED") or not path.exists() else path


# A UCF101-layout tree (see ucf101_like): the first 8 classes of UCF101's classInd.txt, 3 of them on disk (the
# classes and classInd numbers of ../shared/data/ucf101-mini), the others listed in the split files only.
UCF_CLASSES = ["ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling", "BalanceBeam", "BandMarching",
               "BaseballPitch", "Basketball"]
# class -> {group: clips}; split 1's rule: groups 1-7 test, 8-25 train.
UCF_GROUPS = {"BalanceBeam": {1: 2, 2: 1, 8: 2, 9: 2, 10: 1},
              "BaseballPitch": {1: 1, 3: 2, 7: 1, 8: 3, 11: 2, 25: 1},
              "Basketball": {2: 2, 8: 1, 12: 2, 20: 2}}
UCF_ABSENT = {"ApplyEyeMakeup": {1: 1, 8: 2}, "ApplyLipstick": {2: 1, 9: 1}, "Archery": {8: 1},
              "BabyCrawling": {1: 1, 10: 1}, "BandMarching": {3: 2, 9: 1}}
UCF_SIZE = (60, 80)  # (height, width): UCF101's 4:3


@pytest.fixture(scope="session")
def ucf101_like(tmp_path_factory):
    """A tiny UCF101 download, as ../shared/data/ucf101-mini is laid out: ``videos/<Class>/v_<Class>_gXX_cYY.avi``
    (MPEG-4 Part 2 with B-frames and an aac sound track, 80x60, 25 fps and for Basketball 29.97 fps, 24 to about
    60 frames, pattern pictures: :func:`read_pattern` gives each frame's number) and
    ``ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt`` in the official format (CRLF, 1-based labels in
    the train list only), listing also videos of 5 classes that are not on disk (a partial download).

    Returns a namespace: ``root``, ``videos``, ``splits``, ``classes`` (8), ``present`` (3, sorted), ``train`` and
    ``test`` (class -> videos on disk), ``missing_train``/``missing_test`` (listed, not on disk), ``frames``
    (relative path -> frame count), ``fps`` (class -> fps)."""
    from types import SimpleNamespace

    root = tmp_path_factory.mktemp("ucf101-like") / "ucf101"
    videos, splits = root / "videos", root / "ucfTrainTestlist"
    splits.mkdir(parents=True)
    fps = {"BalanceBeam": 25, "BaseballPitch": 25, "Basketball": Fraction(30000, 1001)}
    train_lines, test_lines, frames = [], [], {}
    train, test = {c: 0 for c in UCF_GROUPS}, {c: 0 for c in UCF_GROUPS}
    missing = {"train": 0, "test": 0}
    n = 0
    for cls in UCF_CLASSES:
        groups = UCF_GROUPS.get(cls) or UCF_ABSENT[cls]
        for g, clips in sorted(groups.items()):
            for c in range(1, clips + 1):
                rel = f"{cls}/v_{cls}_g{g:02d}_c{c:02d}.avi"
                is_train = g >= 8
                if is_train:
                    train_lines.append(f"{rel} {UCF_CLASSES.index(cls) + 1}")
                else:
                    test_lines.append(rel)
                if cls not in UCF_GROUPS:
                    missing["train" if is_train else "test"] += 1
                    continue
                (train if is_train else test)[cls] += 1
                frames[rel] = 24 + (n * 7) % 37  # 24..60
                n += 1
                write_pattern_video(videos / rel, frames[rel], "mpeg4", gop=12, fps=fps[cls], audio=True,
                                    size=UCF_SIZE)
    crlf = "\r\n"
    (splits / "classInd.txt").write_bytes("".join(f"{i} {c}{crlf}" for i, c in enumerate(UCF_CLASSES, 1)).encode())
    (splits / "trainlist01.txt").write_bytes("".join(f"{x}{crlf}" for x in train_lines).encode())
    (splits / "testlist01.txt").write_bytes("".join(f"{x}{crlf}" for x in test_lines).encode())
    return SimpleNamespace(root=root, videos=videos, splits=splits, classes=list(UCF_CLASSES),
                           present=sorted(UCF_GROUPS), train=train, test=test, missing_train=missing["train"],
                           missing_test=missing["test"], frames=frames, fps=fps)


@pytest.fixture(scope="session")
def mp4_folder(tmp_path_factory) -> Path:
    """Laid out like ../shared/data/ucf101-tiny-mp4: ``ROOT/videos/<Class>/v_<Class>_gXX_cYY.mp4``, 5 classes x 2
    H.264 clips (B-frames, 64x48, 30 to 57 frames), the folder ``HandstandPushups`` holding ``v_HandStandPushups_*``
    files as in UCF101; ROOT (named ``tiny-mp4``) holds only ``videos/``. Returns ROOT."""
    root = tmp_path_factory.mktemp("mp4") / "tiny-mp4"
    for i, cls in enumerate(["CliffDiving", "HandstandPushups", "Knitting", "PlayingPiano", "Skijet"]):
        stem = "HandStandPushups" if cls == "HandstandPushups" else cls
        for c in (1, 2):
            write_pattern_video(root / "videos" / cls / f"v_{stem}_g0{i + 1}_c0{c}.mp4", 30 + 3 * (2 * i + c),
                                "libx264", gop=10, size=(48, 64))
    return root


def pytest_collection_modifyitems(config, items):
    """Slow tests (``@pytest.mark.slow``) run only when the marker expression names them: ``pytest -m slow``
    runs just those, ``pytest -m 'slow or not slow'`` everything; otherwise they are skipped, with the command."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: a long end-to-end run; `pytest -m slow` runs it")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)
