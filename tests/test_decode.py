"""read_frames/probe_video against videos whose pictures encode their own frame number, and against a
plain sequential PyAV decode (the independent reference) of generated clips and of real UCF101 clips."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import PATTERN_H, PATTERN_W, read_pattern, write_audio_only, write_pattern_video
from videocontrast.data.decode import VideoDecodeError, VideoInfo, probe_video, read_frames

INDEX_SETS = {
    "sorted": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    "unsorted": [37, 5, 20, 21, 9],
    "duplicates": [3, 3, 50, 3, 50],
    "late_start": list(range(44, 60)),  # needs a seek past several keyframes
    "mid_gop": [27, 29, 31],  # starts between keyframes
    "last": [59],
    "strided": list(range(1, 60, 4)),
}


def _numbers(clip: torch.Tensor) -> list[int]:
    return [read_pattern(f.numpy()) for f in clip]


@pytest.mark.parametrize("kind", ["mp4", "avi", "mkv"])
def test_probe_counts_frames(pattern_videos, kind):
    info = probe_video(pattern_videos[kind])
    assert isinstance(info, VideoInfo)
    assert (info.num_frames, info.width, info.height) == (60, PATTERN_W, PATTERN_H)
    assert info.fps == pytest.approx(25.0)


@pytest.mark.parametrize("kind", ["mp4", "avi", "mkv"])
@pytest.mark.parametrize("name", sorted(INDEX_SETS))
def test_read_frames_returns_exactly_the_requested_frames(pattern_videos, kind, name):
    indices = INDEX_SETS[name]
    path = pattern_videos[kind]
    for info in (None, probe_video(path)):
        clip = read_frames(path, indices, info=info)
        assert clip.dtype == torch.uint8 and clip.shape == (len(indices), 3, PATTERN_H, PATTERN_W)
        assert _numbers(clip) == indices


@pytest.mark.parametrize("kind", ["mp4", "avi"])
def test_indices_past_the_end_are_clamped_to_the_last_frame(pattern_videos, kind):
    path = pattern_videos[kind]
    # A VideoInfo whose count is too large, as from a lying header.
    real = probe_video(path)
    lying = VideoInfo(str(path), 100, real.fps, real.width, real.height)
    assert _numbers(read_frames(path, [58, 70, 99], info=lying)) == [58, 59, 59]
    assert _numbers(read_frames(path, [61, 75])) == [59, 59]


def test_size_int_is_short_side_and_tuple_is_exact(pattern_videos):
    path = pattern_videos["mp4"]  # 64 x 32 (W x H)
    clip = read_frames(path, [4, 40], size=16)
    assert clip.shape == (2, 3, 16, 32)  # short side 16, aspect 2:1 kept
    assert _numbers(clip) == [4, 40]
    clip = read_frames(path, [4, 40], size=(24, 40))
    assert clip.shape == (2, 3, 24, 40)
    assert _numbers(clip) == [4, 40]


def test_bad_indices_raise_value_error(pattern_videos):
    with pytest.raises(ValueError):
        read_frames(pattern_videos["mp4"], [])
    with pytest.raises(ValueError):
        read_frames(pattern_videos["mp4"], [-1, 2])


def test_bad_files_raise_video_decode_error_naming_the_file(tmp_path, pattern_videos):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.avi"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    audio = write_audio_only(tmp_path / "audio.avi")
    truncated = tmp_path / "truncated.mp4"  # mp4 index (moov) is at the end: cut it off
    truncated.write_bytes(pattern_videos["mp4"].read_bytes()[:600])
    missing = tmp_path / "missing.mp4"
    for path in (empty, noise, text, audio, truncated, missing):
        with pytest.raises(VideoDecodeError) as err:
            read_frames(path, [0])
        assert err.value.path == str(path) and str(path) in str(err.value) and err.value.reason
        with pytest.raises(VideoDecodeError):
            probe_video(path)
    with pytest.raises(VideoDecodeError, match="video stream"):
        probe_video(audio)


def _sequential(path) -> np.ndarray:
    """Reference: decode every frame of the video stream in order with plain PyAV. (N, 3, H, W)."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24").transpose(2, 0, 1) for f in container.decode(video=0)])


# Real clips chosen for their quirks: packed B-frames with out-of-order pts, N-VOP packets (header frame count
# larger than the decodable frames), many keyframes (seeks happen), a long clip; and H.264 mp4s.
REAL_CLIPS = [
    "ucf101-mini/videos/BalanceBeam/v_BalanceBeam_g01_c01.avi",
    "ucf101-mini/videos/Basketball/v_Basketball_g16_c04.avi",
    "ucf101-mini/videos/Basketball/v_Basketball_g23_c04.avi",
    "ucf101-mini/videos/Basketball/v_Basketball_g12_c01.avi",
    "ucf101-mini/videos/Basketball/v_Basketball_g16_c05.avi",
    "ucf101-tiny-mp4/videos/HandstandPushups/v_HandStandPushups_g03_c02.mp4",
    "ucf101-tiny-mp4/videos/CliffDiving/v_CliffDiving_g03_c02.mp4",
]


def _check_against_sequential(path, label: str, pattern: bool = False) -> None:
    full = _sequential(path)
    n = len(full)
    info = probe_video(path)
    assert info.num_frames == n, "frame count must equal the number of frames a sequential decode yields"
    assert (info.height, info.width) == full.shape[2:]
    if pattern:  # the reference itself gives frames 0..n-1 in order
        assert [read_pattern(f) for f in full] == list(range(n))
    rng = np.random.default_rng(0)
    starts = {0, n - 16, n // 2, n // 3 + 5, *rng.integers(0, n - 16, 4).tolist()}
    for a in sorted(starts):
        indices = np.arange(a, a + 16)
        clip = read_frames(path, indices, info=info).numpy()
        np.testing.assert_array_equal(clip, full[indices], err_msg=f"{label} frames {a}..{a + 15}")
    picks = rng.integers(0, n, 6)
    np.testing.assert_array_equal(read_frames(path, picks).numpy(), full[picks])


@pytest.fixture(scope="module")
def codec_clips(tmp_path_factory, ucf101_like) -> dict[str, Path]:
    """Generated stand-ins for the real clips' kinds: an AVI of the UCF101-like tree (MPEG-4 Part 2, B-frames,
    aac audio), a longer 29.97 fps one with a keyframe every 5 frames (many seeks), H.264 mp4 with B-frames."""
    d = tmp_path_factory.mktemp("codecs")
    return {
        "ucf101_like_avi": ucf101_like.videos / "BaseballPitch" / "v_BaseballPitch_g08_c01.avi",
        "avi_many_keyframes": write_pattern_video(d / "k.avi", 90, "mpeg4", gop=5, fps=Fraction(30000, 1001),
                                                  audio=True, size=(60, 80)),
        "mp4_bframes": write_pattern_video(d / "b.mp4", 75, "libx264", gop=12, b_frames=3, size=(48, 64)),
    }


@pytest.mark.parametrize("kind", ["ucf101_like_avi", "avi_many_keyframes", "mp4_bframes"])
def test_generated_clips_match_a_full_sequential_decode(codec_clips, kind):
    _check_against_sequential(codec_clips[kind], kind, pattern=True)


def test_real_clips_match_a_full_sequential_decode(shared_data):
    """The real clips, for their quirks (packed B-frames, N-VOPs) that generated files do not have."""
    absent = [rel for rel in REAL_CLIPS if not (shared_data / rel).is_file()]
    assert not absent, f"real clips missing under {shared_data}: {absent}"
    for rel in REAL_CLIPS:
        _check_against_sequential(shared_data / rel, rel)


def test_avi_short_side_resize(tmp_path):
    path = write_pattern_video(tmp_path / "ucf.avi", 12, "mpeg4", audio=True, size=(240, 320))  # UCF101's size
    clip = read_frames(path, [0, 8], size=128)
    assert clip.shape == (2, 3, 128, 171)  # 320x240 -> short side 128
    assert _numbers(clip) == [0, 8]
    # Resizing the native frame with a generic bilinear filter gives nearly the same picture.
    native = read_frames(path, [0, 8]).float()
    ref = torch.nn.functional.interpolate(native, size=(128, 171), mode="bilinear", antialias=True)
    assert (clip.float() - ref).abs().mean() < 4.0


def test_cover_fit_keeps_the_aspect_and_never_pads():
    from videocontrast.data.decode import output_size

    # A frame of the box's own aspect ratio is resized exactly to the box (320x240 and 640x480 -> 171x128).
    assert output_size(240, 320, (128, 171), "cover") == (128, 171)
    assert output_size(480, 640, (128, 171), "cover") == (128, 171)
    # Others cover the box (then read_frames centre-crops): portrait, square, wide and huge frames.
    assert output_size(320, 240, (128, 171), "cover") == (228, 171)
    assert output_size(64, 64, (128, 171), "cover") == (171, 171)
    assert output_size(1080, 1920, (128, 171), "cover") == (128, 228)
    assert output_size(3000, 4000, (24, 32), "cover") == (24, 32)
    assert output_size(320, 240, (128, 171)) == (128, 171)  # the default still stretches
    with pytest.raises(ValueError, match="fit"):
        output_size(240, 320, (128, 171), "pad")
