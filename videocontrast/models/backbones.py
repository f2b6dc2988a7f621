"""3D CNN backbones: the base encoder ``C`` of the thesis (section 3, "Base encoder F").

Every backbone has the same (timm-like) surface::

    feats = model.forward_features(x)   # (B, C, T, H, W) -> last feature map (B, D, t, h, w)
    pooled = model.forward_head(feats)  # (B, D, t, h, w) -> (B, D), global average pool
    pooled = model(x)                   # both
    model.feature_dim                   # D

Names (``BACKBONES``): ``r3d_18``, ``r2plus1d_18``, ``mc3_18`` (torchvision's video ResNets, random init,
classifier removed, D=512), ``hara_r3d_18`` (the thesis's 3D ResNet-18 of Hara et al., 3D-ResNets-PyTorch:
7x7x7 first conv and a max-pool; Hara's parameter names, so their Kinetics checkpoints load as they are) and
``r3d_small`` (a small 3D ResNet for CPU runs, configurable depth/width/stem).

``weights`` is always a *local* file; nothing here ever downloads.
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

from torch import Tensor, nn
from torchvision.models import video as tv_video
from torchvision.models.video.resnet import BasicBlock, Conv3DSimple

from ..names import BACKBONE_NAMES
from .weights import load_backbone_weights

__all__ = ["BACKBONES", "TORCHVISION_BACKBONES", "HaraResNet3D", "VideoEncoder", "VideoResNetEncoder", "build_backbone", "hara_r3d_18",
           "load_backbone_weights", "r3d_small"]


class VideoEncoder(nn.Module):
    """The surface every backbone shares (timm-like): ``forward_features`` (subclasses define it: the last feature
    map ``(B, D, t, h, w)``), ``forward_head`` (global average pool) and ``feature_dim`` (D).

    Shape:
        input ``(B, C, T, H, W)`` float -> output ``(B, feature_dim)``.
    """

    feature_dim: int

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_head(self, x: Tensor) -> Tensor:
        """``(B, D, t, h, w) -> (B, D)``: global average pool (a reduction, no view: channels_last_3d safe)."""
        return x.mean(dim=(2, 3, 4))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5:
            raise ValueError(f"x: expected a (B, C, T, H, W) tensor, got shape {tuple(x.shape)}")
        return self.forward_head(self.forward_features(x))


class VideoResNetEncoder(VideoEncoder):
    """A video ResNet without classifier: ``stem -> layer1..layer4 -> global average pool``.

    Parameter names match torchvision's ``VideoResNet`` (``stem.*``, ``layer1.*`` ...), so torchvision
    state dicts (e.g. the Kinetics-400 weights) load directly once their ``fc.*`` keys are dropped.
    """

    def __init__(self, stem: nn.Module, layers: Sequence[nn.Module], feature_dim: int) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers: expected 4 stages, got {len(layers)}")
        self.stem = stem
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.feature_dim = int(feature_dim)

    @classmethod
    def from_torchvision(cls, net: tv_video.VideoResNet) -> "VideoResNetEncoder":
        return cls(net.stem, [net.layer1, net.layer2, net.layer3, net.layer4], net.fc.in_features)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, C, T, H, W) -> (B, D, t, h, w)``: the last feature map."""
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def _init_weights(model: nn.Module) -> None:
    # Same initialisation as torchvision's VideoResNet.
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _make_stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(
            nn.Conv3d(inplanes, planes, kernel_size=1, stride=Conv3DSimple.get_downsample_stride(stride), bias=False),
            nn.BatchNorm3d(planes),
        )
    stage = [BasicBlock(inplanes, planes, Conv3DSimple, stride, downsample)]
    stage += [BasicBlock(planes, planes, Conv3DSimple) for _ in range(1, blocks)]
    return nn.Sequential(*stage)


def r3d_small(
    layers: Sequence[int] = (1, 1, 1, 1),
    width: int = 64,
    stem: str = "basic",
    in_channels: int = 3,
) -> VideoResNetEncoder:
    """A small 3D ResNet (BasicBlocks, 3x3x3 convolutions) for CPU-sized inputs.

    Args:
        layers: blocks per stage (4 stages); ``(2, 2, 2, 2)`` with ``width=64`` and ``stem="basic"`` is r3d_18.
        width: channels of the first stage; stages have ``width * (1, 2, 4, 8)`` channels,
            so ``feature_dim = 8 * width``.
        stem: ``"basic"``: conv 3x7x7, stride (1, 2, 2) (torchvision's, halves H and W);
            ``"small"``: conv 3x3x3, stride 1 (keeps resolution: for 8x32x32 or smaller inputs).
        in_channels: input channels C.

    Stages 2-4 stride by 2 in T, H and W; inputs as small as 4x16x16 work with either stem.
    """
    if len(layers) != 4 or any(int(n) < 1 for n in layers):
        raise ValueError(f"layers: expected 4 positive block counts, got {list(layers)}")
    if int(width) < 1:
        raise ValueError(f"width: must be a positive integer, got {width}")
    width = int(width)
    if stem == "basic":
        conv = nn.Conv3d(in_channels, width, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False)
    elif stem == "small":
        conv = nn.Conv3d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
    else:
        raise ValueError(f"stem: expected 'basic' or 'small', got {stem!r}")
    stem_module = nn.Sequential(conv, nn.BatchNorm3d(width), nn.ReLU(inplace=True))

    planes = [width, 2 * width, 4 * width, 8 * width]
    stages, inplanes = [], width
    for i, (p, n) in enumerate(zip(planes, layers)):
        stages.append(_make_stage(inplanes, p, int(n), stride=1 if i == 0 else 2))
        inplanes = p
    model = VideoResNetEncoder(stem_module, stages, feature_dim=planes[-1])
    _init_weights(model)
    return model


class _HaraBasicBlock(nn.Module):
    """Hara's BasicBlock: ``conv1 (3x3x3, stride) -> bn1 -> ReLU -> conv2 (3x3x3) -> bn2``, plus the shortcut,
    then ReLU. Shortcut type B: identity, or ``downsample = (1x1x1 conv, stride) + BN`` where the shape changes.
    Attribute names are Hara's (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample.0``/``.1``)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv3d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                                            nn.BatchNorm3d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class HaraResNet3D(VideoEncoder):
    """The 3D ResNet of Hara et al. (3D-ResNets-PyTorch, ``models/resnet.py``) without its classifier: the
    network of the thesis's own code (simionAndrei/MScThesis ``resnet3d.py``, ``generate_model(18)``).

    ``conv1`` 7x7x7, stride (1, 2, 2), padding 3 -> ``bn1`` -> ReLU -> ``maxpool`` 3x3x3, stride 2, padding 1
    -> ``layer1..layer4`` (BasicBlocks, 64/128/256/512 channels, layers 2-4 stride 2 in T, H and W)
    -> global average pool. At 16x112x112 the last map is 1x4x4, at 16x56x56 it is 1x2x2.

    Same surface as :class:`VideoResNetEncoder` (``forward_features``, ``forward_head``, ``feature_dim``).
    Parameter names are Hara's (``conv1.*``, ``bn1.*``, ``layer1.0.conv1.*``, ``layer2.0.downsample.0.*`` ...),
    so a Hara checkpoint loads once ``module.`` and ``fc.*`` are dropped (``load_backbone_weights`` does both).
    """

    def __init__(self, layers: Sequence[int] = (2, 2, 2, 2), in_channels: int = 3) -> None:
        super().__init__()
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers: expected 4 positive block counts, got {list(layers)}")
        self.conv1 = nn.Conv3d(in_channels, 64, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        inplanes, stages = 64, []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = [_HaraBasicBlock(inplanes, planes, stride=1 if i == 0 else 2)]
            blocks += [_HaraBasicBlock(planes, planes) for _ in range(1, int(n))]
            stages.append(nn.Sequential(*blocks))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feature_dim = 512
        _init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, C, T, H, W) -> (B, 512, t, h, w)``: the last feature map."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def hara_r3d_18(in_channels: int = 3) -> HaraResNet3D:
    """Hara et al.'s 3D ResNet-18 (the thesis's base encoder; random init, no classifier, feature_dim=512)."""
    return HaraResNet3D((2, 2, 2, 2), in_channels=in_channels)


def _torchvision(fn: Callable[..., tv_video.VideoResNet]) -> Callable[..., VideoResNetEncoder]:
    def build(**kw) -> VideoResNetEncoder:
        return VideoResNetEncoder.from_torchvision(fn(weights=None, **kw))

    build.__doc__ = f"torchvision ``{fn.__name__}`` (random init, no classifier, feature_dim=512)."
    build.__signature__ = inspect.signature(fn)  # for kwarg checking in build_backbone
    return build


# Backbones that are torchvision's own video models: their state dicts load into torchvision's constructors.
TORCHVISION_BACKBONES = ("r3d_18", "r2plus1d_18", "mc3_18")

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "r3d_18": _torchvision(tv_video.r3d_18),
    "r2plus1d_18": _torchvision(tv_video.r2plus1d_18),
    "mc3_18": _torchvision(tv_video.mc3_18),
    "hara_r3d_18": hara_r3d_18,
    "r3d_small": r3d_small,
}
# config checks model.backbone against names.BACKBONE_NAMES, without importing torch: the same names, in order.
assert tuple(BACKBONES) == BACKBONE_NAMES, (tuple(BACKBONES), BACKBONE_NAMES)

def build_backbone(name: str, weights: str | None = None, **kw) -> nn.Module:
    """Build a backbone by name; optionally load a local state-dict file.

    Args:
        name: one of ``BACKBONES``.
        weights: path of a local weights file (``.pt``/``.pth``/``.safetensors``, read by
            :func:`videocontrast.models.weights.load_backbone_weights`); never downloaded.
        **kw: forwarded to the builder (``r3d_small``: ``layers``, ``width``, ``stem``, ``in_channels``).

    Returns:
        ``nn.Module`` mapping ``(B, C, T, H, W)`` to ``(B, feature_dim)``.
    """
    if name not in BACKBONES:
        raise ValueError(f"backbone: unknown name {name!r}; choices: {', '.join(sorted(BACKBONES))}")
    builder = BACKBONES[name]
    params = inspect.signature(builder).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        bad = sorted(set(kw) - set(params))
        if bad:
            raise ValueError(f"backbone {name!r}: unknown options {bad}; accepted: {sorted(params)}")
    model = builder(**kw)
    if weights is not None:
        load_backbone_weights(model, weights)
    return model
