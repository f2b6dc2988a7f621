"""Backbones (3D CNNs) and projection heads."""

from videocontrast.models.backbones import BACKBONES, build_backbone
from videocontrast.models.weights import load_backbone_weights
from videocontrast.models.heads import HEADS, build_head, build_mlp

__all__ = ["BACKBONES", "HEADS", "build_backbone", "build_head", "build_mlp", "load_backbone_weights"]
