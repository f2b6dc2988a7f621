"""videoSimCLR (thesis section 3): one encoder F = head(backbone(.)), NT-Xent between the two views of each clip."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videocontrast import dist
from videocontrast.losses import nt_xent

__all__ = ["SimCLR"]


class SimCLR(nn.Module):
    """SimCLR on clips.

    Args:
        backbone: ``(B, C, T, H, W) -> (B, feature_dim)``.
        head: projection head ``(B, feature_dim) -> (B, D)``.
        temperature: NT-Xent temperature tau.

    Under DDP each rank computes NT-Xent for its local anchors against the embeddings of all ranks
    (``gather=True``), and DDP's gradient average over ranks equals the single-process gradient of the
    mean over all anchors. BatchNorm statistics are per rank (convert to SyncBatchNorm for global BN).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, temperature: float = 0.1) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature: must be > 0, got {temperature}")
        self.backbone = backbone
        self.head = head
        self.temperature = float(temperature)

    def forward(self, view_1: Tensor, view_2: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss for a batch of view pairs.

        Args:
            view_1, view_2: ``(B, C, T, H, W)`` float; row b of each comes from clip b.

        Returns:
            ``(loss, stats)``: scalar loss (this rank's anchors) and ``{"loss", "pos_sim"}`` (0-dim tensors), where
            ``pos_sim`` is the mean cosine similarity of the positive pairs (local).
        """
        if view_1.shape != view_2.shape:
            raise ValueError(f"view_1, view_2: shapes differ: {tuple(view_1.shape)} vs {tuple(view_2.shape)}")
        b = view_1.shape[0]
        # One forward over both views: fewer kernel launches, and BN statistics over all 2B clips.
        z = self.head(self.backbone(torch.cat([view_1, view_2], dim=0)))  # (2B, D)
        z_1, z_2 = z[:b], z[b:]  # (B, D) each
        loss = nt_xent(z_1, z_2, self.temperature, gather=dist.get_world_size() > 1)
        with torch.no_grad():
            pos_sim = F.cosine_similarity(z_1, z_2, dim=1).mean()
        # 0-dim tensors on the device: reading them is a host sync, which the engine does once per log line
        return loss, {"loss": loss.detach(), "pos_sim": pos_sim}
