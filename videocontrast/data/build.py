"""Build datasets, clip samplers and augmentations from a :class:`~videocontrast.config.Config`.

Every command that reads data (pretrain, linear, knn, retrieve, finetune, data info/preview, demo) goes
through here, so they all take the same dataset flags and sample clips the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Config


def default_cache_dir() -> Path:
    return Path(os.environ.get("VIDEOCONTRAST_CACHE", Path.home() / ".cache" / "videocontrast"))


def ensure_synthetic(cfg: Config) -> Path:
    """Generate the synthetic motion dataset once (idempotent) and return its root."""
    from .synthetic import generate_synthetic

    d = cfg.data
    root = Path(d.root) if d.root else default_cache_dir() / (
        f"synthetic-v{d.synthetic_videos_per_class}-f{d.synthetic_frames}-s{d.synthetic_size}-seed{d.synthetic_seed}"
        f"-a{d.synthetic_appearances}")
    from .. import dist

    def generate() -> Path:
        return generate_synthetic(root, videos_per_class=d.synthetic_videos_per_class,
                                  num_frames=d.synthetic_frames, size=d.synthetic_size, seed=d.synthetic_seed,
                                  appearances=d.synthetic_appearances)

    # Under torchrun, rank 0 writes the files while the others wait; their call then finds them complete.
    if dist.get_world_size() > 1:
        if dist.is_main_process():
            generate()
        dist.barrier()
    return generate()


@dataclass(frozen=True)
class TwoViews:
    """Pretraining sampler: Random m, then the temporal transform -> two index arrays (picklable for workers)."""

    temporal: str
    clip_len: int
    max_shift: int
    stride: int

    def __call__(self, num_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
        from ..transforms.temporal import temporal_views

        params = {"stride": self.stride}
        if self.temporal == "shift":
            params["max_shift"] = self.max_shift
        return list(temporal_views(self.temporal, num_frames, self.clip_len, rng, **params))


@dataclass(frozen=True)
class RandomClip:
    """Supervised training sampler: one Random m clip per video."""

    clip_len: int
    stride: int

    def __call__(self, num_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
        from ..transforms.temporal import random_m

        return [random_m(num_frames, self.clip_len, rng, stride=self.stride)]


@dataclass(frozen=True)
class UniformClips:
    """Evaluation sampler: ``num_clips`` evenly spaced clips per video (deterministic)."""

    clip_len: int
    num_clips: int
    stride: int

    def __call__(self, num_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
        from ..transforms.temporal import uniform_clips

        return uniform_clips(num_frames, self.clip_len, self.num_clips, stride=self.stride)


def _with_input(cfg: Config, transform):
    from ..transforms.spatial import Residual

    return Residual(transform) if cfg.data.input == "residual" else transform


def build_augment(cfg: Config):
    """Training augmentation (thesis section 3): ``(B, T, C, H, W)`` uint8 -> ``(B, C, T, H, W)`` float
    (``T - 1`` frame differences with ``data.input=residual``)."""
    from ..transforms.spatial import ClipAugment

    a = cfg.aug
    spatial = ClipAugment(size=cfg.data.size, scale=(a.min_scale, 1.0), jitter_strength=a.strength,
                          jitter_p=a.jitter_p, gray_p=a.gray_p, flip_p=a.flip_p, blur_p=a.blur_p,
                          mode=a.spatial_mode, crop=a.crop, flip=a.flip, jitter=a.jitter, gray=a.gray, blur=a.blur)
    return _with_input(cfg, spatial)


def build_eval_transform(cfg: Config, position: str = "center"):
    from ..transforms.spatial import ClipEval

    return _with_input(cfg, ClipEval(size=cfg.data.size, position=position))


def eval_crop_positions(cfg: Config) -> tuple[str, ...]:
    return ("center",) if cfg.data.eval_crops == 1 else ("start", "center", "end")


def dataset_root(cfg: Config) -> Path:
    return ensure_synthetic(cfg) if cfg.data.dataset == "synthetic" else Path(cfg.data.root)


def build_from_config(cfg: Config, subset: str, purpose: str, transform=None):
    """The dataset for ``purpose`` ``pretrain`` (two temporal views) or ``eval`` (uniform clips).

    Args:
        subset: ``train`` | ``test`` | ``all``.
    """
    from .datasets import build_dataset

    d = cfg.data
    if purpose == "pretrain":
        views = TwoViews(cfg.aug.temporal, d.clip_len, cfg.aug.max_shift, d.stride)
    elif purpose == "eval":
        views = UniformClips(d.clip_len, d.eval_clips, d.stride)
    elif purpose == "finetune":
        views = RandomClip(d.clip_len, d.stride)
    else:
        raise ValueError(f"purpose must be pretrain, eval or finetune, not {purpose!r}")
    return build_dataset(d.dataset, dataset_root(cfg), splits=d.splits, split=d.split, subset=subset,
                         views_fn=views, decode_size=d.decode_size, transform=transform, seed=cfg.train.seed,
                         strict=d.strict, require_complete=d.require_complete)
