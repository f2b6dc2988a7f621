"""Frame-exact, seek-aware video decoding with PyAV.

The hot path of pretraining: read ~16-32 given frame indices of a clip, resized on decode,
without decoding the whole file.

A frame's index is its position in the decoder's output when the whole file is decoded from
the start (what a sequential decode shows, in order). Two properties of real UCF101 files shaped
the method (measured on the 392 clips of ucf101-mini):

* Xvid "packed bitstream" AVIs (B-frames) come out of the decoder in display order but with
  non-monotonic pts (1, 2, 4, 3, 5, 7, 6, ...), so mapping each frame by its pts would swap
  neighbours; frames are therefore *counted* in output order, and a timestamp only places the
  keyframe a seek lands on.
* Some AVIs hold "not coded" N-VOP packets (7 bytes) that yield no frame, so the header count
  overstates the frames (e.g. 96 vs 90) and a keyframe's pts is not its frame index.

So :func:`probe_video` demuxes the video packets once (no decoding; ~1 ms per UCF101 clip) and
records the exact frame count and, per keyframe, its frame index, pts and seek timestamp.
:func:`read_frames` seeks (backward) to the keyframe at or before ``min(indices)``, checks that
the first decoded frame is that keyframe (else it decodes from the start), counts forward,
converts only requested frames (swscale resize + RGB in one pass) and stops at ``max(indices)``.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from typing import Sequence

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

__all__ = ["VideoDecodeError", "VideoInfo", "VideoReader", "probe_video", "probe_frame_size", "read_frames",
           "output_size", "FITS"]

SizeArg = int | tuple[int, int] | None
# How a frame meets an (H, W) size: "stretch" resizes to exactly (H, W) (aspect not kept); "cover" keeps the
# aspect, resizes to the smallest size that covers (H, W) and centre-crops the overflow (never distorts,
# never pads).
FITS = ("stretch", "cover")

# MPEG-4 Part 2 N-VOP packets ("nothing changed") are 6-8 bytes: start code plus time stamp.
# Measured on ucf101-mini: without B-frames the decoder outputs nothing for them (36 of 392 clips
# have some), except the stream's last packet; in packed-bitstream files (B-frames, pts != dts) each one releases the B-frame
# packed into the previous packet, i.e. it does count as one frame.
_NVOP_MAX_BYTES = 8
_NVOP_CODECS = frozenset({"mpeg4", "msmpeg4v1", "msmpeg4v2", "msmpeg4", "h263", "h263p", "flv"})


class VideoDecodeError(RuntimeError):
    """A video file cannot be read: missing, zero-byte, corrupt, not a video, no video stream.

    Attributes:
        path: the file.
        reason: what went wrong, in words.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode video '{self.path}': {reason}")

    def __reduce__(self):  # keep path/reason when raised inside a DataLoader worker
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns about a file's first video stream.

    ``num_frames`` is the number of frames a sequential decode yields (counted from packets).
    The trailing fields are the seek table used by :func:`read_frames`; a hand-made
    ``VideoInfo(path, n, fps, w, h)`` is valid too (decoding then starts at the file's start).
    """

    path: str
    num_frames: int
    fps: float
    width: int
    height: int
    header_frames: int = 0  # what the container header claimed (0: nothing)
    truncated: bool = False  # the file ends before what its header announces (or mid-packet): see probe_video
    key_indices: tuple[int, ...] = field(default=(), repr=False)  # frame index of each keyframe
    key_pts: tuple[int | None, ...] = field(default=(), repr=False)  # its pts, checked after a seek
    key_seek_ts: tuple[int, ...] = field(default=(), repr=False)  # timestamp to seek to


def _open(path: str) -> av.container.InputContainer:
    """Open ``path`` for reading or raise :class:`VideoDecodeError` with a readable reason."""
    try:
        nbytes = os.path.getsize(path)
    except OSError as e:
        raise VideoDecodeError(path, f"cannot access file ({e.strerror})") from None
    if nbytes == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    try:
        return av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
        raise VideoDecodeError(path, f"not a readable media container ({e})") from None


def _video_stream(container: av.container.InputContainer, path: str) -> av.VideoStream:
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
        raise VideoDecodeError(path, f"no video stream (streams found: {kinds})")
    stream = container.streams.video[0]
    # Frame threading delays output by `thread_count` frames and starts a pool per open: slower
    # for 16-frame clips, and DataLoader workers already use every core (bench/bench_data.py).
    stream.thread_type = "SLICE"
    stream.codec_context.thread_count = 1
    return stream


def _stream_fps(stream: av.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return 0.0


def _nvops_yield_no_frame(stream: av.VideoStream, packets: list[tuple]) -> bool:
    if stream.codec_context.name not in _NVOP_CODECS:
        return False
    reordered = any(p is not None and d is not None and p != d for p, d, _, _ in packets)
    return not reordered


def _probe_open(container: av.container.InputContainer, path: str) -> VideoInfo:
    """Probe an open container; leaves its read position at the end of the file."""
    stream = _video_stream(container, path)
    width, height = stream.codec_context.width, stream.codec_context.height
    header = int(stream.frames or 0)

    # One demux pass, no decoding: exact frame count plus the keyframe seek table.
    packets: list[tuple[int | None, int | None, int, bool]] = []  # (pts, dts, size, keyframe)
    entries = 0  # every frame entry the container holds (dropped-frame and N-VOP entries too): what headers count
    cut = False
    try:
        for packet in container.demux(stream):
            if packet.size > 0 or packet.pts is not None:  # not the end-of-stream flush
                entries += 1
            if packet.size > 0:  # size 0: end-of-stream flush, or an AVI dropped-frame entry
                packets.append((packet.pts, packet.dts, packet.size, packet.is_keyframe))
    except av.FFmpegError:
        cut = True  # truncated/corrupt tail: the packets read so far are what can be decoded
    if _nvops_yield_no_frame(stream, packets):
        # ... except a trailing one, which the decoder's end-of-stream flush turns into a frame.
        packets = [p for p in packets[:-1] if p[2] > _NVOP_MAX_BYTES] + packets[-1:]
    if not packets:
        raise VideoDecodeError(path, "video stream contains no frames")
    if width <= 0 or height <= 0:
        raise VideoDecodeError(path, f"video stream has an invalid frame size {width}x{height}")

    # A keyframe's frame index is its rank among all packets' pts (right under B-frame
    # reordering); when some packet lacks a pts, use its decode-order position instead.
    all_pts = sorted(p[0] for p in packets if p[0] is not None)
    use_rank = len(all_pts) == len(packets)
    key_indices: list[int] = []
    key_pts: list[int | None] = []
    key_ts: list[int] = []
    for position, (pts, dts, _, is_key) in enumerate(packets):
        ts = dts if dts is not None else pts
        if not is_key or ts is None:
            continue
        index = bisect.bisect_left(all_pts, pts) if use_rank else position
        if key_indices and index <= key_indices[-1]:
            continue
        key_indices.append(index)
        key_pts.append(pts)
        key_ts.append(ts)

    fps = _stream_fps(stream)
    if fps <= 0 and stream.duration and stream.time_base:
        fps = len(packets) / float(stream.duration * stream.time_base)
    # A complete file holds every entry its header counts (all 392 ucf101-mini AVIs and 25 H.264 mp4s: exactly,
    # N-VOPs included); a cut one holds fewer (one entry of slack for a muxer that counts differently). A video
    # whose first frame starts late (ffmpeg shifts it past an audio codec's priming samples) has a header that
    # counts the frame periods before it too: those are not missing frames.
    lead = 0
    if all_pts and stream.time_base and fps > 0:
        lead = max(0, int(round(float((all_pts[0] - (stream.start_time or 0)) * stream.time_base) * fps)))
    short = header > 0 and entries + lead < header - 1
    return VideoInfo(
        path=path,
        num_frames=len(packets),
        fps=fps if fps > 0 else 25.0,
        width=width,
        height=height,
        header_frames=header,
        truncated=short or cut,
        key_indices=tuple(key_indices),
        key_pts=tuple(key_pts),
        key_seek_ts=tuple(key_ts),
    )


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, fps and size of a video's first video stream (audio is ignored).

    Args:
        path: a video file (any container/codec FFmpeg reads).

    Returns:
        :class:`VideoInfo`. ``num_frames`` counts demuxed packets (no decoding), so it is right
        when the header is missing (.mkv/.webm) or wrong (AVIs with N-VOPs or dropped frames).
        ``truncated`` is True when the file holds clearly fewer frame entries than its header
        announces (a cut download: an AVI cut at 30% says 125 frames and holds 28), or the
        demuxer stopped on a read error; the frames that are there still decode.

    Raises:
        VideoDecodeError: missing, zero-byte, corrupt, non-video, or no video stream.
    """
    path = os.fspath(path)
    container = _open(path)
    try:
        return _probe_open(container, path)
    finally:
        container.close()


def probe_frame_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of a video's first video stream from its container header only (no demuxing: about
    half a millisecond for a UCF101 AVI, whatever the file's length).

    Raises:
        VideoDecodeError: as :func:`probe_video`, or an invalid frame size.
    """
    path = os.fspath(path)
    container = _open(path)
    try:
        stream = _video_stream(container, path)
        height, width = stream.codec_context.height, stream.codec_context.width
    finally:
        container.close()
    if width <= 0 or height <= 0:
        raise VideoDecodeError(path, f"video stream has an invalid frame size {width}x{height}")
    return height, width


def output_size(height: int, width: int, size: SizeArg, fit: str = "stretch") -> tuple[int, int]:
    """(H, W) a frame is resized to: ``None`` native, int = short side (aspect kept), or (H, W).

    With ``fit="cover"`` and an (H, W) size, the frame keeps its aspect ratio and is resized to the smallest size
    that covers (H, W) (one side equal, the other at least as large); :func:`read_frames` then centre-crops it
    to (H, W). A frame whose aspect ratio already matches gives exactly (H, W).
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    if size is None:
        return height, width
    if isinstance(size, (int, np.integer)):
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        if height <= width:
            return int(size), max(1, round(width * size / height))
        return max(1, round(height * size / width)), int(size)
    h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if fit == "cover":
        if width * h >= w * height:  # the frame is at least as wide as the box: match heights
            return h, max(w, round(width * h / height))
        return max(h, round(height * w / width)), w
    return h, w


class VideoReader:
    """An open video: probe once, then read index sets, all through one container open.

    Example::

        with VideoReader(path) as video:          # probes unless `info` is given
            n = video.info.num_frames
            clip = video.read(np.arange(16), size=128)   # uint8 (16, 3, 128, 171)
    """

    def __init__(self, path: str | os.PathLike, info: VideoInfo | None = None) -> None:
        self.path = os.fspath(path)
        self._container = _open(self.path)
        try:
            self._stream = _video_stream(self._container, self.path)
            self.info = info if info is not None else _probe_open(self._container, self.path)
        except BaseException:
            self._container.close()
            raise
        self._at_start = info is not None  # probing leaves the read position at the end
        # One reformatter per file: frame.to_ndarray(width=, height=) builds a new swscale
        # context for every frame.
        self._reformatter = VideoReformatter()

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, indices: Sequence[int] | np.ndarray, size: SizeArg = None, fit: str = "stretch") -> torch.Tensor:
        """Frames at ``indices`` in the order given (duplicates allowed); see :func:`read_frames`.

        Returns:
            uint8 tensor, shape (len(indices), 3, H, W), RGB.
        """
        if isinstance(indices, torch.Tensor):
            indices = indices.cpu().numpy()
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0:
            raise ValueError(f"indices must be a non-empty 1-D sequence of frame numbers, got shape {idx.shape}")
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64)
        if idx.min() < 0:
            raise ValueError(f"frame indices must be >= 0, got {int(idx.min())} for {self.path}")
        idx = np.minimum(idx, max(self.info.num_frames - 1, 0))
        out_h, out_w = output_size(self.info.height, self.info.width, size, fit)

        wanted = np.unique(idx)  # sorted
        result = self._decode(wanted, out_h, out_w, seek=True)
        if result is None:  # the seek did not land on the expected keyframe: count from the start
            result = self._decode(wanted, out_h, out_w, seek=False)
        if result is None:
            raise VideoDecodeError(self.path, "no frame of the video stream decodes")
        got, last = result
        # Indices past the last frame that really decoded repeat it (headers lie).
        keys = np.minimum(idx, last)
        stack = np.stack([got[int(k)] for k in keys])  # (T, H, W, 3)
        if fit == "cover" and size is not None and not isinstance(size, (int, np.integer)):
            box_h, box_w = (int(s) for s in size)
            top, left = (out_h - box_h) // 2, (out_w - box_w) // 2
            stack = stack[:, top:top + box_h, left:left + box_w]
        return torch.from_numpy(stack).permute(0, 3, 1, 2).contiguous()  # (T, 3, H, W)

    def _seek_point(self, first: int) -> tuple[int, int | None, int] | None:
        """(frame index, pts, seek ts) of the last keyframe at or before ``first``, if known."""
        i = bisect.bisect_right(self.info.key_indices, first) - 1
        if i < 0:
            return None
        return self.info.key_indices[i], self.info.key_pts[i], self.info.key_seek_ts[i]

    def _decode(
        self, wanted: np.ndarray, out_h: int, out_w: int, seek: bool
    ) -> tuple[dict[int, np.ndarray], int] | None:
        """Decode from a keyframe (or the start) up to ``wanted[-1]``.

        Returns ({index: (H, W, 3) uint8} for the wanted indices reached and the last decoded
        one, last decoded index), or None when the seek check fails or nothing decodes.
        """
        point = self._seek_point(int(wanted[0])) if seek else None
        start, expect_pts = 0, None
        try:
            if point is not None:
                start, expect_pts, ts = point
                if not (start == 0 and self._at_start):
                    self._container.seek(ts, backward=True, any_frame=False, stream=self._stream)
            elif not self._at_start:
                self._container.seek(0, backward=True, any_frame=False, stream=self._stream)
        except av.FFmpegError:
            return None
        self._at_start = False

        wanted_set = set(wanted.tolist())
        last_wanted = int(wanted[-1])
        got: dict[int, np.ndarray] = {}
        k = start - 1
        last_frame = None
        anchor_pts = None
        try:
            for frame in self._container.decode(self._stream):
                if last_frame is None:  # the first frame must be the keyframe we aimed at
                    if expect_pts is not None and frame.pts is not None and frame.pts != expect_pts:
                        return None
                    anchor_pts = frame.pts
                elif anchor_pts is not None and frame.pts is not None and frame.pts < anchor_pts:
                    continue  # leading picture of an open GOP: shown before the keyframe
                k += 1
                last_frame = frame
                if k in wanted_set:
                    got[k] = self._to_rgb(frame, out_h, out_w)
                if k >= last_wanted:
                    break
        except av.FFmpegError:
            pass  # corrupt/truncated tail: keep what decoded; later indices clamp to it
        if last_frame is None:
            return None
        if k not in got:
            got[k] = self._to_rgb(last_frame, out_h, out_w)
        return got, k

    def _to_rgb(self, frame: av.VideoFrame, out_h: int, out_w: int) -> np.ndarray:
        rgb = self._reformatter.reformat(frame, width=out_w, height=out_h, format="rgb24", interpolation="BILINEAR")
        return rgb.to_ndarray()  # (H, W, 3)


def read_frames(
    path: str | os.PathLike,
    indices: Sequence[int] | np.ndarray | torch.Tensor,
    size: SizeArg = None,
    info: VideoInfo | None = None,
    fit: str = "stretch",
) -> torch.Tensor:
    """Decode the frames at ``indices`` of a video's first video stream, resized on decode.

    Only the stretch from the keyframe at or before ``min(indices)`` to ``max(indices)`` is
    decoded, and only requested frames are converted to RGB. Each wanted frame goes from the decoder's
    size straight to the output size in one swscale pass (colour conversion included), so a 4000x3000
    file costs the decoder's own frames plus small outputs, never a full-size RGB copy.

    Args:
        path: video file (audio is ignored).
        indices: 0-based frame indices, any order, duplicates allowed. Indices past the last
            decodable frame are clamped to it.
        size: None (native), int (short side, aspect kept) or (H, W).
        info: the file's :func:`probe_video` result, to skip probing (one demux pass).
        fit: with an (H, W) size: ``"stretch"`` (resize to exactly (H, W)) or ``"cover"`` (keep the aspect
            ratio, resize to cover (H, W), centre-crop the overflow); see :func:`output_size`.

    Returns:
        uint8 tensor, shape (len(indices), C=3, H, W), RGB, frames in the order given.

    Raises:
        VideoDecodeError: the file cannot be opened or no frame decodes.
        ValueError: ``indices`` is empty, not 1-D, not integer, or negative.
    """
    with VideoReader(path, info=info) as video:
        return video.read(indices, size=size, fit=fit)


def truncation_reason(info: VideoInfo) -> str:
    """What a truncated video's warning says: how many frames it claims and how many were read."""
    if info.header_frames > info.num_frames:
        return (f"its header says {info.header_frames} frames but only {info.num_frames} are in the file; "
                f"using those {info.num_frames}")
    return f"reading stopped on an error after {info.num_frames} frames; using those"
