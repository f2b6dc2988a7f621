"""The thesis's evaluation input: the whole frame resized to the network's size (aspect ratio not kept).

The thesis (section 4) resizes "the video frames from 320x240 to the standard size of 224x224" for linear
evaluation, where our default (:class:`~videocontrast.transforms.spatial.ClipEval`) crops the centre of the
decoded frame. :class:`FrameResize` runs before ``ClipEval`` (whose crop is then the whole frame), so the
normalisation and layout stay ``ClipEval``'s (``build.build_eval_transform`` composes the two).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FrameResize"]


class FrameResize(nn.Module):
    """Resize every frame to ``size`` (``(H, W)`` or an int for a square), antialiased bilinear.

    Shape: ``(B, T, 3, H, W)`` uint8 (0..255) or float in [0, 1] -> float32 ``(B, T, 3, size_h, size_w)`` in
    [0, 1] (the input layout, so ``ClipEval`` can follow).
    """

    def __init__(self, size: int | tuple[int, int]) -> None:
        super().__init__()
        h, w = (size, size) if isinstance(size, int) else size
        if int(h) < 1 or int(w) < 1:
            raise ValueError(f"size must be positive, got {size!r}")
        self.size = (int(h), int(w))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(f"x must be a batch of RGB clips (B, T, 3, H, W), got shape {tuple(x.shape)}")
        b, t, c, h, w = x.shape
        frames = (x.float() / 255.0 if x.dtype == torch.uint8 else x.float()).reshape(b * t, c, h, w)
        if (h, w) != self.size:
            frames = F.interpolate(frames, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        return frames.clamp_(0.0, 1.0).reshape(b, t, c, *self.size)
