"""Tests for videocontrast.transforms.spatial.

References: torchvision.transforms.v2.functional applied to a single clip (resized_crop, hflip, adjust_*,
rgb_to_grayscale, gaussian_blur, normalize), torchvision's RandomResizedCrop rule, and properties that must hold
(chunk mode keeps identical frames identical, blur keeps constants, ...).
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from videocontrast.transforms.eval import ClipEval
from videocontrast.transforms.functional import (KINETICS_MEAN, KINETICS_STD, AugParams, adjust_color, blur_kernel_size,
                                                 denormalize, gaussian_blur_matrix, sample_crop_boxes)
from videocontrast.transforms.spatial import ClipAugment

ALL_OFF = dict(crop=False, flip=False, jitter=False, gray=False, blur=False)
RAW = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # no normalisation: output in [0, 1]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand_clips(b: int = 2, t: int = 4, h: int = 24, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, t, 3, h, w), dtype=torch.uint8, generator=gen(seed))


def smooth_clips(b: int, t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Float clips in [0, 1] with low-frequency content (resampling differences stay small)."""
    coarse = torch.rand(b * t, 3, 4, 5, generator=gen(seed))
    return TF.resize(coarse, [h, w], antialias=True).clamp(0, 1).view(b, t, 3, h, w)


# -------------------------------------------------------------------------------- shapes, layout, modes


@pytest.mark.parametrize("size", [112, 16, (16, 24), (40, 30)])
@pytest.mark.parametrize("mode", ["chunk", "frame"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_output_shape_dtype(size, mode, dtype):
    x = rand_clips(1, 3, 20, 26)
    x = x if dtype == torch.uint8 else (x.to(dtype) / 255)
    y = ClipAugment(size=size, mode=mode)(x, generator=gen())
    hw = (size, size) if isinstance(size, int) else size
    assert y.shape == (1, 3, 3, *hw)
    assert y.dtype == torch.float32 and y.is_contiguous()
    assert torch.isfinite(y).all()


def test_layout_is_b_c_t_h_w_and_uint8_is_scaled():
    x = rand_clips(2, 3, 12, 10)
    y = ClipAugment(size=(12, 10), **ALL_OFF, **RAW)(x)  # same size, nothing random: identity resample
    torch.testing.assert_close(y, x.permute(0, 2, 1, 3, 4).float() / 255, atol=1e-6, rtol=0)


def test_float_and_uint8_inputs_agree():
    x = rand_clips(2, 3, 20, 26)
    aug = ClipAugment(size=16)
    torch.testing.assert_close(aug(x, gen(3)), aug(x.float() / 255, gen(3)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("seed", range(4))
def test_chunk_mode_keeps_identical_frames_identical(seed):
    frame = torch.randint(0, 256, (1, 1, 3, 20, 26), dtype=torch.uint8, generator=gen(seed))
    x = frame.expand(3, 5, 3, 20, 26)
    # Every part always on, so each one is exercised.
    aug = ClipAugment(size=16, flip_p=1.0, jitter_p=1.0, gray_p=1.0 if seed % 2 else 0.0, blur_p=1.0)
    y = aug(x, generator=gen(seed))
    assert torch.equal(y, y[:, :, :1].expand_as(y))


def test_frame_mode_differs_between_identical_frames():
    x = torch.randint(0, 256, (1, 1, 3, 20, 26), dtype=torch.uint8, generator=gen()).expand(2, 3, 3, 20, 26)
    y = ClipAugment(size=16, mode="frame")(x, generator=gen(1))
    for b in range(2):
        for t in range(1, 3):
            assert not torch.allclose(y[b, :, t], y[b, :, 0], atol=1e-3)


def test_frame_mode_draws_one_parameter_set_per_frame():
    aug = ClipAugment(size=16, mode="frame", flip_p=0.5, jitter_p=1.0, blur_p=1.0)
    x = rand_clips(2, 3, 20, 26)
    p = aug.sample_params(6, 20, 26, gen(5))
    assert len(p) == 6
    assert len({tuple(c.tolist()) for c in p.color}) == 6  # 6 independent jitter draws
    assert len(set(p.sigma.tolist())) == 6
    # Frame (b, t) is exactly the chunk augmentation of that single frame with parameter set b * T + t.
    y = aug.apply(x, p)
    chunk = ClipAugment(size=16, mode="chunk", flip_p=0.5, jitter_p=1.0, blur_p=1.0)
    for b in range(2):
        for t in range(3):
            k = b * 3 + t
            pk = AugParams(p.boxes[k : k + 1], p.flip[k : k + 1], p.color[k : k + 1], p.gray[k : k + 1],
                           p.sigma[k : k + 1])
            torch.testing.assert_close(y[b, :, t], chunk.apply(x[b : b + 1, t : t + 1], pk)[0, :, 0])
    with pytest.raises(ValueError, match="params"):
        aug.apply(x, aug.sample_params(2, 20, 26, gen()))


def test_determinism_with_generator():
    x = rand_clips(3, 2, 20, 26)
    aug = ClipAugment(size=16)
    assert torch.equal(aug(x, gen(7)), aug(x, gen(7)))
    assert not torch.equal(aug(x, gen(7)), aug(x, gen(8)))


def test_clips_in_a_batch_get_independent_parameters():
    x = rand_clips(1, 2, 40, 50).expand(2, 2, 3, 40, 50)
    for seed in range(3):
        y = ClipAugment(size=16, **{**ALL_OFF, "crop": True})(x, gen(seed))
        assert not torch.allclose(y[0], y[1], atol=1e-3)


# ------------------------------------------------------------------------ each part against a reference


@pytest.mark.parametrize("hw,size", [((30, 40), (20, 24)), ((30, 40), (45, 50)), ((30, 40), (30, 40))])
def test_full_frame_crop_is_plain_resize(hw, size):
    h, w = hw
    x = smooth_clips(2, 3, h, w)
    aug = ClipAugment(size=size, scale=(1.0, 1.0), ratio=(w / h, w / h), **{**ALL_OFF, "crop": True}, **RAW)
    y = aug(x, gen())
    ref = TF.resize(x.flatten(0, 1), list(size), antialias=True).view(2, 3, 3, *size).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=0)
    # The same holds for noise: the weights are torchvision's antialiased bilinear weights, not an approximation.
    xn = rand_clips(1, 2, h, w).float() / 255
    refn = TF.resize(xn.flatten(0, 1), list(size), antialias=True).view(1, 2, 3, *size).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(aug(xn, gen()), refn, atol=1e-5, rtol=0)


def test_random_crop_matches_torchvision_resized_crop():
    x = rand_clips(3, 2, 30, 40).float() / 255
    aug = ClipAugment(size=(18, 22), **{**ALL_OFF, "crop": True}, **RAW)
    p = aug.sample_params(3, 30, 40, gen(2))
    y = aug.apply(x, p)
    for b, (x0, y0, x1, y1) in enumerate(p.boxes.long().tolist()):
        ref = TF.resized_crop(x[b], y0, x0, y1 - y0, x1 - x0, [18, 22], antialias=True)
        torch.testing.assert_close(y[b], ref.permute(1, 0, 2, 3), atol=1e-5, rtol=0)


def test_flip_only_is_torch_flip():
    x = rand_clips(2, 3, 12, 10)
    y = ClipAugment(size=(12, 10), flip_p=1.0, **{**ALL_OFF, "flip": True}, **RAW)(x, gen())
    torch.testing.assert_close(y, torch.flip(x, dims=[-1]).permute(0, 2, 1, 3, 4).float() / 255, atol=1e-6, rtol=0)


def test_gray_only_gives_equal_channels_equal_to_luma():
    x = rand_clips(2, 3, 12, 10)
    y = ClipAugment(size=(12, 10), gray_p=1.0, **{**ALL_OFF, "gray": True})(x, gen())
    d = denormalize(y)  # (B, T, C, H, W) in [0, 1]
    torch.testing.assert_close(d[:, :, 0], d[:, :, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(d[:, :, 0], d[:, :, 2], atol=1e-5, rtol=0)
    luma = TF.rgb_to_grayscale(x.float() / 255)[:, :, 0]
    torch.testing.assert_close(d[:, :, 0], luma, atol=1e-5, rtol=0)


def test_jitter_strength_zero_is_identity():
    x = rand_clips(3, 2, 20, 26)
    base = dict(size=16, flip=False, gray=False, blur=False)
    y0 = ClipAugment(**base, jitter=False)(x, gen(4))
    y1 = ClipAugment(**base, jitter=True, jitter_p=1.0, jitter_strength=0.0)(x, gen(4))
    assert torch.equal(y0, y1)


def test_color_jitter_matches_torchvision_functional():
    x = torch.rand(3, 2, 3, 9, 11, generator=gen())
    x[0, 0, :, :2] = 0.5  # grey pixels (hue undefined)
    x[1, 0, 1] = x[1, 0, 0]  # ties between channels
    color = torch.tensor([[1.3, 0.6, 1.5, 0.17], [0.4, 1.7, 0.2, -0.5], [1.0, 1.0, 1.0, 0.0]])
    y = adjust_color(x, color)
    for b, (bri, con, sat, hue) in enumerate(color.tolist()):
        ref = TF.adjust_hue(TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(x[b], bri), con), sat), hue)
        torch.testing.assert_close(y[b], ref, atol=1e-5, rtol=0)


def test_jitter_factor_ranges_follow_strength():
    aug = ClipAugment(jitter_strength=0.5, jitter_p=1.0)
    c = aug.sample_params(2000, 20, 20, gen()).color
    assert (c[:, :3] >= 0.6).all() and (c[:, :3] <= 1.4).all()
    assert (c[:, 3].abs() <= 0.1).all()
    # uniform: the extremes are approached
    assert c[:, 0].min() < 0.62 and c[:, 0].max() > 1.38 and c[:, 3].min() < -0.098


def test_probabilities_are_respected():
    aug = ClipAugment(flip_p=0.3, gray_p=0.2, blur_p=0.6, jitter_p=0.8)
    p = aug.sample_params(20000, 20, 20, gen())
    identity = torch.tensor([1.0, 1.0, 1.0, 0.0])
    for rate, target in [(p.flip.float().mean(), 0.3), (p.gray.float().mean(), 0.2),
                         ((p.sigma > 0).float().mean(), 0.6), ((p.color != identity).any(1).float().mean(), 0.8)]:
        assert abs(rate.item() - target) < 0.015  # > 4 standard errors
    assert ((p.sigma == 0) | ((p.sigma >= 0.1) & (p.sigma <= 2.0))).all()
    off = ClipAugment(**ALL_OFF).sample_params(100, 20, 20, gen())
    assert not off.flip.any() and not off.gray.any() and (off.sigma == 0).all()
    assert (off.boxes == torch.tensor([0.0, 0.0, 20.0, 20.0])).all()


def test_blur_matches_torchvision_and_keeps_constants():
    sigma = torch.tensor([0.1, 0.9, 2.0, 0.0])
    x = torch.rand(4, 3, 16, 20, generator=gen())
    k = 5
    my, mx = gaussian_blur_matrix(sigma, 16, k), gaussian_blur_matrix(sigma, 20, k)
    y = my[:, None] @ x @ mx[:, None].transpose(-1, -2)
    for i, s in enumerate(sigma.tolist()):
        ref = x[i] if s == 0 else TF.gaussian_blur(x[i], [k, k], [s, s])
        torch.testing.assert_close(y[i], ref, atol=1e-5, rtol=0)
    # rows of a blur matrix sum to one: constants are kept
    torch.testing.assert_close(my.sum(-1), torch.ones(4, 16))


def test_blur_preserves_constant_and_reduces_noise_variance():
    aug = ClipAugment(size=32, blur_p=1.0, **{**ALL_OFF, "blur": True}, **RAW)
    const = torch.full((2, 2, 3, 32, 32), 0.3)
    torch.testing.assert_close(aug(const, gen()), torch.full((2, 3, 2, 32, 32), 0.3), atol=1e-6, rtol=0)
    noise = torch.rand(1, 2, 3, 32, 32, generator=gen(1)).expand(4, 2, 3, 32, 32)
    p = aug.sample_params(4, 32, 32, gen(2))
    p.sigma = torch.tensor([0.0, 0.5, 1.0, 2.0])  # 0: not blurred
    y = aug.apply(noise, p)
    var = y.var(dim=(1, 2, 3, 4))
    torch.testing.assert_close(var[0], noise[0].var())
    assert var[1] < 0.8 * var[0] and var[2] < var[1] and var[3] < var[2]  # more blur, less variance
    torch.testing.assert_close(y.mean(dim=(1, 2, 3, 4)), noise.mean(dim=(1, 2, 3, 4)), atol=5e-3, rtol=0)


def test_blur_kernel_is_about_ten_percent_and_odd():
    assert [blur_kernel_size(s) for s in (112, 56, 224, 20, 2)] == [11, 5, 23, 3, 3]
    assert ClipAugment(size=(112, 56)).kernel_size == (11, 5)


def test_whole_pipeline_matches_torchvision_chain_for_one_clip():
    x = rand_clips(2, 3, 30, 40)
    aug = ClipAugment(size=(20, 24), jitter_p=1.0, gray_p=0.5, blur_p=1.0, flip_p=0.5)
    p = aug.sample_params(2, 30, 40, gen(11))
    p.flip, p.gray = torch.tensor([True, False]), torch.tensor([False, True])
    y = aug.apply(x, p)
    for b in range(2):
        x0, y0, x1, y1 = p.boxes[b].long().tolist()
        bri, con, sat, hue = p.color[b].tolist()
        s = p.sigma[b].item()
        r = TF.resized_crop(x[b].float() / 255, y0, x0, y1 - y0, x1 - x0, [20, 24], antialias=True)
        r = TF.hflip(r) if p.flip[b] else r
        r = TF.adjust_hue(TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(r, bri), con), sat), hue)
        r = TF.rgb_to_grayscale(r, num_output_channels=3) if p.gray[b] else r
        r = TF.gaussian_blur(r, [3, 3], [s, s])  # blur_kernel_size(20) == blur_kernel_size(24) == 3
        r = TF.normalize(r, list(KINETICS_MEAN), list(KINETICS_STD))
        torch.testing.assert_close(y[b], r.permute(1, 0, 2, 3), atol=2e-5, rtol=0)


# ------------------------------------------------------------------------------------------- box sampler


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 300),
    w=st.integers(1, 300),
    s=st.tuples(st.floats(0.01, 1.0), st.floats(0.01, 1.0)).map(sorted),
    r=st.tuples(st.floats(0.2, 5.0), st.floats(0.2, 5.0)).map(sorted),
    seed=st.integers(0, 2**31),
)
def test_sampled_boxes_lie_in_configured_ranges(h, w, s, r, seed):
    boxes = sample_crop_boxes(64, h, w, tuple(s), tuple(r), gen(seed))
    assert boxes.shape == (64, 4)
    assert torch.equal(boxes, boxes.round())
    x0, y0, x1, y1 = boxes.double().unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= w).all() and (y1 <= h).all()
    bw, bh = x1 - x0, y1 - y0
    assert (bw >= 1).all() and (bh >= 1).all()
    # torchvision's fallback when all 10 tries fail: centre crop with the aspect ratio clamped into r
    in_ratio = w / h
    fw, fh = (w, round(w / r[0])) if in_ratio < r[0] else (round(h * r[1]), h) if in_ratio > r[1] else (w, h)
    fw, fh = min(max(fw, 1), w), min(max(fh, 1), h)  # never empty
    fallback = (bw == fw) & (bh == fh) & (x0 == (w - fw) // 2) & (y0 == (h - fh) // 2)
    # Otherwise the box comes from unrounded (w', h') within 0.5 px of (bw, bh) with area fraction in s and
    # ratio w'/h' in r: the intervals reachable by rounding must meet the configured ranges.
    area_lo, area_hi = (bw - 0.5) * (bh - 0.5) / (h * w), (bw + 0.5) * (bh + 0.5) / (h * w)
    ratio_lo, ratio_hi = (bw - 0.5) / (bh + 0.5), (bw + 0.5) / (bh - 0.5)
    eps = 1e-9
    in_range = (area_hi >= s[0] - eps) & (area_lo <= s[1] + eps) & (ratio_hi >= r[0] - eps) & (ratio_lo <= r[1] + eps)
    assert (fallback | in_range).all()


def test_box_sampler_distribution_on_a_large_frame():
    boxes = sample_crop_boxes(4000, 256, 256, (0.08, 1.0), (3 / 4, 4 / 3), gen())
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area = bw * bh / (256 * 256)
    log_ratio = torch.log(bw / bh)
    assert area.min() < 0.09 and area.max() > 0.95  # covers the range
    # On a square frame, rejections are symmetric in log ratio, so the mean stays ~0 (sd ~0.17/sqrt(4000)).
    assert abs(log_ratio.mean().item()) < 0.015
    # positions uniform over valid offsets: centres spread over the frame
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    assert cx.min() < 50 and cx.max() > 206


def test_box_sampler_fallback_when_nothing_fits():
    # A 4x200 strip can never hold a crop of area >= 0.9 with ratio <= 4/3: centre crop with ratio 4/3.
    boxes = sample_crop_boxes(5, 4, 200, (0.9, 1.0), (3 / 4, 4 / 3), gen())
    assert (boxes == torch.tensor([97.0, 0.0, 102.0, 4.0])).all()  # w = round(4 * 4/3) = 5, x0 = 195 // 2


# ------------------------------------------------------------------------------- ClipEval, denormalize


def test_clip_eval_of_mean_image_is_zero():
    mean = torch.tensor(KINETICS_MEAN).view(1, 1, 3, 1, 1)
    x = mean.expand(2, 3, 3, 20, 30).clone()
    y = ClipEval(size=16, resize=18)(x)
    assert y.shape == (2, 3, 3, 16, 16)
    torch.testing.assert_close(y, torch.zeros_like(y), atol=1e-5, rtol=0)


def test_clip_eval_matches_torchvision_resize_center_crop():
    x = rand_clips(2, 3, 30, 40)
    y = ClipEval(size=(16, 20), resize=20)(x)
    f = TF.resize(x.flatten(0, 1).float() / 255, [20], antialias=True)  # 20 x 27
    f = TF.normalize(TF.center_crop(f, [16, 20]), list(KINETICS_MEAN), list(KINETICS_STD))
    torch.testing.assert_close(y, f.view(2, 3, 3, 16, 20).permute(0, 2, 1, 3, 4), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="resize"):
        ClipEval(size=32)(x)


def test_denormalize_inverts_normalisation():
    x = rand_clips(2, 3, 16, 16)
    torch.testing.assert_close(denormalize(ClipEval(size=16)(x)), x.float() / 255, atol=1e-5, rtol=0)


# -------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(scale=(0.0, 1.0)), "scale"),
        (dict(scale=(0.5, 1.2)), "scale"),
        (dict(scale=(0.8, 0.5)), "scale"),
        (dict(ratio=(0.0, 1.0)), "ratio"),
        (dict(mode="clip"), "mode"),
        (dict(flip_p=1.5), "flip_p"),
        (dict(gray_p=-0.1), "gray_p"),
        (dict(jitter_strength=3.0), "jitter_strength"),
        (dict(size=0), "size"),
        (dict(size=(10, 10, 3)), "size"),
        (dict(std=(1.0, 0.0, 1.0)), "std"),
        (dict(mean=(0.5, 0.5)), "mean"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ClipAugment(**kwargs)


def test_bad_input_shape_is_explained():
    with pytest.raises(ValueError, match="unsqueeze"):
        ClipAugment()(rand_clips(1, 2, 8, 8)[0])
    with pytest.raises(ValueError, match="RGB"):
        ClipAugment()(torch.zeros(1, 2, 1, 8, 8))
    with pytest.raises(ValueError, match="resize"):
        ClipEval(resize=-1)


def test_generator_device_decides_where_parameters_are_drawn():
    # Drawing on the generator's device and moving to x.device makes results independent of x's device.
    aug = ClipAugment(size=16)
    p1 = aug.sample_params(3, 20, 26, gen(9), device="cpu")
    p2 = aug.sample_params(3, 20, 26, gen(9))
    assert all(torch.equal(a, b) for a, b in zip(vars(p1).values(), vars(p2).values()))
    assert math.isclose(float(aug(rand_clips(3, 2, 20, 26), gen(9)).abs().sum()),
                        float(aug.apply(rand_clips(3, 2, 20, 26), p1).abs().sum()), rel_tol=1e-6)


def test_residual_wrapper_gives_frame_differences():
    """Residual(ClipEval) on a clip whose frame t is the constant t/10 gives differences of exactly 0.1/std."""
    from videocontrast.transforms.eval import ClipEval
    from videocontrast.transforms.functional import KINETICS_STD
    from videocontrast.transforms.spatial import Residual

    t = 5
    clip = torch.arange(t, dtype=torch.float32).div(10).view(1, t, 1, 1, 1).expand(2, t, 3, 8, 8)
    out = Residual(ClipEval(size=8))(clip)
    assert out.shape == (2, 3, t - 1, 8, 8)
    expected = torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1).reciprocal() * 0.1
    torch.testing.assert_close(out, expected.expand_as(out), rtol=1e-4, atol=1e-5)
    # a static clip has no residual at all, whatever its appearance
    still = torch.rand(1, 1, 3, 8, 8).expand(1, t, 3, 8, 8)
    assert Residual(ClipEval(size=8))(still).abs().max() < 1e-6


def test_residual_with_frames_stacks_the_frames_then_their_differences():
    """data.input=both: channels 0-2 are frames 1..T-1 as ClipEval gives them, channels 3-5 their differences
    (the same as Residual alone); on the constant-t/10 clip the second half is exactly 0.1/std."""
    from videocontrast.transforms.eval import ClipEval
    from videocontrast.transforms.functional import KINETICS_STD
    from videocontrast.transforms.spatial import Residual

    t = 5
    clip = torch.arange(t, dtype=torch.float32).div(10).view(1, t, 1, 1, 1).expand(2, t, 3, 8, 8)
    out = Residual(ClipEval(size=8), keep_frames=True)(clip)
    assert out.shape == (2, 6, t - 1, 8, 8)
    torch.testing.assert_close(out[:, :3], ClipEval(size=8)(clip)[:, :, 1:])
    torch.testing.assert_close(out[:, 3:], Residual(ClipEval(size=8))(clip))
    expected = torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1).reciprocal() * 0.1
    torch.testing.assert_close(out[:, 3:], expected.expand_as(out[:, 3:]), rtol=1e-4, atol=1e-5)


def test_input_both_builds_a_six_channel_network_end_to_end():
    """The config's data.input=both reaches the augmentation, the evaluation transform and the backbone's first
    convolution; torchvision's 3-channel backbones are refused in one line naming the field."""
    from videocontrast.build.components import backbone_from_config, build_augment, build_eval_transform
    from videocontrast.config import ConfigError, load_config

    cfg = load_config("demo-real", ["data.input=both"])
    clip = torch.randint(0, 256, (2, cfg.data.clip_len, 3, 40, 53), dtype=torch.uint8)
    for transform in (build_augment(cfg), build_eval_transform(cfg)):
        x = transform(clip)
        assert x.shape == (2, 6, cfg.data.clip_len - 1, cfg.data.size, cfg.data.size)
    net = backbone_from_config(cfg, seed=0)
    assert net(x).shape == (2, net.feature_dim)
    with pytest.raises(ConfigError, match="data.input=both.*r3d_18"):
        load_config("demo-real", ["data.input=both", "model.backbone=r3d_18"])


def test_clip_eval_three_crops_hand_worked():
    """A 4x6 frame whose pixel value is its column index: 4x4 crops at start/centre/end of the long (W) axis
    take columns 0-3, 1-4 and 2-5; on a portrait frame the crops move along H instead."""
    from videocontrast.transforms.eval import ClipEval
    from videocontrast.transforms.functional import denormalize

    cols = torch.arange(6, dtype=torch.float32).div(10).view(1, 1, 1, 1, 6).expand(1, 2, 3, 4, 6)
    for pos, first in (("start", 0), ("center", 1), ("end", 2)):
        out = denormalize(ClipEval(size=4, position=pos)(cols))  # (1, T, C, 4, 4)
        torch.testing.assert_close(out[0, 0, 0, 0], torch.arange(first, first + 4).float().div(10))
    rows = cols.transpose(-1, -2)  # portrait 6x4, value = row index
    out = denormalize(ClipEval(size=4, position="end")(rows))
    torch.testing.assert_close(out[0, 0, 0, :, 0], torch.arange(2, 6).float().div(10))
    with pytest.raises(ValueError, match="position"):
        ClipEval(size=4, position="left")


# ------------------------------------------------------------------- uint8 CPU path (uint8_resize=True)


def _tv_uint8_chain(clip, box, flip, color, gray, sigma, size, k):
    """torchvision's functional ops on one uint8 clip ``(T, C, H, W)``: uint8 resized_crop (rounded to uint8), then
    float colour, grayscale, blur, normalise; ``(C, T, size_h, size_w)``."""
    x0, y0, x1, y1 = box
    r = TF.resized_crop(clip, y0, x0, y1 - y0, x1 - x0, list(size), antialias=True)  # uint8 in, uint8 out
    r = TF.hflip(r) if flip else r
    r = r.float() / 255
    bri, con, sat, hue = color
    r = TF.adjust_hue(TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(r, bri), con), sat), hue)
    r = TF.rgb_to_grayscale(r, num_output_channels=3) if gray else r
    r = TF.gaussian_blur(r, list(k), [sigma, sigma]) if sigma > 0 else r
    return TF.normalize(r, list(KINETICS_MEAN), list(KINETICS_STD)).permute(1, 0, 2, 3)


@pytest.mark.parametrize("size", [(20, 24), (40, 50), (112, 112)])
def test_uint8_path_matches_torchvision_uint8_chain(size):
    x = rand_clips(4, 3, 60, 80, seed=1)
    aug = ClipAugment(size=size, jitter_p=0.75, gray_p=0.5, blur_p=0.5, flip_p=0.5, uint8_resize=True)
    p = aug.sample_params(4, 60, 80, gen(12))
    p.flip, p.gray = torch.tensor([True, False, True, False]), torch.tensor([False, True, False, False])
    p.color[3] = torch.tensor([1.0, 1.0, 1.0, 0.0])  # one clip without jitter
    y = aug.apply(x, p)
    for b in range(4):
        ref = _tv_uint8_chain(x[b], p.boxes[b].long().tolist(), bool(p.flip[b]), p.color[b].tolist(), bool(p.gray[b]),
                              p.sigma[b].item(), size, (aug.kernel_size[0], aug.kernel_size[1]))
        torch.testing.assert_close(y[b], ref, atol=2e-5, rtol=0)


def test_uint8_path_frame_mode_is_per_frame_torchvision_chain():
    x = rand_clips(2, 3, 30, 40, seed=2)
    aug = ClipAugment(size=(18, 22), mode="frame", jitter_p=1.0, gray_p=0.3, blur_p=0.5, uint8_resize=True)
    p = aug.sample_params(6, 30, 40, gen(4))
    y = aug.apply(x, p)
    for b in range(2):
        for t in range(3):
            k = b * 3 + t
            ref = _tv_uint8_chain(x[b, t : t + 1], p.boxes[k].long().tolist(), bool(p.flip[k]), p.color[k].tolist(),
                                  bool(p.gray[k]), p.sigma[k].item(), (18, 22), (3, 3))
            torch.testing.assert_close(y[b, :, t], ref[:, 0], atol=2e-5, rtol=0)


def test_uint8_path_is_within_rounding_of_the_float_path_and_ignores_float_input():
    x = rand_clips(3, 4, 40, 50, seed=3)
    fast, exact = ClipAugment(size=24, uint8_resize=True), ClipAugment(size=24)
    # The only difference is the uint8 rounding of the resized crop: at most 0.5/255 before the colour ops,
    # which contrast/saturation factors up to 1.8 and normalisation by std ~0.22 can stretch to ~0.02.
    assert (fast(x, gen(5)) - exact(x, gen(5))).abs().max() < 0.05
    xf = x.float() / 255
    assert torch.equal(fast(xf, gen(5)), exact(xf, gen(5)))  # float input: the float path, unchanged
