"""Temporal sampling and two-view transforms, checked against the thesis definitions (section 3, Fig. 3)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from videocontrast.transforms.temporal import TEMPORAL_TRANSFORMS, random_m, temporal_views, uniform_clips

frames = st.integers(1, 300)
clip_lens = st.integers(1, 32)
seeds = st.integers(0, 2**32 - 1)
FAST = settings(max_examples=150, deadline=None)


def views(name, n, m, seed, **kw):
    return temporal_views(name, n, m, np.random.default_rng(seed), **kw)


def consecutive_from(idx: np.ndarray, stride: int = 1) -> bool:
    return bool(np.all(np.diff(idx) == stride))


# ---------------------------------------------------------------- Random m


@FAST
@given(frames, clip_lens, st.integers(1, 4), seeds)
def test_random_m_shape_range_and_contiguity(n, m, stride, seed):
    idx = random_m(n, m, np.random.default_rng(seed), stride=stride)
    assert idx.dtype == np.int64 and idx.shape == (m,)
    assert idx.min() >= 0 and idx.max() < n
    if (m - 1) * stride + 1 <= n:
        assert consecutive_from(idx, stride)


@FAST
@given(st.integers(1, 31), st.integers(2, 32))
def test_random_m_loops_short_videos(n, m):
    if m <= n:
        m = n + 1
    idx = random_m(n, m, np.random.default_rng(0))
    # Thesis: "we loop until getting the desired number of frames": 0, 1, .., N-1, 0, 1, ..
    np.testing.assert_array_equal(idx, [k % n for k in range(m)])


def test_random_m_strided_short_video_keeps_order():
    # 10 frames cannot hold 4 frames at stride 4 (span 13): the stride shrinks to 3, frames stay ordered.
    np.testing.assert_array_equal(random_m(10, 4, np.random.default_rng(0), stride=4), [0, 3, 6, 9])


def test_random_m_start_is_uniform():
    rng = np.random.default_rng(1)
    starts = np.array([random_m(10, 4, rng)[0] for _ in range(3500)])
    counts = np.bincount(starts, minlength=7)
    assert counts.shape == (7,)  # valid starts are exactly 0..6
    assert counts.min() > 400 and counts.max() < 600  # 500 expected each


@pytest.mark.parametrize("bad", [0, -3])
def test_random_m_rejects_empty_video(bad):
    with pytest.raises(ValueError, match="num_frames"):
        random_m(bad, 4, np.random.default_rng(0))


# ---------------------------------------------------------------- all transforms


@FAST
@given(st.sampled_from(TEMPORAL_TRANSFORMS), frames, clip_lens, st.integers(0, 16), st.integers(1, 3), seeds)
def test_every_view_has_length_dtype_and_range(name, n, m, s, stride, seed):
    a, b = views(name, n, m, seed, max_shift=s, stride=stride)
    for v in (a, b):
        assert v.dtype == np.int64 and v.shape == (m,)
        assert v.min() >= 0 and v.max() < n


@FAST
@given(st.sampled_from(TEMPORAL_TRANSFORMS), frames, clip_lens, seeds)
def test_deterministic_given_seed(name, n, m, seed):
    a1, b1 = views(name, n, m, seed)
    a2, b2 = views(name, n, m, seed)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(b1, b2)


def test_unknown_name_and_params_raise_with_choices():
    with pytest.raises(ValueError, match="shift.*drop.*reverse.*shuffle"):
        views("jitter", 10, 4, 0)
    with pytest.raises(ValueError, match="max_shift"):
        views("shift", 10, 4, 0, max_step=3)
    with pytest.raises(ValueError, match="max_shift"):
        views("shift", 10, 4, 0, max_shift=-1)
    with pytest.raises(ValueError, match="clip_len"):
        views("none", 10, 0, 0)


# ---------------------------------------------------------------- none


@FAST
@given(frames, clip_lens, seeds)
def test_none_gives_the_same_clip(n, m, seed):
    a, b = views("none", n, m, seed)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- shift


@FAST
@given(frames, clip_lens, st.integers(0, 16), seeds)
def test_shift_is_base_plus_bounded_offset(n, m, s, seed):
    # "none" with the same seed exposes the base clip (both sample it first with Random m).
    base, _ = views("none", n, m, seed)
    a, b = views("shift", n, m, seed, max_shift=s)
    for v in (a, b):
        d = v - base
        assert np.all(d == d[0]), "a shifted view moves the whole clip by one offset"
        assert abs(int(d[0])) <= s
        if m > n:  # looped clip of a short video stays as it is
            assert d[0] == 0


def test_shift_reaches_both_ends_of_the_interval():
    # Video long enough that most clips never touch the ends: every offset in [-2, 2] should appear.
    offsets = []
    for seed in range(2000):
        base, _ = views("none", 100, 4, seed)
        a, b = views("shift", 100, 4, seed, max_shift=2)
        offsets += [int(a[0] - base[0]), int(b[0] - base[0])]
    values, counts = np.unique(offsets, return_counts=True)
    assert values.tolist() == [-2, -1, 0, 1, 2]
    assert np.all(np.abs(counts / len(offsets) - 0.2) < 0.03)  # uniform: 800 expected each, sd ~18


def test_shift_offsets_are_independent_per_view():
    # Each view draws its own offset: with 5 equally likely offsets the views coincide ~1/5 of the time.
    same = np.mean([np.array_equal(*views("shift", 100, 4, seed, max_shift=2)) for seed in range(1000)])
    assert 0.15 < same < 0.25


def test_shift_thesis_figure_3():
    # N=12, m=4, s=4. Among seeds whose base clip is frames 5..8, the views are 5..8 shifted by d in [-4, 3]
    # (+4 would leave the video); Fig. 3's shift -1 (4..7) and shift +3 (8..11) both occur.
    seen = set()
    for seed in range(3000):
        base, _ = views("none", 12, 4, seed)
        if base[0] != 5:
            continue
        np.testing.assert_array_equal(base, [5, 6, 7, 8])
        for v in views("shift", 12, 4, seed, max_shift=4):
            seen.add(tuple(int(x) for x in v))
    assert (4, 5, 6, 7) in seen and (8, 9, 10, 11) in seen
    assert seen == {tuple(range(5 + d, 9 + d)) for d in range(-4, 4)}


# ---------------------------------------------------------------- drop


@FAST
@given(st.integers(64, 300), clip_lens, seeds)
def test_drop_splits_a_2m_window_into_even_and_odd(n, m, seed):
    a, b = views("drop", n, m, seed)
    union = np.sort(np.concatenate([a, b]))
    assert consecutive_from(union) and union.size == 2 * m
    even, odd = (a, b) if a[0] < b[0] else (b, a)
    np.testing.assert_array_equal(even, union[0::2])
    np.testing.assert_array_equal(odd, union[1::2])


def test_drop_assigns_even_and_odd_both_ways():
    firsts = {bool(views("drop", 50, 4, seed)[0][0] < views("drop", 50, 4, seed)[1][0]) for seed in range(50)}
    assert firsts == {True, False}


def test_drop_loops_short_video():
    a, b = views("drop", 5, 4, 0)  # window 0,1,2,3,4,0,1,2
    assert {tuple(a), tuple(b)} == {(0, 2, 4, 1), (1, 3, 0, 2)}


# ---------------------------------------------------------------- reverse


@FAST
@given(frames, clip_lens, seeds)
def test_reverse_views_are_mirror_images(n, m, seed):
    a, b = views("reverse", n, m, seed)
    np.testing.assert_array_equal(a, b[::-1])


def test_reverse_both_orders_occur():
    forward_first = {bool(views("reverse", 50, 4, seed)[0][0] < views("reverse", 50, 4, seed)[0][-1])
                     for seed in range(50)}
    assert forward_first == {True, False}


# ---------------------------------------------------------------- shuffle


@FAST
@given(frames, clip_lens, seeds)
def test_shuffle_views_are_permutations_of_the_clip(n, m, seed):
    base, _ = views("none", n, m, seed)
    a, b = views("shuffle", n, m, seed)
    np.testing.assert_array_equal(np.sort(a), np.sort(base))
    np.testing.assert_array_equal(np.sort(b), np.sort(base))


def test_shuffle_views_differ_in_order():
    differ = sum(not np.array_equal(*views("shuffle", 100, 8, seed)) for seed in range(100))
    assert differ > 95  # equal only with prob 1/8! per draw


# ---------------------------------------------------------------- uniform clips


def test_uniform_clips_hand_worked():
    clips = uniform_clips(20, 4, 3)
    np.testing.assert_array_equal(np.stack(clips), [[0, 1, 2, 3], [8, 9, 10, 11], [16, 17, 18, 19]])
    np.testing.assert_array_equal(uniform_clips(20, 4, 1)[0], [8, 9, 10, 11])  # centre clip
    np.testing.assert_array_equal(uniform_clips(3, 5, 2)[1], [0, 1, 2, 0, 1])  # looped


@FAST
@given(frames, clip_lens, st.integers(1, 10), st.integers(1, 3))
def test_uniform_clips_cover_video_in_order(n, m, k, stride):
    clips = uniform_clips(n, m, k, stride=stride)
    assert len(clips) == k
    for c in clips:
        assert c.dtype == np.int64 and c.shape == (m,) and c.min() >= 0 and c.max() < n
    span = (m - 1) * stride + 1
    if span <= n and k > 1:
        starts = [int(c[0]) for c in clips]
        assert starts[0] == 0 and clips[-1][-1] == n - 1
        assert starts == sorted(starts)
