"""Shared fixtures: the real UCF101 clips in ../shared/data and tiny generated videos.

Generated videos carry their frame number in the picture (see :func:`pattern_frame`), so a test can
read back which frame a decoder returned, independently of the decoder under test.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# 8 bits -> 8 blocks of 16x16 pixels in a 64x32 frame: black/white blocks survive lossy coding.
_BLOCK, _COLS, _ROWS = 16, 4, 2
PATTERN_H, PATTERN_W = _BLOCK * _ROWS, _BLOCK * _COLS


def pattern_frame(k: int) -> np.ndarray:
    """Frame ``k`` of a test video: uint8 (32, 64, 3), block b is white iff bit b of k is set."""
    bits = [(k >> b) & 1 for b in range(_ROWS * _COLS)]
    grid = np.array(bits, dtype=np.uint8).reshape(_ROWS, _COLS) * 220 + 16
    return np.repeat(np.repeat(grid, _BLOCK, 0), _BLOCK, 1)[..., None].repeat(3, axis=2)


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
                        b_frames: int = 2, fps: int = 25, audio: bool = False) -> Path:
    """Write a video whose frame k shows :func:`pattern_frame` (k), keyframe every ``gop`` frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = PATTERN_W, PATTERN_H
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
            frame = av.VideoFrame.from_ndarray(pattern_frame(k), format="rgb24")
            frame.pts = k
            frame.time_base = Fraction(1, fps)
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
    """../shared/data (real UCF101 clips); skips when absent, as in a fresh clone."""
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


def pytest_collection_modifyitems(config, items):
    """Slow tests (``@pytest.mark.slow``) run only when the marker expression names them: ``pytest -m slow``
    runs just those, ``pytest -m 'slow or not slow'`` everything; otherwise they are skipped, with the command."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: a long end-to-end run; `pytest -m slow` runs it")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)
