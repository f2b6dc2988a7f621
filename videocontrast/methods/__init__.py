"""Contrastive methods: videoSimCLR and videoMoCo v1/v2, built by name.

=========  ===========================  ===========  =========================================
name       head                         temperature  notes
=========  ===========================  ===========  =========================================
simclr     mlp feature_dim->512->256    0.1          NT-Xent over the 2B views (thesis eq. 1)
moco-v1    linear feature_dim->128      0.07         as MoCo v1 (He et al. 2020)
moco-v2    mlp feature_dim->512->256    0.2          as MoCo v2 (Chen et al. 2020): MLP head, tau 0.2
=========  ===========================  ===========  =========================================
"""

from __future__ import annotations

from torch import nn

from videocontrast.dist import convert_sync_bn
from videocontrast.methods.moco import BN_MODES, MoCo, check_momentum
from videocontrast.methods.simclr import SimCLR
from videocontrast.methods.supervised import Supervised
from videocontrast.models.heads import build_head
from videocontrast.names import METHODS  # name -> (head kind, default head output size, default temperature)

__all__ = ["BN_MODES", "METHODS", "MoCo", "SimCLR", "Supervised", "build_method", "check_momentum", "encoder_of"]


def build_method(
    name: str,
    backbone: nn.Module,
    *,
    temperature: float | None = None,
    queue_size: int = 8192,
    momentum: float = 0.999,
    head_hidden: int = 512,
    head_out: int | None = None,
    bn_mode: str = "shuffle",
    num_train_clips: int | None = None,
) -> nn.Module:
    """Wrap ``backbone`` (with ``.feature_dim``) into a method by name (see the table above).

    Args:
        name: ``simclr``, ``moco-v1`` or ``moco-v2``.
        temperature, head_out: ``None`` gives the method's default.
        queue_size, momentum, num_train_clips: MoCo only.
        bn_mode: ``shuffle`` / ``none`` matter for MoCo only; ``sync`` converts the whole method's
            BatchNorms to SyncBatchNorm when running on more than one rank (any method).
    """
    if name not in METHODS:
        raise ValueError(f"method: unknown name {name!r}; choices: {', '.join(METHODS)}")
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode: expected one of {BN_MODES}, got {bn_mode!r}")
    feature_dim = getattr(backbone, "feature_dim", None)
    if feature_dim is None:
        raise ValueError("backbone: needs a .feature_dim attribute (build it with models.build_backbone)")
    kind, default_out, default_tau = METHODS[name]
    tau = default_tau if temperature is None else temperature
    out_dim = default_out if head_out is None else head_out
    head = build_head(kind, feature_dim, hidden_dim=head_hidden, out_dim=out_dim)
    if name == "simclr":
        method: nn.Module = SimCLR(backbone, head, temperature=tau)
    else:
        method = MoCo(
            backbone, head, queue_size=queue_size, momentum=momentum, temperature=tau, bn_mode=bn_mode,
            feature_dim=out_dim, num_train_clips=num_train_clips,
        )
    return convert_sync_bn(method) if bn_mode == "sync" else method


def encoder_of(method: nn.Module) -> nn.Module:
    """The backbone of a method (the representation used for evaluation); unwraps DDP."""
    method = getattr(method, "module", method)
    if not hasattr(method, "backbone"):
        raise ValueError(f"method: {type(method).__name__} has no .backbone")
    return method.backbone
