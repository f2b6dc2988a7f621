"""Clip transforms: temporal sampling on frame indices (``temporal``) and batched spatial augmentation (``spatial``)."""

from videocontrast.transforms.spatial import ClipAugment, ClipEval, Residual, denormalize
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
