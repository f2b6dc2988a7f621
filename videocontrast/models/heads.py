"""Projection heads: the fully connected part of the thesis's encoder F (section 3).

One builder, ``build_mlp``, makes every head (as moco-v3's ``_build_mlp``):

* ``mlp`` (videoSimCLR, videoMoCo v2): ``Linear(in, hidden) -> [BN] -> ReLU -> Linear(hidden, out)``,
  512 -> 512 -> 256 in the thesis; BN in the hidden layer is optional and off by default (as in the thesis).
* ``linear`` (videoMoCo v1, as MoCo v1): one ``Linear(in, out)``, out = 128.

Shape: ``(N, in_dim) -> (N, out_dim)``.
"""

from __future__ import annotations

from torch import nn

__all__ = ["HEADS", "build_head", "build_mlp"]

HEADS = ("mlp", "linear")


def build_mlp(
    num_layers: int,
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    last_bn: bool = False,
    hidden_bn: bool = False,
) -> nn.Sequential:
    """``num_layers`` Linear layers with ReLU (and optional BatchNorm1d) between them.

    Args:
        num_layers: number of Linear layers (1 gives a single ``Linear(in_dim, out_dim)``).
        in_dim, hidden_dim, out_dim: feature sizes.
        last_bn: append a ``BatchNorm1d(out_dim, affine=False)`` after the last Linear (MoCo v3 style).
        hidden_bn: put a ``BatchNorm1d`` after every hidden Linear (before its ReLU).
    """
    if num_layers < 1:
        raise ValueError(f"num_layers: must be >= 1, got {num_layers}")
    for name, v in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
        if int(v) < 1:
            raise ValueError(f"{name}: must be a positive integer, got {v}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim, bias=not hidden_bn))
        if hidden_bn:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)


def build_head(
    kind: str,
    in_dim: int,
    hidden_dim: int = 512,
    out_dim: int = 256,
    *,
    num_layers: int = 2,
    hidden_bn: bool = False,
    last_bn: bool = False,
) -> nn.Sequential:
    """Projection head by kind.

    Args:
        kind: ``"mlp"`` (``num_layers`` Linear layers, default 2) or ``"linear"`` (one Linear; ``hidden_dim``,
            ``num_layers`` and ``hidden_bn`` unused). videoMoCo v1 uses ``linear`` with ``out_dim=128``.
        in_dim: backbone feature size (``backbone.feature_dim``).
        hidden_dim, out_dim: MLP sizes (thesis: 512 and 256).
    """
    if kind == "mlp":
        if num_layers < 2:
            raise ValueError(f"num_layers: an 'mlp' head needs >= 2 layers, got {num_layers}; use kind='linear'")
        return build_mlp(num_layers, in_dim, hidden_dim, out_dim, last_bn=last_bn, hidden_bn=hidden_bn)
    if kind == "linear":
        return build_mlp(1, in_dim, hidden_dim, out_dim, last_bn=last_bn)
    raise ValueError(f"head: unknown kind {kind!r}; choices: {', '.join(HEADS)}")
