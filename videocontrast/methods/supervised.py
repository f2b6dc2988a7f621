"""The classification objective: backbone + a new linear classifier, cross-entropy on the labels.

It has the same surface as SimCLR and MoCo (``forward(...) -> (loss, stats)``), so fine-tuning (thesis
section 4.2) and the supervised-from-scratch baseline run on the engine's one training loop, with its
optimiser, schedule, AMP, DDP, logging, checkpoints and resume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Supervised", "check_labels"]


def check_labels(labels: Tensor, num_classes: int) -> None:
    """Raise ``ValueError`` unless every label lies in ``[0, num_classes)`` (a -1 is an unlabeled video)."""
    lo, hi = torch.aminmax(labels)
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"training labels must lie in [0, {num_classes}), got [{int(lo)}, {int(hi)}] "
                         "(unlabeled videos cannot be trained on)")


class Supervised(nn.Module):
    """``head(backbone(x))`` logits trained with cross-entropy.

    Args:
        backbone: ``(B, C, T, H, W) -> (B, feature_dim)`` with an int ``feature_dim`` attribute.
        num_classes: K; labels must lie in ``[0, K)``.
    """

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        dim = getattr(backbone, "feature_dim", None)
        if not isinstance(dim, int):
            raise ValueError("backbone: needs an int attribute 'feature_dim' (build it with models.build_backbone)")
        if num_classes < 1:
            raise ValueError(f"num_classes: must be >= 1, got {num_classes}")
        self.backbone = backbone
        self.head = nn.Linear(dim, num_classes)
        self.num_classes = int(num_classes)

    def classifier(self) -> nn.Module:
        """``(B, C, T, H, W) -> (B, K)`` logits, sharing this module's parameters (for evaluation)."""
        return nn.Sequential(self.backbone, self.head)

    def forward(self, x: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy of ``x (B, C, T, H, W)`` against ``labels (B,)``; stats ``{"loss", "acc"}`` (local)."""
        if labels.device.type == "cpu":  # on an accelerator a check would be a host sync: the engine checks the
            check_labels(labels, self.num_classes)  # labels on the host, before they move
        logits = self.head(self.backbone(x)).float()  # (B, K); CE in fp32 under autocast
        loss = F.cross_entropy(logits, labels)
        with torch.no_grad():
            acc = (logits.argmax(1) == labels).float().mean()
        return loss, {"loss": loss.detach(), "acc": acc}  # 0-dim tensors, as SimCLR's
