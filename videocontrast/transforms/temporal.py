"""Temporal sampling and the two-view temporal transforms, on frame indices.

Everything here returns ``int64`` index arrays, never frames, so a dataset decodes only the frames it needs
(``data.decode.read_frames(path, indices)`` accepts duplicates and any order).

Thesis section 3 (videoSimCLR):

* **Random m** -- "We select m-consecutive frames starting from a random index. If the clip is shorter than
  m-frames, we loop until getting the desired number of frames." (:func:`random_m`)
* **Temporal transformation** -- from the sampled m-frame clip two views are made by one of: temporal shift
  (``RandomShift [-s, s]``, Fig. 3), frame dropping, reversing, shuffling. (:func:`temporal_views`)

Evaluation instead covers the whole video with evenly spaced clips (:func:`uniform_clips`).

The clip samplers at the end (:class:`TwoViews`, :class:`RandomClip`, :class:`UniformClips`, :class:`FirstClip`)
wrap these functions as the ``views_fn(num_frames, rng) -> list of index arrays`` that a
:class:`~videocontrast.data.datasets.VideoDataset` calls per item; they are frozen dataclasses so DataLoader
workers can pickle them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..names import TEMPORAL_TRANSFORMS

# Parameters every transform accepts, so one config dict can be passed whatever the transform is;
# `max_shift` only has an effect for `shift`.
_PARAMS = {"stride": 1, "max_shift": 8}


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _span(m: int, stride: int) -> int:
    """Frames covered from the first to the last sampled index of an m-frame clip."""
    return (m - 1) * stride + 1


def _clip_at(start: int, m: int, stride: int, num_frames: int) -> np.ndarray:
    """The m indices ``start, start+stride, ...`` if they fit, else the looped clip (see :func:`random_m`)."""
    if _span(m, stride) <= num_frames:
        return start + stride * np.arange(m, dtype=np.int64)
    return _looped(num_frames, m, stride)


def _looped(num_frames: int, m: int, stride: int) -> np.ndarray:
    """Clip for a video shorter than the strided span.

    The stride is first reduced to the largest one that fits (keeps frames in temporal order, so motion
    direction survives); only when even stride 1 does not fit is the video looped 0, 1, .., N-1, 0, 1, ..
    (thesis: "we loop until getting the desired number of frames"). Wrapping a strided index modulo N instead
    would scramble the frame order (N=3, stride 2: 0, 2, 1, 0).
    """
    if m <= 1:
        return np.zeros(m, dtype=np.int64)
    fit = (num_frames - 1) // (m - 1)
    if fit >= 1:
        return min(fit, stride) * np.arange(m, dtype=np.int64)
    return np.arange(m, dtype=np.int64) % num_frames


def random_m(num_frames: int, m: int, rng: np.random.Generator, stride: int = 1) -> np.ndarray:
    """"Random m": m frames (every ``stride``-th) from a uniformly random valid start.

    Args:
        num_frames: N, frames in the video (>= 1).
        m: frames in the clip (>= 1).
        rng: source of randomness (one ``integers`` draw when the video is long enough).
        stride: gap between consecutive sampled frames (>= 1).

    Returns:
        ``int64`` array of shape ``(m,)`` with values in ``[0, num_frames)``. A video shorter than the span
        ``(m - 1) * stride + 1`` is never dropped: the stride is reduced to fit, and if the video has fewer
        than m frames it is looped (0, 1, 2, 0, 1, 2, ...).
    """
    num_frames = _check_int("num_frames", num_frames, 1)
    m = _check_int("m (clip length)", m, 1)
    stride = _check_int("stride", stride, 1)
    span = _span(m, stride)
    if span > num_frames:
        return _looped(num_frames, m, stride)
    start = int(rng.integers(0, num_frames - span + 1))
    return _clip_at(start, m, stride, num_frames)


def _shifted(base: np.ndarray, num_frames: int, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Base clip moved by an integer offset drawn uniformly from ``[-s, s]`` restricted to the valid offsets.

    Offsets that would push the clip out of ``[0, num_frames)`` are excluded (the interval is clamped) rather
    than clamped after drawing, which would pile probability on the boundary offset and make identical views
    more likely for clips near the ends of the video.
    """
    # min/max rather than first/last: a looped clip (0, 1, 2, 0) is not monotonic.
    lo = max(-max_shift, -int(base.min()))
    hi = min(max_shift, num_frames - 1 - int(base.max()))
    return base + int(rng.integers(lo, hi + 1))


def temporal_views(
    name: str, num_frames: int, clip_len: int, generator: np.random.Generator, **params: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sample a base clip with Random m and make two views of it with one temporal transform.

    Args:
        name: one of :data:`TEMPORAL_TRANSFORMS`:
            ``none`` both views are the base clip;
            ``shift`` each view is the base clip moved by its own offset in ``[-max_shift, max_shift]``
            (thesis Fig. 3: N=12, m=4, s=4, clip 5..8, shift -1 -> 4..7, shift +3 -> 8..11), kept in the video;
            ``drop`` a 2m-frame window (looped if the video is shorter); one view takes the even positions,
            the other the odd ones, which is which at random;
            ``reverse`` one view is the clip, the other the clip reversed, which is which at random;
            ``shuffle`` two independent random permutations of the clip.
        num_frames: N, frames in the video (>= 1).
        clip_len: m, frames per view (>= 1).
        generator: ``numpy.random.Generator``; the result is a function of its state only.
        **params: ``stride`` (default 1, gap between sampled frames) and ``max_shift`` (default 8, used by
            ``shift`` only). Any other name raises.

    Returns:
        ``(idx_i, idx_j)``: two ``int64`` arrays of shape ``(clip_len,)`` with values in ``[0, num_frames)``.
    """
    if name not in TEMPORAL_TRANSFORMS:
        raise ValueError(f"unknown temporal transform {name!r}; valid choices: {', '.join(TEMPORAL_TRANSFORMS)}")
    unknown = sorted(set(params) - set(_PARAMS))
    if unknown:
        raise ValueError(
            f"unknown temporal transform parameter(s) {unknown} for {name!r}; valid parameters: "
            f"{', '.join(_PARAMS)}"
        )
    num_frames = _check_int("num_frames", num_frames, 1)
    clip_len = _check_int("clip_len", clip_len, 1)
    stride = _check_int("stride", params.get("stride", _PARAMS["stride"]), 1)
    max_shift = _check_int("max_shift", params.get("max_shift", _PARAMS["max_shift"]), 0)
    if not isinstance(generator, np.random.Generator):
        raise ValueError(f"generator must be a numpy.random.Generator, got {type(generator).__name__}")
    rng = generator

    if name == "drop":
        # The base clip is 2m frames here so each half keeps m frames at twice the frame gap.
        window = random_m(num_frames, 2 * clip_len, rng, stride)
        even, odd = window[0::2].copy(), window[1::2].copy()
        return (even, odd) if rng.random() < 0.5 else (odd, even)

    base = random_m(num_frames, clip_len, rng, stride)
    if name == "none":
        return base, base.copy()
    if name == "shift":
        return _shifted(base, num_frames, max_shift, rng), _shifted(base, num_frames, max_shift, rng)
    if name == "reverse":
        rev = base[::-1].copy()
        return (base, rev) if rng.random() < 0.5 else (rev, base)
    # shuffle
    return rng.permutation(base), rng.permutation(base)


def uniform_clips(num_frames: int, clip_len: int, num_clips: int, stride: int = 1) -> list[np.ndarray]:
    """Evenly spaced clips covering the video (deterministic; for evaluation).

    Args:
        num_frames: N, frames in the video (>= 1).
        clip_len: m, frames per clip (>= 1).
        num_clips: number of clips (>= 1). With one clip the centre clip is returned; with more, the first
            starts at frame 0, the last ends at the last frame, the others are evenly spaced in between.
        stride: gap between sampled frames (>= 1).

    Returns:
        ``num_clips`` ``int64`` arrays of shape ``(clip_len,)``, values in ``[0, num_frames)``. A video shorter
        than one clip's span gives the looped clip of :func:`random_m` each time.
    """
    num_frames = _check_int("num_frames", num_frames, 1)
    clip_len = _check_int("clip_len", clip_len, 1)
    num_clips = _check_int("num_clips", num_clips, 1)
    stride = _check_int("stride", stride, 1)
    last_start = num_frames - _span(clip_len, stride)
    if last_start < 0:
        return [_looped(num_frames, clip_len, stride) for _ in range(num_clips)]
    if num_clips == 1:
        starts = [last_start // 2]
    else:
        starts = np.rint(np.linspace(0, last_start, num_clips)).astype(np.int64).tolist()
    return [_clip_at(int(s), clip_len, stride, num_frames) for s in starts]


# ----------------------------------------------------------------------------- clip samplers (views_fn)


@dataclass(frozen=True)
class TwoViews:
    """Pretraining: Random m, then the temporal transform ``temporal`` -> two index arrays."""

    temporal: str
    clip_len: int
    max_shift: int
    stride: int

    def __call__(self, num_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
        params = {"stride": self.stride}
        if self.temporal == "shift":
            params["max_shift"] = self.max_shift
        return list(temporal_views(self.temporal, num_frames, self.clip_len, rng, **params))


@dataclass(frozen=True)
class RandomClip:
    """Supervised training and fine-tuning: one Random m clip per video."""

    clip_len: int
    stride: int

    def __call__(self, num_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
        return [random_m(num_frames, self.clip_len, rng, stride=self.stride)]


@dataclass(frozen=True)
class UniformClips:
    """Evaluation: ``num_clips`` evenly spaced clips per video (deterministic)."""

    clip_len: int
    num_clips: int
    stride: int

    def __call__(self, num_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
        return uniform_clips(num_frames, self.clip_len, self.num_clips, stride=self.stride)


@dataclass(frozen=True)
class FirstClip:
    """A dataset's default: one view of the first ``clip_len`` frames, looped if the video is shorter."""

    clip_len: int = 16

    def __call__(self, num_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
        return [np.arange(self.clip_len, dtype=np.int64) % max(num_frames, 1)]
