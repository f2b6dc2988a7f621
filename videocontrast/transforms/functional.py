"""The operations of spatial augmentation on batches of clips, with per-clip parameters (drawn by
:class:`~videocontrast.transforms.spatial.ClipAugment`).

The SimCLR image pipeline (Chen et al. 2020, appendix A) applied to clips, as in the thesis (section 3,
"Spatial transformation"): random resized crop -> horizontal flip -> colour jitter -> grayscale -> Gaussian
blur, then normalisation with the Kinetics mean/std of torchvision's video models.

``mode="chunk"`` draws one set of parameters per clip and applies it to every frame (the thesis default,
section 5.1 shows it is clearly better); ``mode="frame"`` draws an independent set per frame.

Why batched: on a GPU host the CPU loader is the bottleneck of video SSL, so the whole batch is augmented
with one set of kernels. Every spatial step is a per-clip *linear* operator along H and W, so it is done with
batched matrix products:

- crop + resize + flip: ``out = R_y @ x @ R_x^T`` where ``R`` holds the antialiased bilinear (triangle
  filter) weights of torchvision's ``resized_crop(..., antialias=True)`` restricted to the crop box; a flip
  reverses the rows of ``R_x``.
- blur: ``out = G_y @ x @ G_x^T`` with a Gaussian band matrix that folds in reflect padding.

Colour jitter is pointwise, with per-clip factors broadcast over the batch. The ops follow torchvision's
functional definitions (``adjust_brightness/contrast/saturation/hue`` on float images) in a FIXED order:
brightness, contrast, saturation, hue (torchvision's ``ColorJitter`` permutes the order per call; we do not,
as a per-clip permutation would cost four evaluations of every op). Hue is shifted in HSV, as torchvision
does (not a YIQ rotation), so a single clip can be checked against torchvision exactly.

On the CPU with uint8 input and ``uint8_resize=True`` (what :func:`~videocontrast.build.components.build_augment` asks for),
the geometric part runs first on uint8: each view is cropped and resized to the output size by torchvision's
uint8 ``resized_crop`` kernel (several times faster than the float matrix products, and it reads a quarter of
the bytes), then the colour operations run on the small float crop, only for the clips drawn for them. The
parameters and their meaning are the same; the only difference is that the resized crop is rounded to uint8,
exactly as torchvision's own uint8 pipeline does (within 0.5/255 of the float path).

Random parameters are drawn on the generator's device (``x.device`` without a generator) and moved to
``x.device``, so a CPU generator gives the same augmentation on CPU and on GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# aug.spatial_mode (one parameter draw per clip | per frame), data.input (frames | frame differences: Residual),
# data.eval_crops (-> the crop positions evaluated per clip)


KINETICS_MEAN = (0.43216, 0.394666, 0.37645)


KINETICS_STD = (0.22803, 0.22145, 0.216989)


# ITU-R 601-2 luma, the weights torchvision's rgb_to_grayscale uses.
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


_CROP_TRIES = 10  # as torchvision's RandomResizedCrop


def pair(size: int | tuple[int, int], name: str) -> tuple[int, int]:
    """Validate an output size given as ``int`` (square) or ``(H, W)``."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(s, int) and s > 0 for s in hw):
        raise ValueError(f"{name} must be a positive int or a (height, width) pair of positive ints, got {size!r}")
    return hw  # type: ignore[return-value]


def check_range(value: tuple[float, float], name: str, low: float, high: float | None) -> tuple[float, float]:
    """Check ``low < value[0] <= value[1] (<= high)``."""
    if len(value) != 2:
        raise ValueError(f"{name} must be a (min, max) pair, got {value!r}")
    a, b = float(value[0]), float(value[1])
    if not (low < a <= b) or (high is not None and b > high):
        upper = f" <= {high}" if high is not None else ""
        raise ValueError(f"{name} must satisfy {low} < min <= max{upper}, got {value!r}")
    return a, b


def check_prob(p: float, name: str) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def check_mean_std(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Validate normalisation statistics (3 values each, std > 0) shared by every transform."""
    _stats(mean, "mean", torch.device("cpu"))
    if len(std) != 3 or min(std) <= 0:
        raise ValueError(f"std must have 3 positive values (R, G, B), got {std!r}")
    return tuple(mean), tuple(std)


def check_clip(x: Tensor, name: str = "x") -> None:
    if x.dim() != 5 or x.shape[2] != 3:
        raise ValueError(
            f"{name} must be a batch of RGB clips (B, T, C=3, H, W), got shape {tuple(x.shape)}; "
            "for a single (T, C, H, W) clip pass clip.unsqueeze(0)"
        )
    if not (x.dtype == torch.uint8 or x.is_floating_point()):
        raise ValueError(f"{name} must be uint8 (0..255) or float in [0, 1], got dtype {x.dtype}")


def to_unit_float(x: Tensor) -> Tensor:
    """uint8 -> float32 /255; float -> float32 (values assumed in [0, 1])."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def _stats(values: tuple[float, ...], name: str, device: torch.device) -> Tensor:
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 values (R, G, B), got {values!r}")
    return torch.tensor(values, dtype=torch.float32, device=device).view(1, 1, 3, 1, 1)


@dataclass
class AugParams:
    """Random parameters of ``N`` augmentations (``N = B`` in chunk mode, ``B * T`` in frame mode).

    Attributes:
        boxes: ``(N, 4)`` float crop boxes ``[x0, y0, x1, y1]`` in pixel edges (integer-valued), in the input frame.
        flip: ``(N,)`` bool, horizontal flip.
        color: ``(N, 4)`` float ``[brightness, contrast, saturation, hue]``; ``(1, 1, 1, 0)`` (the identity)
            where jitter is not applied.
        gray: ``(N,)`` bool, convert to grayscale.
        sigma: ``(N,)`` float Gaussian-blur sigma; ``0`` where blur is not applied.
    """

    boxes: Tensor
    flip: Tensor
    color: Tensor
    gray: Tensor
    sigma: Tensor

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def to(self, device: torch.device | str) -> AugParams:
        return AugParams(*(t.to(device) for t in (self.boxes, self.flip, self.color, self.gray, self.sigma)))


def sample_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Sample ``n`` RandomResizedCrop boxes at once (torchvision's rule, vectorised).

    Each box tries 10 (area fraction ~ U[scale], log aspect ratio ~ U[log ratio]) draws and keeps the first that
    fits in the frame; if none fits, it falls back to the centre crop with the aspect ratio clamped to ``ratio``.
    Width and height are rounded to whole pixels, and the position is uniform over the valid integer offsets.

    Args:
        n: number of boxes.
        height, width: input frame size.
        scale: range of the crop area as a fraction of ``height * width``.
        ratio: range of the crop aspect ratio ``w / h``.
        generator: source of randomness; draws happen on its device.
        device: where to draw when ``generator`` is None (default CPU). The result is on the draw device.

    Returns:
        ``(n, 4)`` float32 ``[x0, y0, x1, y1]``, integer-valued, ``0 <= x0 < x1 <= width``, same for y.
    """
    dev = generator.device if generator is not None else torch.device(device or "cpu")
    # float64: the area/ratio arithmetic must round to the same whole pixels as torchvision's Python floats.
    opts = dict(generator=generator, device=dev, dtype=torch.float64)
    area = height * width
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, _CROP_TRIES, **opts))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, _CROP_TRIES, **opts))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # index of the first fitting try (0 if none)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    u_y, u_x = torch.rand(2, n, **opts)

    # Fallback (all tries failed): centre crop, aspect ratio clamped into `ratio` (torchvision's rule).
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fw, fh = int(round(height * ratio[1])), height
    else:
        fw, fh = width, height
    # Unlike torchvision, never an empty box (a 1-pixel side times a clamped ratio can round to 0).
    fw, fh = min(max(fw, 1), width), min(max(fh, 1), height)
    ok = fits.any(dim=1)
    w = torch.where(ok, w, torch.full_like(w, fw))
    h = torch.where(ok, h, torch.full_like(h, fh))
    # floor(u * k) with u in [0, 1) is uniform on {0..k-1}; the clamp guards against rounding up to k.
    y0 = torch.minimum(torch.floor(u_y * (height - h + 1)), height - h)
    x0 = torch.minimum(torch.floor(u_x * (width - w + 1)), width - w)
    y0 = torch.where(ok, y0, torch.div(height - h, 2, rounding_mode="floor"))
    x0 = torch.where(ok, x0, torch.div(width - w, 2, rounding_mode="floor"))
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1).float()


def resize_matrix(start: Tensor, length: Tensor, in_size: int, out_size: int, flip: Tensor | None = None) -> Tensor:
    """Per-clip 1-D resampling matrices for "crop ``[start, start + length)`` then resize to ``out_size``".

    The weights are those of antialiased bilinear resizing (PIL / ``torch.nn.functional.interpolate(...,
    antialias=True)``): a triangle filter whose half-width is ``max(length / out_size, 1)`` input pixels, limited
    to the pixels inside the crop and normalised per output pixel. When downscaling this averages, so no aliasing.

    Args:
        start, length: ``(N,)`` crop start and length along the axis, in pixels.
        in_size: input length along the axis.
        out_size: output length.
        flip: optional ``(N,)`` bool; reverses the output order (a horizontal flip when applied along W).

    Returns:
        ``(N, out_size, in_size)`` float32 on ``start.device``; ``out = M @ x`` along the axis.
    """
    dev = start.device
    start, length = start.float()[:, None, None], length.float()[:, None, None]
    step = length / out_size  # input pixels per output pixel
    support = step.clamp(min=1.0)
    o = torch.arange(out_size, device=dev, dtype=torch.float32)[None, :, None]
    if flip is not None:
        o = torch.where(flip[:, None, None], out_size - 1 - o, o)
    centre = start + (o + 0.5) * step  # (N, out, 1) continuous input coordinate
    j = torch.arange(in_size, device=dev, dtype=torch.float32)[None, None, :] + 0.5  # pixel centres
    weight = (1.0 - (j - centre).abs() / support).clamp(min=0.0)
    weight = weight * ((j > start) & (j < start + length))  # only pixels inside the crop
    return weight / weight.sum(dim=-1, keepdim=True)


def blur_kernel_size(size: int) -> int:
    """Odd Gaussian kernel size, about 10% of ``size`` as in SimCLR (at least 3, at most ``2 * size - 1``)."""
    k = max(3, int(0.1 * size) // 2 * 2 + 1)
    return min(k, 2 * size - 1)


def gaussian_blur_matrix(sigma: Tensor, size: int, kernel_size: int) -> Tensor:
    """Per-clip 1-D Gaussian blur as a band matrix, reflect padding folded in.

    ``sigma == 0`` gives the identity (used for clips that are not blurred, so the batch stays one kernel call).
    Equals ``torchvision.transforms.v2.functional.gaussian_blur`` along one axis.

    Args:
        sigma: ``(N,)`` standard deviations in pixels (``>= 0``).
        size: signal length.
        kernel_size: odd number of taps, ``<= 2 * size - 1`` (reflect padding needs ``kernel_size // 2 < size``).

    Returns:
        ``(N, size, size)`` float32 on ``sigma.device``; ``out = M @ x`` along the axis.
    """
    dev, n, r = sigma.device, sigma.shape[0], kernel_size // 2
    d = torch.arange(-r, r + 1, device=dev, dtype=torch.float32)
    s = sigma.float()[:, None]
    taps = torch.exp(-0.5 * (d / s.clamp(min=1e-6)) ** 2)
    taps = torch.where(s > 0, taps / taps.sum(dim=1, keepdim=True), (d == 0).float().expand_as(taps))
    # Reflect (without repeating the edge pixel), as torch's "reflect" padding: -1 -> 1, size -> size - 2.
    idx = torch.arange(size, device=dev)[:, None] + d.long()[None, :]  # (size, k)
    idx = torch.where(idx < 0, -idx, idx)
    idx = torch.where(idx > size - 1, 2 * (size - 1) - idx, idx)
    m = torch.zeros(n, size, size, device=dev, dtype=torch.float32)
    return m.scatter_add_(2, idx.expand(n, -1, -1), taps[:, None, :].expand(-1, size, -1).contiguous())


def resized_crop_uint8(x: Tensor, boxes: Tensor, flip: Tensor, size: tuple[int, int]) -> Tensor:
    """Crop box ``i`` of clip ``i``, resize it to ``size`` (antialiased bilinear) and flip it, all on uint8.

    Clip ``i`` gives torchvision's ``resized_crop(x[i], y0, x0, y1 - y0, x1 - x0, size, antialias=True)``
    on uint8 (its fast integer kernel; values rounded to uint8), mirrored along W where ``flip[i]``.

    Args:
        x: ``(N, T, C, H, W)`` uint8.
        boxes: ``(N, 4)`` integer-valued ``[x0, y0, x1, y1]``; flip: ``(N,)`` bool.
        size: output ``(H', W')``.

    Returns:
        ``(N, T, C, H', W')`` uint8.
    """
    n, t, c, h, w = x.shape
    # Channels-last (H, W, C) is the layout of decoded frames and the one torch's fast uint8 kernel wants.
    frames = x.reshape(n * t, c, h, w).contiguous(memory_format=torch.channels_last).view(n, t, c, h, w)
    out = torch.empty(n, t, c, *size, dtype=torch.uint8, device=x.device)
    for i, ((x0, y0, x1, y1), f) in enumerate(zip(boxes.long().tolist(), flip.tolist())):
        y = F.interpolate(frames[i, :, :, y0:y1, x0:x1], size=size, mode="bilinear", antialias=True,
                          align_corners=False)
        out[i] = y.flip(-1) if f else y
    return out


def apply_separable(x: Tensor, my: Tensor, mx: Tensor) -> Tensor:
    """``my @ x @ mx^T`` per clip.

    Args:
        x: ``(N, T, C, H, W)`` float.
        my: ``(N, H', H)``; mx: ``(N, W', W)``.
    Returns:
        ``(N, T, C, H', W')``.
    """
    n, t, c, h, w = x.shape
    # W first: one bmm over all rows of a clip, then H with the clip's matrix broadcast over its T*C planes.
    y = torch.bmm(x.reshape(n, t * c * h, w), mx.transpose(1, 2)).view(n, t * c, h, mx.shape[1])
    y = torch.matmul(my[:, None], y)
    return y.view(n, t, c, my.shape[1], mx.shape[1])


def grayscale(x: Tensor) -> Tensor:
    """``(..., 3, H, W)`` -> ``(..., 1, H, W)`` luma."""
    r, g, b = x.unbind(dim=-3)
    return (_GRAY_WEIGHTS[0] * r + _GRAY_WEIGHTS[1] * g + _GRAY_WEIGHTS[2] * b).unsqueeze(-3)


def _blend(a: Tensor, b: Tensor, factor: Tensor) -> Tensor:
    """``factor * a + (1 - factor) * b`` clamped to [0, 1] (torchvision's ``_blend`` for float images).

    Written as one ``lerp`` (``b + factor * (a - b)``): same value up to float rounding, half the memory passes.
    """
    return torch.lerp(b.expand_as(a), a, factor).clamp_(0.0, 1.0)


def _shift_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the HSV hue of RGB pixels by ``shift`` turns, keeping HSV saturation and value.

    A hue change keeps the max ``v`` and min of the channels, so with chroma ``c = max - min`` and the hue in
    sectors ``h6 = 6 h``, each output channel is ``v - c * clamp(min(k, 4 - k), 0, 1)`` with
    ``k = (n + h6') mod 6`` and ``n = 5, 3, 1`` for R, G, B (the branch-free form of the HSV->RGB sector
    formula; ``v * s = c``). Same result as torchvision's ``adjust_hue`` up to float rounding.

    Args:
        x: ``(N, T, 3, H, W)`` float in [0, 1].
        shift: ``(N, 1, 1, 1)`` hue shift in turns (``[-0.5, 0.5]``).

    Returns:
        ``(N, T, 3, H, W)``.
    """
    r, g, b = x.unbind(dim=-3)
    # Two elementwise max/min are several times faster than aminmax over a size-3 strided dim on CPU.
    maxc, minc = torch.maximum(torch.maximum(r, g), b), torch.minimum(torch.minimum(r, g), b)
    chroma = maxc - minc
    # Hue numerator by which channel is the maximum (ties resolved r, then g, then b, as PIL/torchvision);
    # grey pixels (chroma 0) get hue 0 and stay grey whatever the shift.
    num = torch.where(maxc == r, g - b, torch.where(maxc == g, 2.0 * chroma + b - r, 4.0 * chroma + r - g))
    h6 = num.div_(torch.where(chroma == 0, torch.ones_like(chroma), chroma)).add_(6.0 * shift)
    out = torch.empty_like(x)
    for i, n in enumerate((5.0, 3.0, 1.0)):
        k = torch.remainder(h6 + n, 6.0)
        k = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
        torch.sub(maxc, k.mul_(chroma), out=out[:, :, i])
    return out


def adjust_color(x: Tensor, color: Tensor) -> Tensor:
    """Colour jitter with per-clip factors: brightness, contrast, saturation, hue, in that order.

    Each step is torchvision's functional op on float images: brightness scales, contrast blends with the
    per-frame mean of the grayscale image, saturation blends with the grayscale image, hue shifts H in HSV;
    results are clamped to [0, 1] after each step.

    Args:
        x: ``(N, T, 3, H, W)`` float in [0, 1].
        color: ``(N, 4)`` ``[brightness, contrast, saturation, hue]``; ``(1, 1, 1, 0)`` leaves a clip unchanged.

    Returns:
        ``(N, T, 3, H, W)`` float in [0, 1].
    """
    bri, con, sat, hue = (f.view(-1, 1, 1, 1, 1) for f in color.to(x.dtype).unbind(dim=1))
    x = (x * bri).clamp_(0.0, 1.0)
    x = _blend(x, grayscale(x).mean(dim=(-3, -2, -1), keepdim=True), con)
    x = _blend(x, grayscale(x), sat)
    shifted = _shift_hue(x, hue[:, :, 0])
    # The HSV round trip is not bit-exact, so clips with no hue shift keep their values exactly.
    return torch.where(hue != 0, shifted, x)


def adjust_color_clip_(x: Tensor, brightness: float, contrast: float, saturation: float, hue: float) -> Tensor:
    """:func:`adjust_color` of one clip with Python-number factors, in place: the CPU form.

    Same operations and order (and the same values up to float rounding), written as in-place passes over one
    clip so that its planes stay in cache and no ``(N, ...)`` temporaries or final ``where`` are needed; hue
    is skipped when it is exactly 0 (as :func:`adjust_color` keeps such clips unchanged).

    Args:
        x: ``(T, 3, H, W)`` contiguous float in [0, 1]; overwritten.
        brightness, contrast, saturation, hue: the factors (``1, 1, 1, 0`` is the identity).

    Returns:
        ``x``.
    """
    x.mul_(brightness).clamp_(0.0, 1.0)
    # factor * x + (1 - factor) * m == x + (1 - factor) * (m - x): torchvision's float _blend, one lerp pass.
    x.lerp_(grayscale(x).mean(dim=(-3, -2, -1), keepdim=True).expand_as(x), 1.0 - contrast).clamp_(0.0, 1.0)
    x.lerp_(grayscale(x).expand_as(x), 1.0 - saturation).clamp_(0.0, 1.0)
    if hue == 0:
        return x
    r, g, b = x.unbind(dim=-3)
    maxc = torch.maximum(torch.maximum(r, g), b)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)
    # The hue numerator of _shift_hue: by which channel is the maximum, ties resolved r, then g, then b.
    num = torch.where(maxc == g, (b - r).add_(chroma, alpha=2.0), (r - g).add_(chroma, alpha=4.0))
    num = torch.where(maxc == r, g - b, num)
    h6 = num.div_(chroma.masked_fill(chroma == 0, 1.0)).add_(6.0 * hue)
    k = torch.empty_like(h6)
    for i, n in enumerate((5.0, 3.0, 1.0)):
        torch.remainder(h6 + n, 6.0, out=k)
        torch.minimum(k, 4.0 - k, out=k).clamp_(0.0, 1.0)
        torch.sub(maxc, k.mul_(chroma), out=x[:, i])
    return x


def normalize_to_model(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """``(B, T, C, H, W)`` in [0, 1] -> normalised ``(B, C, T, H, W)`` contiguous float32.

    ``x / std - mean / std`` in one pass that also writes the model layout (saves a transpose copy).
    """
    b, t, c, h, w = x.shape
    scale = 1.0 / _stats(std, "std", x.device).view(1, c, 1, 1, 1)
    bias = -_stats(mean, "mean", x.device).view(1, c, 1, 1, 1) * scale
    out = torch.empty(b, c, t, h, w, dtype=torch.float32, device=x.device)
    return torch.addcmul(bias, x.permute(0, 2, 1, 3, 4), scale, out=out)


def denormalize(
    x: Tensor, mean: tuple[float, ...] = KINETICS_MEAN, std: tuple[float, ...] = KINETICS_STD
) -> Tensor:
    """Undo the normalisation for previews.

    Args:
        x: ``(B, C, T, H, W)`` normalised model input.
        mean, std: the per-channel statistics used to normalise.

    Returns:
        ``(B, T, C, H, W)`` float in [0, 1] (clamped).
    """
    if x.dim() != 5:
        raise ValueError(f"x must be (B, C, T, H, W), got shape {tuple(x.shape)}")
    y = x.permute(0, 2, 1, 3, 4).float()
    return (y * _stats(std, "std", x.device) + _stats(mean, "mean", x.device)).clamp(0.0, 1.0)
