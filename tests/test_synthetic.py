"""Synthetic motion dataset: class = motion only, checked with the tests' own motion estimators."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

import videocontrast.data.synthetic as synthetic
from videocontrast.data.synthetic import SYNTHETIC_CLASSES, generate_synthetic, render_clip

TRANSLATION = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def clean(label, seed, num_frames=16, size=64, **kw):
    """One class-motion object, no distractors, no noise; returns (clip, mask)."""
    kw = {"distractors": False, "noise": False, "num_objects": 1, "return_mask": True, **kw}
    return render_clip(label, np.random.default_rng(seed), num_frames, size, **kw)


def best_translation(a: np.ndarray, b: np.ndarray, reach: int = 12) -> tuple[int, int]:
    """Integer (dx, dy) maximising the overlap of mask ``a`` shifted on the torus with mask ``b``."""
    scores = {
        (dx, dy): np.count_nonzero(np.roll(a, (dy, dx), axis=(0, 1)) & b)
        for dx in range(-reach, reach + 1)
        for dy in range(-reach, reach + 1)
    }
    return max(scores, key=scores.get)


def best_rotation(f0: np.ndarray, f1: np.ndarray, m0: np.ndarray, m1: np.ndarray) -> float:
    """Angle (rad, positive = clockwise on screen since y points down) best mapping frame f0 onto f1.

    Nearest-neighbour resampling about the object's centroid; compares colours on the object's pixels.
    """
    ys, xs = np.nonzero(m1)
    cy, cx = np.argwhere(m0).mean(0) + 0.5
    px, py = xs + 0.5 - cx, ys + 0.5 - cy
    target = f1[ys, xs].astype(np.float32)
    errors = {}
    for theta in np.linspace(-0.5, 0.5, 51):
        # source of an output pixel p: c + R(-theta) (p - c)
        sx = cx + np.cos(theta) * px + np.sin(theta) * py
        sy = cy - np.sin(theta) * px + np.cos(theta) * py
        ix = np.clip(np.floor(sx).astype(int), 0, f0.shape[1] - 1)
        iy = np.clip(np.floor(sy).astype(int), 0, f0.shape[0] - 1)
        errors[theta] = np.abs(f0[iy, ix].astype(np.float32) - target).mean()
    return float(min(errors, key=errors.get))


# ---------------------------------------------------------------- render_clip


@pytest.mark.parametrize("label", SYNTHETIC_CLASSES)
def test_render_shape_dtype_and_determinism(label):
    a = render_clip(label, np.random.default_rng(7), 8, 32)
    b = render_clip(label, np.random.default_rng(7), 8, 32)
    c = render_clip(label, np.random.default_rng(8), 8, 32)
    assert a.dtype == np.uint8 and a.shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_render_accepts_index_and_rejects_unknown():
    np.testing.assert_array_equal(
        render_clip(1, np.random.default_rng(0), 4, 16), render_clip("right", np.random.default_rng(0), 4, 16)
    )
    with pytest.raises(ValueError, match="left"):
        render_clip("jump", np.random.default_rng(0), 4, 16)
    with pytest.raises(ValueError, match="size"):
        render_clip("left", np.random.default_rng(0), 4, 4)


@pytest.mark.parametrize("label", list(TRANSLATION))
def test_translation_direction(label):
    want = TRANSLATION[label]
    for seed in range(4):
        _, mask = clean(label, seed)
        dx, dy = best_translation(mask[0], mask[2])
        # 2 frames at 0.03-0.05 of 64 px per frame: 3.8-6.4 px along the class direction, none across it.
        assert (np.sign(dx), np.sign(dy)) == want, (seed, dx, dy)
        assert 3 <= abs(dx + dy) <= 7


def test_reversed_left_moves_right():
    for seed in range(4):
        _, mask = clean("left", seed)
        rev = mask[::-1]
        dx, dy = best_translation(rev[0], rev[4])
        assert dx > 0 and dy == 0


@pytest.mark.parametrize("label,sign", [("grow", 1), ("shrink", -1)])
def test_scaling_changes_area_monotonically(label, sign):
    for seed in range(4):
        _, mask = clean(label, seed, num_objects=2)
        area = mask.sum((1, 2)).astype(float)
        assert np.all(sign * np.diff(area) >= 0), area  # scaled shapes are nested sets
        big, small = (area[-1], area[0]) if sign > 0 else (area[0], area[-1])
        assert big >= 2 * small  # >= exp(2 * 0.03 * 15) = 2.46 expected


@pytest.mark.parametrize("label,sign", [("rotate_cw", 1), ("rotate_ccw", -1)])
def test_rotation_direction(label, sign):
    for seed in range(3):
        clip, mask = clean(label, seed)
        for t in (0, 6):
            theta = best_rotation(clip[t], clip[t + 1], mask[t], mask[t + 1])
            # one frame at 0.15-0.25 rad per frame
            assert 0.1 <= sign * theta <= 0.32, (seed, t, theta)
        # the object stays in place and keeps its size
        assert abs(mask[0].sum() - mask[-1].sum()) <= 0.15 * mask[0].sum()


def test_distractors_do_not_hide_the_class_motion():
    # With distractors on, the dominant (largest) moving object still defines the class.
    hits = 0
    for seed in range(6):
        _, mask = render_clip("right", np.random.default_rng(seed), 16, 64, return_mask=True)
        dx, dy = best_translation(mask[0], mask[4])
        hits += dx > 0 and dy == 0
    assert hits == 6


def test_appearance_is_independent_of_class():
    """Per-clip colour statistics must not depend on the class.

    Two checks on mean and std RGB of 8 x 40 clips: a nearest-class-mean classifier is near chance (1/8), and
    a one-way ANOVA F statistic per feature stays below the F(7, 312) critical value for p = 1e-4 (~4.4),
    which catches even a 5%-per-class brightness drift that the classifier alone would miss.
    """

    def features(label, seed):
        clip = render_clip(label, np.random.default_rng(seed), 8, 32).astype(np.float32)
        return np.concatenate([clip.mean((0, 1, 2)), clip.std((0, 1, 2))])

    n, k = 40, len(SYNTHETIC_CLASSES)
    x = np.array([[features(c, 1000 * j + i) for i in range(n)] for j, c in enumerate(SYNTHETIC_CLASSES)])
    half = n // 2
    means = x[:, :half].mean(1)  # (classes, features), fitted on the first half
    test = x[:, half:].reshape(-1, x.shape[-1])
    labels = np.repeat(np.arange(k), n - half)
    pred = np.argmin(((test[:, None] - means[None]) ** 2).sum(-1), axis=1)
    acc = (pred == labels).mean()
    assert acc < 0.25, acc  # chance 0.125, sd ~0.026 with 160 test clips

    class_means = x.mean(1)
    between = n * ((class_means - x.mean((0, 1))) ** 2).sum(0) / (k - 1)
    within = ((x - class_means[:, None]) ** 2).sum((0, 1)) / (k * n - k)
    assert np.all(between / within < 4.4), between / within


# ---------------------------------------------------------------- generate_synthetic

TINY = {"videos_per_class": 2, "num_frames": 8, "size": 32}


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_generate_writes_tree_and_decodable_videos(tmp_path):
    root = generate_synthetic(tmp_path / "syn", seed=3, **TINY)
    assert root == tmp_path / "syn"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.mp4"))
    expected = sorted(
        [f"train/{c}/{c}_0.mp4" for c in SYNTHETIC_CLASSES] + [f"test/{c}/{c}_1.mp4" for c in SYNTHETIC_CLASSES]
    )
    assert files == expected
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["classes"] == SYNTHETIC_CLASSES and meta["seed"] == 3 and meta["num_frames"] == 8
    video = decode(root / "train/right/right_0.mp4")
    assert video.shape == (8, 32, 32, 3)
    # the file holds the clip rendered from rng([seed, class index, i]), up to lossy coding
    want = render_clip("right", np.random.default_rng([3, SYNTHETIC_CLASSES.index("right"), 0]), 8, 32)
    assert np.abs(video.astype(float) - want).mean() < 6
    assert not any(p.name.startswith(".syn") for p in tmp_path.iterdir())  # no temp dirs left


def test_generate_is_idempotent_and_regenerates_on_change(tmp_path):
    root = generate_synthetic(tmp_path / "syn", **TINY)
    stamp = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    before = decode(root / "test/grow/grow_1.mp4")
    generate_synthetic(tmp_path / "syn", **TINY)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == stamp

    generate_synthetic(tmp_path / "syn", seed=1, **TINY)
    assert json.loads((root / "synthetic.json").read_text())["seed"] == 1
    assert not np.array_equal(decode(root / "test/grow/grow_1.mp4"), before)


def test_interrupted_generation_leaves_no_complete_looking_dataset(tmp_path, monkeypatch):
    real = synthetic._write_video
    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # e.g. the user pressing Ctrl-C mid-run
        real(*args)

    monkeypatch.setattr(synthetic, "_write_video", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(tmp_path / "syn", **TINY)
    assert not (tmp_path / "syn").exists()
    monkeypatch.setattr(synthetic, "_write_video", real)
    root = generate_synthetic(tmp_path / "syn", **TINY)
    assert len(list(root.rglob("*.mp4"))) == 16


def test_generate_refuses_foreign_folder_and_bad_params(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="synthetic.json"):
        generate_synthetic(tmp_path / "mine", **TINY)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="size"):
        generate_synthetic(tmp_path / "x", videos_per_class=2, num_frames=8, size=33)
    with pytest.raises(ValueError, match="test_fraction"):
        generate_synthetic(tmp_path / "x", test_fraction=1.5, **TINY)


def _decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_the_same_clip_encodes_to_the_same_pixels_every_time(tmp_path):
    # x264's macroblock-tree rate control (on at preset medium) gave other pixels on later encodes in one process
    # at the demo's 64x64 size (up to 43 levels apart; 309 of the demo's 320 videos differed between two
    # generations), so the demo's own dataset, and its figures, changed from run to run.
    codec = synthetic._codec()
    clip = render_clip("left", np.random.default_rng([0, 0, 3]), 32, 64)
    first = None
    for k in range(8):
        path = tmp_path / f"v{k}.mp4"
        synthetic._write_video(path, clip, 25, codec)
        frames = _decoded(path)
        if first is None:
            first = frames
        np.testing.assert_array_equal(frames, first, err_msg=f"encode {k} differs from the first ({codec})")
