"""Clip transforms: temporal sampling on frame indices (``temporal``) and batched spatial augmentation (``spatial``,
its operations in ``functional``), the evaluation transform (``eval``)."""

from videocontrast.transforms.eval import ClipEval
from videocontrast.transforms.functional import denormalize
from videocontrast.transforms.spatial import ClipAugment, Residual
from videocontrast.transforms.temporal import (
    TEMPORAL_TRANSFORMS,
    FirstClip,
    RandomClip,
    TwoViews,
    UniformClips,
    random_m,
    temporal_views,
    uniform_clips,
)

__all__ = [
    "TEMPORAL_TRANSFORMS", "ClipAugment", "ClipEval", "FirstClip", "RandomClip", "Residual", "TwoViews",
    "UniformClips", "denormalize", "random_m", "temporal_views", "uniform_clips",
]
