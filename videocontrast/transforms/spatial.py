"""Spatial augmentation of video clips (:class:`ClipAugment`), batched on the training device with per-clip random
parameters, and the frame-difference input (:class:`Residual`).

The SimCLR image pipeline (Chen et al. 2020, appendix A) applied to clips, as in the thesis (section 3,
"Spatial transformation"): random resized crop -> horizontal flip -> colour jitter -> grayscale -> Gaussian
blur, then normalisation with the Kinetics mean/std of torchvision's video models. ``mode="chunk"`` draws one
set of parameters per clip and applies it to every frame (the thesis default, section 5.1 shows it is clearly
better); ``mode="frame"`` draws an independent set per frame. The operations and why they are batched linear
operators are in :mod:`videocontrast.transforms.functional`.
"""

from __future__ import annotations


import torch
from torch import Tensor, nn

# aug.spatial_mode (one parameter draw per clip | per frame), data.input (frames | frame differences: Residual),
# data.eval_crops (-> the crop positions evaluated per clip)
from ..names import SPATIAL_MODES
from .functional import (
    AugParams, KINETICS_MEAN, KINETICS_STD, adjust_color, adjust_color_clip_, apply_separable, blur_kernel_size,
    check_clip, check_mean_std, check_prob, check_range, gaussian_blur_matrix, grayscale, normalize_to_model, pair,
    resize_matrix, resized_crop_uint8, sample_crop_boxes, to_unit_float,
)


# ----------------------------------------------------------------------------------------------- parameters


# ------------------------------------------------------------------------------------ spatial linear operators


# -------------------------------------------------------------------------------------------------- colour


# ---------------------------------------------------------------------------------------------- normalise


# ------------------------------------------------------------------------------------------------ modules


class ClipAugment(nn.Module):
    """Random spatial augmentation of a batch of clips, one kernel set for the whole batch, on ``x.device``.

    Order: random resized crop (+ resize to ``size``) -> horizontal flip -> colour jitter (prob ``jitter_p``;
    brightness/contrast/saturation ``0.8 s``, hue ``0.2 s`` for strength ``s``) -> grayscale (prob ``gray_p``)
    -> Gaussian blur (prob ``blur_p``, kernel ~10% of the output size, sigma ~ U[0.1, 2.0]) -> normalise.
    Every part can be switched off; with ``crop=False`` the whole frame is resized to ``size``.

    Args:
        size: output size, ``int`` (square) or ``(H, W)``.
        scale, ratio: RandomResizedCrop area fraction and aspect-ratio (w/h) ranges.
        flip_p, jitter_p, gray_p, blur_p: probabilities of each random part.
        jitter_strength: SimCLR colour strength ``s`` (``0 <= s <= 2.5``; hue ``0.2 s`` must stay <= 0.5).
        mode: ``"chunk"`` one draw per clip for all its frames; ``"frame"`` an independent draw per frame.
        mean, std: normalisation statistics (RGB).
        crop, flip, jitter, gray, blur: switch each part on or off.
        uint8_resize: for uint8 input on the CPU, crop + resize (+ flip) on uint8 first (torchvision's uint8
            ``resized_crop``, rounded to uint8), then colour on the small float crop: the fast CPU path. Other
            inputs and devices always take the batched float path.

    Shape:
        ``forward(x)``: ``x`` uint8 (0..255) or float in [0, 1] ``(B, T, C=3, H, W)`` -> float32
        ``(B, C, T, size_h, size_w)``, normalised (the model input layout).
    """

    def __init__(
        self,
        size: int | tuple[int, int] = 112,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        jitter_strength: float = 1.0,
        jitter_p: float = 0.8,
        gray_p: float = 0.2,
        blur_p: float = 0.5,
        mode: str = "chunk",
        mean: tuple[float, ...] = KINETICS_MEAN,
        std: tuple[float, ...] = KINETICS_STD,
        crop: bool = True,
        flip: bool = True,
        jitter: bool = True,
        gray: bool = True,
        blur: bool = True,
        uint8_resize: bool = False,
    ) -> None:
        super().__init__()
        self.size = pair(size, "size")
        self.uint8_resize = bool(uint8_resize)
        self.scale = check_range(scale, "scale", 0.0, 1.0)
        self.ratio = check_range(ratio, "ratio", 0.0, None)
        self.flip_p = check_prob(flip_p, "flip_p")
        self.jitter_p = check_prob(jitter_p, "jitter_p")
        self.gray_p = check_prob(gray_p, "gray_p")
        self.blur_p = check_prob(blur_p, "blur_p")
        if not 0.0 <= jitter_strength <= 2.5:
            raise ValueError(
                f"jitter_strength must be in [0, 2.5] (hue 0.2*s may not exceed 0.5), got {jitter_strength!r}"
            )
        self.jitter_strength = float(jitter_strength)
        if mode not in SPATIAL_MODES:
            raise ValueError(f"mode must be 'chunk' (one draw per clip) or 'frame' (one per frame), got {mode!r}")
        self.mode = mode
        self.mean, self.std = check_mean_std(mean, std)
        self.crop, self.flip, self.jitter, self.gray, self.blur = crop, flip, jitter, gray, blur
        self.kernel_size = (blur_kernel_size(self.size[0]), blur_kernel_size(self.size[1]))

    def extra_repr(self) -> str:
        on = [k for k in ("crop", "flip", "jitter", "gray", "blur") if getattr(self, k)]
        return f"size={self.size}, mode={self.mode}, scale={self.scale}, strength={self.jitter_strength}, on={on}"

    def sample_params(
        self,
        n: int,
        height: int,
        width: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> AugParams:
        """Draw ``n`` parameter sets for ``height x width`` input frames.

        Every random quantity is always drawn (also for parts switched off), so switching one part off does not
        change the others' draws for the same generator state.

        Args:
            n: number of sets (``B`` in chunk mode, ``B * T`` in frame mode).
            height, width: input frame size.
            generator: source of randomness; draws happen on its device.
            device: where to draw (and return) when ``generator`` is None.

        Returns:
            :class:`AugParams` with ``N = n`` on the draw device.
        """
        dev = generator.device if generator is not None else torch.device(device or "cpu")
        boxes = sample_crop_boxes(n, height, width, self.scale, self.ratio, generator, dev)
        if not self.crop:
            boxes = torch.tensor([[0.0, 0.0, width, height]], device=dev).expand(n, 4).clone()
        u = torch.rand(n, 9, generator=generator, device=dev)
        s = self.jitter_strength
        lo = torch.tensor([max(0.0, 1 - 0.8 * s)] * 3 + [-0.2 * s], device=dev)
        hi = torch.tensor([1 + 0.8 * s] * 3 + [0.2 * s], device=dev)
        color = lo + (hi - lo) * u[:, 0:4]
        identity = torch.tensor([1.0, 1.0, 1.0, 0.0], device=dev)
        apply_jitter = (u[:, 4] < self.jitter_p) & self.jitter
        color = torch.where(apply_jitter[:, None], color, identity)
        flip = (u[:, 5] < self.flip_p) & self.flip
        gray = (u[:, 6] < self.gray_p) & self.gray
        sigma = torch.where((u[:, 7] < self.blur_p) & self.blur, 0.1 + 1.9 * u[:, 8], torch.zeros_like(u[:, 8]))
        return AugParams(boxes=boxes, flip=flip, color=color, gray=gray, sigma=sigma)

    def _blur(self, y: Tensor, sigma: Tensor) -> Tensor:
        """Blur ``(N, T, C, H, W)`` clip ``i`` with ``sigma[i]`` (``0``: unchanged)."""
        oh, ow = self.size
        if y.device.type != "cpu":
            # One call for the whole batch (identity matrices where sigma == 0): no host sync on accelerators.
            gy = gaussian_blur_matrix(sigma, oh, self.kernel_size[0])
            gx = gaussian_blur_matrix(sigma, ow, self.kernel_size[1])
            return apply_separable(y, gy, gx)
        # On CPU, compute is the cost: blur only the clips drawn for it (same result, about half the work).
        idx = (sigma > 0).nonzero().squeeze(1)
        if idx.numel() == 0:
            return y
        s = sigma[idx]
        gy = gaussian_blur_matrix(s, oh, self.kernel_size[0])
        gx = gaussian_blur_matrix(s, ow, self.kernel_size[1])
        return y.index_copy(0, idx, apply_separable(y[idx], gy, gx))

    def apply(self, x: Tensor, params: AugParams) -> Tensor:
        """Apply given parameters (see :meth:`sample_params`).

        Args:
            x: ``(B, T, 3, H, W)`` uint8 or float in [0, 1].
            params: ``N = B`` sets (chunk mode) or ``N = B * T`` sets in ``(b, t)`` row-major order (frame mode).

        Returns:
            ``(B, 3, T, size_h, size_w)`` float32, normalised.
        """
        check_clip(x)
        b, t, c, h, w = x.shape
        n = b if self.mode == "chunk" else b * t
        if len(params) != n:
            raise ValueError(f"params has {len(params)} sets, mode={self.mode!r} with x {tuple(x.shape)} needs {n}")
        p = params.to(x.device)
        oh, ow = self.size
        box = p.boxes
        on_cpu = x.device.type == "cpu"
        if on_cpu and self.uint8_resize and x.dtype == torch.uint8:
            y = resized_crop_uint8(x.reshape(n, -1, c, h, w), box, p.flip, self.size).float().div_(255.0)
        else:
            clips = to_unit_float(x).reshape(n, -1, c, h, w)  # frame mode: B*T clips of one frame
            ry = resize_matrix(box[:, 1], box[:, 3] - box[:, 1], h, oh)
            rx = resize_matrix(box[:, 0], box[:, 2] - box[:, 0], w, ow, flip=p.flip)
            y = apply_separable(clips, ry, rx)  # crop + resize + flip
        if on_cpu:
            # On CPU, compute is the cost: colour in place, clip by clip, only the clips drawn for each part.
            y = y.contiguous()
            identity = [1.0, 1.0, 1.0, 0.0]
            for i, (factors, gray) in enumerate(zip(p.color.tolist(), p.gray.tolist())):
                if self.jitter and factors != identity:
                    adjust_color_clip_(y[i], *factors)
                if self.gray and gray:
                    y[i] = grayscale(y[i])
        else:
            if self.jitter:
                y = adjust_color(y, p.color)
            if self.gray:
                y = torch.where(p.gray.view(-1, 1, 1, 1, 1), grayscale(y).expand_as(y), y)
        if self.blur:
            y = self._blur(y, p.sigma)
        y = y.reshape(b, t, c, oh, ow)
        return normalize_to_model(y, self.mean, self.std)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment a batch with fresh random parameters.

        Args:
            x: ``(B, T, 3, H, W)`` uint8 or float in [0, 1].
            generator: optional ``torch.Generator`` for reproducible draws (on any device).

        Returns:
            ``(B, 3, T, size_h, size_w)`` float32, normalised.
        """
        check_clip(x)
        b, t, _, h, w = x.shape
        n = b if self.mode == "chunk" else b * t
        return self.apply(x, self.sample_params(n, h, w, generator, device=x.device))


class Residual(nn.Module):
    """Wrap a clip transform so the model sees frame differences ("residual clips", Tao et al. 2020).

    ``x_t - x_{t-1}`` removes everything static (background, the look of a still object) and keeps what
    moves, which pushes a contrastive model towards motion features instead of scene appearance. With
    ``keep_frames`` (``data.input=both``) the frames ``x_t`` (t >= 1) come first and the differences are stacked
    after them as 3 more channels: the network sees the scene and the motion of the same T - 1 frames.

    Shape: whatever ``transform`` returns, ``(B, C, T, H, W)`` -> ``(B, C, T - 1, H, W)``
    (``(B, 2C, T - 1, H, W)`` with ``keep_frames``).
    """

    def __init__(self, transform: nn.Module, keep_frames: bool = False) -> None:
        super().__init__()
        self.transform = transform
        self.keep_frames = keep_frames

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        y = self.transform(x) if generator is None else self.transform(x, generator=generator)
        diff = y[:, :, 1:] - y[:, :, :-1]
        return torch.cat([y[:, :, 1:], diff], dim=1) if self.keep_frames else diff
