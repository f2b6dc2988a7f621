"""Procedural motion dataset: the embedded default, generated locally (no download).

Every clip shows one or two textured foreground shapes moving by the clip's class motion over a random
background, plus 0-2 small distractor shapes moving by some *other* motion, plus mild per-frame noise.
Appearance (shape type, colours, texture, size, position, background) is drawn from the same distribution for
every class, so a single frame says nothing about the class: a model has to use temporal features.

Classes (image coordinates: x to the right, y downwards):

* ``left`` / ``right`` / ``up`` / ``down``: constant-velocity translation. The canvas is a torus (an object
  leaving one side re-enters on the other), so the speed need not depend on the clip length and the object's
  position carries no class information.
* ``rotate_cw`` / ``rotate_ccw``: rotation about the object's centre, clockwise / counter-clockwise as seen on
  screen. The texture rotates with the shape, which keeps rotation visible for discs.
* ``grow`` / ``shrink``: exponential scaling of the object (and its texture).

Symmetries that matter for augmentation choices (a useful ablation, not a bug):

* Playing a clip backwards maps left<->right, up<->down, rotate_cw<->rotate_ccw and grow<->shrink, so the
  ``reverse`` temporal transform (``transforms.temporal``) pairs views of *different* classes as positives.
* A horizontal flip maps left<->right and rotate_cw<->rotate_ccw (up, down, grow, shrink are unchanged), so
  flip augmentation makes those pairs indistinguishable to a contrastive objective.

Layouts: :func:`render_clip` returns ``uint8 (T, H, W, 3)`` RGB; files on disk are H.264 (yuv420p) MP4s.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

SYNTHETIC_CLASSES: list[str] = ["left", "right", "up", "down", "rotate_cw", "rotate_ccw", "grow", "shrink"]

_FORMAT_VERSION = 3  # bump when rendering or encoding changes, so old datasets on disk are regenerated
_TRANSLATIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
_SHAPES = ("square", "disc", "triangle", "cross")
_TEXTURES = ("stripes", "checker", "noise")

# Motion and size ranges, as fractions of the frame size (or radians) per frame. Chosen so the motion is
# plain over 8 frames at 32x32: translation moves >= 12% of the width, rotation turns >= 0.5 rad, scaling
# changes the area by >= 1.6x (unless a long clip caps the growth rate, see _radius_track).
_SPEED = (0.03, 0.05)
_OMEGA = (0.15, 0.25)
_GROWTH = (0.06, 0.1)
_RADIUS = (0.15, 0.3)
_DISTRACTOR_RADIUS = (0.04, 0.08)
_NOISE_STD = 3.0


@dataclass(frozen=True)
class _Track:
    """Per-frame pose of one object; every field has shape (T,)."""

    cx: np.ndarray
    cy: np.ndarray
    angle: np.ndarray
    radius: np.ndarray
    wrap: bool  # draw on a torus (translating objects)


def _class_name(label: str | int) -> str:
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        if 0 <= label < len(SYNTHETIC_CLASSES):
            return SYNTHETIC_CLASSES[int(label)]
    elif label in SYNTHETIC_CLASSES:
        return str(label)
    raise ValueError(f"unknown synthetic class {label!r}; valid: {SYNTHETIC_CLASSES} or their indices")


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _radius_track(rng: np.random.Generator, t: np.ndarray, lo: float, hi: float, grow: bool) -> np.ndarray:
    """Exponential growth (or shrinkage) that stays within [lo, hi] for the whole clip.

    A long clip caps the rate at ln(hi/lo)/(T-1); otherwise the start is uniform over the feasible log-range.
    """
    steps = max(len(t) - 1, 1)
    g = min(_uniform(rng, _GROWTH), np.log(hi / lo) / steps)
    log_r0 = rng.uniform(np.log(lo), max(np.log(lo), np.log(hi) - g * steps))  # max: float rounding
    r = np.exp(log_r0 + g * t)
    return r if grow else r[::-1].copy()


def _track(motion: str, rng: np.random.Generator, num_frames: int, size: int, radius: tuple[float, float]) -> _Track:
    t = np.arange(num_frames, dtype=np.float32)
    ones = np.ones_like(t)
    lo, hi = radius[0] * size, radius[1] * size
    angle0 = rng.uniform(0, 2 * np.pi)
    if motion in _TRANSLATIONS:
        dx, dy = _TRANSLATIONS[motion]
        v = _uniform(rng, _SPEED) * size
        x0, y0 = rng.uniform(0, size, 2)
        r = _log_uniform(rng, lo, hi)
        return _Track(x0 + v * dx * t, y0 + v * dy * t, angle0 * ones, r * ones, wrap=True)
    if motion in ("grow", "shrink"):
        r = _radius_track(rng, t, lo, hi, grow=motion == "grow")
        omega = 0.0
    else:  # rotation; positive angle turns clockwise on screen because y points down
        r = _log_uniform(rng, lo, hi) * ones
        omega = _uniform(rng, _OMEGA) * (1.0 if motion == "rotate_cw" else -1.0)
    # Non-translating objects stay fully in view: centre at least the largest radius from every edge.
    margin = min(float(r.max()), size / 2)
    x0, y0 = rng.uniform(margin, size - margin, 2)
    return _Track(x0 * ones, y0 * ones, angle0 + omega * t, r, wrap=False)


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test in object coordinates normalised by the radius (shapes fit the unit disc, roughly)."""
    if shape == "disc":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "cross":
        au, av_ = np.abs(u), np.abs(v)
        return ((au <= 1.0) & (av_ <= 0.35)) | ((au <= 0.35) & (av_ <= 1.0))
    # equilateral triangle with inradius 0.5: three half-planes
    inside = np.ones(u.shape, dtype=bool)
    for k in range(3):
        a = np.pi / 2 + k * 2 * np.pi / 3
        inside &= u * np.cos(a) + v * np.sin(a) <= 0.5
    return inside


def _texture(rng: np.random.Generator):
    """A random two-colour pattern function of object coordinates, returning 0/1 per pixel."""
    kind = _TEXTURES[rng.integers(len(_TEXTURES))]
    if kind == "stripes":
        freq, phi, phase = rng.uniform(1.5, 3.0), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        return lambda u, v: np.sin(np.pi * freq * (u * np.cos(phi) + v * np.sin(phi)) + phase) > 0
    if kind == "checker":
        k = rng.uniform(1.5, 3.0)
        return lambda u, v: (np.floor(u * k) + np.floor(v * k)).astype(np.int64) % 2 == 1
    cells = rng.integers(0, 2, (6, 6)).astype(bool)

    def cell(w: np.ndarray) -> np.ndarray:
        return np.clip(((w + 1) * 3).astype(np.int64), 0, 5)

    return lambda u, v: cells[cell(v), cell(u)]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Static background float32 (H, W, 3): colour + linear gradient + low-frequency noise."""
    base = rng.uniform(30, 225, 3)
    beta = rng.uniform(0, 2 * np.pi)
    ramp = (np.arange(size) + 0.5) / size - 0.5
    grad = np.cos(beta) * ramp[None, :] + np.sin(beta) * ramp[:, None]  # (H, W) in [-0.7, 0.7]
    bg = base + grad[..., None] * rng.uniform(-60, 60, 3)
    # 4x4 random grid, bilinearly upsampled: blotches much larger than the objects' texture.
    grid = rng.normal(0, 18, (4, 4, 3))
    pos = np.linspace(0, 3, size)
    i0 = np.minimum(pos.astype(np.int64), 2)
    w = (pos - i0)[:, None]
    rows = grid[i0] * (1 - w[..., None]) + grid[i0 + 1] * w[..., None]  # (H, 4, 3)
    blot = rows[:, i0] * (1 - w.T[..., None]) + rows[:, i0 + 1] * w.T[..., None]  # (H, W, 3)
    return np.clip(bg + blot, 0, 255).astype(np.float32)


def _draw(frames: np.ndarray, track: _Track, shape: str, pattern, colours: np.ndarray) -> np.ndarray:
    """Paint one object into ``frames`` float32 (T, H, W, 3) in place; returns its coverage bool (T, H, W)."""
    size = frames.shape[1]
    grid = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    dx = grid[None, None, :] - track.cx[:, None, None].astype(np.float32)
    dy = grid[None, :, None] - track.cy[:, None, None].astype(np.float32)
    if track.wrap:
        dx = (dx + size / 2) % size - size / 2
        dy = (dy + size / 2) % size - size / 2
    # Rotating the sampling grid by -angle rotates the drawn object by +angle.
    cos, sin = np.cos(track.angle)[:, None, None], np.sin(track.angle)[:, None, None]
    inv_r = (1.0 / track.radius)[:, None, None]
    u = ((cos * dx + sin * dy) * inv_r).astype(np.float32)
    v = ((cos * dy - sin * dx) * inv_r).astype(np.float32)
    mask = _shape_mask(shape, u, v)
    tex = pattern(u[mask], v[mask])
    frames[mask] = np.where(tex[:, None], colours[0], colours[1])
    return mask


def _colours(rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
    """Two object colours, float32 (2, 3): the first far from the background mean, the second far from the first.

    Contrast is what makes motion visible (a low-contrast texture hides a rotating disc), so draws are
    repeated a few times; the rejection depends on appearance only, never on the class.
    """

    def far_from(ref: np.ndarray) -> np.ndarray:
        c = rng.uniform(0, 255, 3)
        for _ in range(8):
            if np.linalg.norm(c - ref) > 80:
                break
            c = rng.uniform(0, 255, 3)
        return c

    first = far_from(avoid)
    return np.stack([first, far_from(first)]).astype(np.float32)


def render_clip(
    label: str | int,
    rng: np.random.Generator,
    num_frames: int,
    size: int,
    *,
    distractors: bool = True,
    noise: bool = True,
    num_objects: int | None = None,
    return_mask: bool = False,
    appearances: int = 0,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Render one clip whose class is defined by motion only.

    Args:
        label: class name from :data:`SYNTHETIC_CLASSES` or its index.
        rng: all randomness (appearance and motion) comes from it.
        num_frames: T (>= 1).
        size: H = W in pixels (>= 8).
        distractors: add 0-2 small shapes moving by other motions (off for clean test clips).
        noise: add per-frame Gaussian noise (std 3 grey levels).
        num_objects: class-motion objects to draw; None draws 1 or 2 at random.
        return_mask: also return the visible coverage of the class-motion objects.
        appearances: 0 draws every appearance freely; K > 0 draws one of K fixed appearance bundles
            (background, shapes, textures, colours), chosen uniformly and independently of the class. A small
            K leaves contrastive pretraining no static cue to tell most videos apart, so it must use motion.

    Returns:
        ``uint8 (T, H, W, 3)`` RGB clip; with ``return_mask``, ``(clip, mask)`` where mask is ``bool (T, H, W)``.
    """
    motion = _class_name(label)
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be an integer >= 1, got {num_frames!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an integer >= 8 pixels, got {size!r}")
    if num_objects is not None and (isinstance(num_objects, bool) or not isinstance(num_objects, (int, np.integer))
                                    or num_objects < 1):
        raise ValueError(f"num_objects must be None or an integer >= 1, got {num_objects!r}")
    # Appearance comes from its own generator: free (rng) or one of K bundles; motion always from rng.
    app = rng if appearances <= 0 else np.random.default_rng([0xA77, int(rng.integers(appearances))])
    bg = _background(app, size)
    frames = np.repeat(bg[None], num_frames, axis=0)
    others = [c for c in SYNTHETIC_CLASSES if c != motion]
    # Distractors first so the class-motion objects are drawn on top and dominate.
    for _ in range(int(rng.integers(0, 3)) if distractors else 0):
        kind = others[rng.integers(len(others))]
        track = _track(kind, rng, num_frames, size, _DISTRACTOR_RADIUS)
        _draw(frames, track, _SHAPES[app.integers(len(_SHAPES))], _texture(app), _colours(app, bg.mean((0, 1))))
    fg = np.zeros(frames.shape[:3], dtype=bool)
    for _ in range(int(rng.integers(1, 3)) if num_objects is None else num_objects):
        track = _track(motion, rng, num_frames, size, _RADIUS)
        fg |= _draw(frames, track, _SHAPES[app.integers(len(_SHAPES))], _texture(app), _colours(app, bg.mean((0, 1))))
    if noise:
        frames += rng.standard_normal(frames.shape, dtype=np.float32) * _NOISE_STD
    clip = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
    return (clip, fg) if return_mask else clip


# ------------------------------------------------------------------------------------------------ files


def _codec() -> str:
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _write_video(path: Path, clip: np.ndarray, fps: int, codec: str) -> None:
    """Encode ``uint8 (T, H, W, 3)`` RGB to ``path`` (yuv420p)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = clip.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1  # the data loader already runs in parallel (determinism: mbtree=0 below)
        if codec == "libx264":
            # mbtree=0: x264's macroblock-tree rate control gave other pixels on later encodes of the same clip in
            # one process (tests/test_synthetic.py), so the dataset, and the demo's figures, changed between runs
            stream.options = {"crf": "18", "preset": "medium", "x264-params": "mbtree=0"}
        else:
            stream.bit_rate = 8_000_000
        for frame in clip:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _split_sizes(videos_per_class: int, test_fraction: float) -> tuple[int, int]:
    n_test = int(round(videos_per_class * test_fraction))
    # A non-zero fraction always gets one test video, and a fraction below 1 keeps one training video.
    if test_fraction > 0 and n_test == 0:
        n_test = 1
    if test_fraction < 1 and n_test == videos_per_class and videos_per_class > 1:
        n_test = videos_per_class - 1
    return videos_per_class - n_test, n_test


def _jobs(params: dict) -> list[tuple[str, str, int]]:
    """(subset, class, index) for every video; the last n_test indices of each class are the test split."""
    n_train, _ = _split_sizes(params["videos_per_class"], params["test_fraction"])
    return [
        ("train" if i < n_train else "test", name, i)
        for name in params["classes"]
        for i in range(params["videos_per_class"])
    ]


def _relpath(subset: str, name: str, i: int) -> str:
    return f"{subset}/{name}/{name}_{i}.mp4"


def _render_and_write(args: tuple[Path, dict, str, str, int, str]) -> None:
    out, params, subset, name, i, codec = args
    rng = np.random.default_rng([params["seed"], SYNTHETIC_CLASSES.index(name), i])
    clip = render_clip(name, rng, params["num_frames"], params["size"], appearances=params["appearances"])
    _write_video(out / _relpath(subset, name, i), clip, params["fps"], codec)


def _is_complete(root: Path, params: dict) -> bool:
    try:
        meta = json.loads((root / "synthetic.json").read_text())
    except (OSError, ValueError):
        return False
    if {k: meta.get(k) for k in params} != params:
        return False
    paths = [root / _relpath(*job) for job in _jobs(params)]
    return all(p.is_file() and p.stat().st_size > 0 for p in paths)


def generate_synthetic(
    root: str | os.PathLike,
    videos_per_class: int = 40,
    num_frames: int = 32,
    size: int = 64,
    seed: int = 0,
    test_fraction: float = 0.25,
    fps: int = 25,
    workers: int = 1,
    appearances: int = 0,
) -> Path:
    """Write the synthetic motion dataset as real video files, once.

    Layout: ``root/{train,test}/<class>/<class>_<i>.mp4`` and ``root/synthetic.json`` (parameters, class list,
    codec). Video ``i`` of class ``c`` is rendered from ``numpy.random.default_rng([seed, c, i])``, so the
    dataset is deterministic and each video is independent of ``videos_per_class``. A call whose parameters
    match a complete dataset at ``root`` returns at once. Otherwise everything is written to a temporary
    sibling folder and renamed into place, so an interrupted run never leaves a partial dataset that looks
    complete. In distributed runs call it on one process and wait at a barrier.

    Args:
        root: dataset folder; must be absent, empty, or a previous synthetic dataset (it is replaced).
        videos_per_class: videos per class, train + test (>= 1).
        num_frames: frames per video (>= 1).
        size: frame height = width in pixels (even, >= 8: yuv420p needs even sides).
        seed: dataset seed.
        test_fraction: share of each class's videos in ``test`` (in [0, 1]; a non-zero fraction gives at
            least one test video, a fraction below 1 keeps at least one training video).
        fps: frame rate written to the container.
        workers: processes used for rendering and encoding (1 = in this process).

    Returns:
        ``root`` as a :class:`~pathlib.Path`.
    """
    root = Path(root)
    for field, value, minimum in (
        ("videos_per_class", videos_per_class, 1), ("num_frames", num_frames, 1),
        ("size", size, 8), ("fps", fps, 1), ("workers", workers, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"generate_synthetic: {field} must be an integer >= {minimum}, got {value!r}")
    if size % 2:
        raise ValueError(f"generate_synthetic: size must be even (yuv420p video), got {size}")
    if not 0.0 <= float(test_fraction) <= 1.0:
        raise ValueError(f"generate_synthetic: test_fraction must be in [0, 1], got {test_fraction!r}")
    params = {
        "version": _FORMAT_VERSION, "classes": list(SYNTHETIC_CLASSES), "videos_per_class": int(videos_per_class),
        "num_frames": int(num_frames), "size": int(size), "seed": int(seed),
        "test_fraction": float(test_fraction), "fps": int(fps), "appearances": int(appearances),
    }
    if _is_complete(root, params):
        return root
    if root.exists() and (not root.is_dir() or (any(root.iterdir()) and not (root / "synthetic.json").exists())):
        raise ValueError(
            f"generate_synthetic: {root} exists and is not a synthetic dataset (no synthetic.json); "
            "choose an empty or new folder"
        )

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    codec = _codec()
    try:
        for subset, name, _ in _jobs(params):
            (tmp / subset / name).mkdir(parents=True, exist_ok=True)
        tasks = [(tmp, params, *job, codec) for job in _jobs(params)]
        if workers == 1:
            for task in tasks:
                _render_and_write(task)
        else:
            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(_render_and_write, tasks, chunksize=8))
        n_train, n_test = _split_sizes(videos_per_class, test_fraction)
        meta = {**params, "codec": codec, "train_per_class": n_train, "test_per_class": n_test}
        (tmp / "synthetic.json").write_text(json.dumps(meta, indent=2) + "\n")  # written last: marks complete
        old = root.parent / f".{root.name}.old-{os.getpid()}"
        if root.exists():
            root.rename(old)
        tmp.rename(root)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
