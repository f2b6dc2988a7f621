"""The deterministic evaluation transform (:class:`ClipEval`): resize the short side, take a centre (or start/end)
crop, normalise like the training views, with none of their randomness."""

from __future__ import annotations


import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import Tensor, nn

from .functional import KINETICS_MEAN, KINETICS_STD, check_clip, check_mean_std, normalize_to_model, pair, to_unit_float

# aug.spatial_mode (one parameter draw per clip | per frame), data.input (frames | frame differences: Residual),
# data.eval_crops (-> the crop positions evaluated per clip)


CROP_POSITIONS = ("center", "start", "end")


class ClipEval(nn.Module):
    """Deterministic evaluation transform: optional short-side resize, crop, normalise.

    Args:
        size: crop size, ``int`` or ``(H, W)``.
        resize: if set, first resize so the short side equals ``resize`` (aspect kept, antialiased bilinear).
        mean, std: normalisation statistics (RGB).
        position: ``center``, or ``start`` / ``end`` of the frame's long axis (centred on the short axis):
            the three crops of the usual multi-crop video-level protocol.
        squash: instead of cropping, resize the whole frame to ``size`` (aspect ratio not kept, antialiased
            bilinear): the thesis's evaluation input (section 4: "we resize the video frames from 320x240 to ...
            224x224"); ``resize`` and ``position`` do not apply.

    Shape:
        ``(B, T, 3, H, W)`` uint8 or float in [0, 1] -> float32 ``(B, 3, T, size_h, size_w)``.
    """

    def __init__(
        self,
        size: int | tuple[int, int] = 112,
        resize: int | None = None,
        mean: tuple[float, ...] = KINETICS_MEAN,
        std: tuple[float, ...] = KINETICS_STD,
        position: str = "center",
        squash: bool = False,
    ) -> None:
        super().__init__()
        self.size = pair(size, "size")
        self.squash = squash
        if position not in CROP_POSITIONS:
            raise ValueError(f"position must be one of {CROP_POSITIONS}, got {position!r}")
        self.position = position
        if resize is not None and (not isinstance(resize, int) or resize <= 0):
            raise ValueError(f"resize must be None or a positive int (short side in pixels), got {resize!r}")
        self.resize = resize
        self.mean, self.std = check_mean_std(mean, std)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Args: x ``(B, T, 3, H, W)``. Returns: ``(B, 3, T, size_h, size_w)`` float32, normalised.

        ``generator`` is accepted and ignored (nothing here is random), so every clip transform has one call."""
        check_clip(x)
        b, t, c, h, w = x.shape
        frames = to_unit_float(x).reshape(b * t, c, h, w)
        if self.squash:
            if (h, w) != self.size:
                frames = F.interpolate(frames, size=self.size, mode="bilinear", align_corners=False,
                                       antialias=True).clamp_(0.0, 1.0)
            return normalize_to_model(frames.reshape(b, t, c, *self.size), self.mean, self.std)
        if self.resize is not None:
            frames = TF.resize(frames, [self.resize], antialias=True)
        fh, fw = frames.shape[-2:]
        if fh < self.size[0] or fw < self.size[1]:
            raise ValueError(
                f"frames are {fh}x{fw} after resize={self.resize}, smaller than size={self.size}; "
                "set resize to at least the crop size or decode larger frames"
            )
        top, left = (fh - self.size[0]) // 2, (fw - self.size[1]) // 2
        if self.position != "center":
            end = self.position == "end"
            if fw >= fh:
                left = fw - self.size[1] if end else 0
            else:
                top = fh - self.size[0] if end else 0
        frames = frames[..., top:top + self.size[0], left:left + self.size[1]]
        y = frames.reshape(b, t, c, *self.size)
        return normalize_to_model(y, self.mean, self.std)
