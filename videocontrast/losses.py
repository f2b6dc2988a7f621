"""Contrastive losses of the thesis (section 3): NT-Xent (eq. 1, videoSimCLR) and InfoNCE (eq. 2, videoMoCo)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from videocontrast import dist

__all__ = ["info_nce", "nt_xent"]


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature: must be > 0, got {temperature}")


def _fp32(x: Tensor) -> Tensor:
    """``x`` in at least single precision. Under bf16 autocast the embeddings arrive in bf16, whose cosine
    resolution (about 2^-8) divided by a temperature of 0.1 or 0.07 would move each logit by up to ~0.05."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def nt_xent(z_i: Tensor, z_j: Tensor, temperature: float = 0.1, gather: bool = False) -> Tensor:
    r"""Normalised temperature-scaled cross entropy (SimCLR; thesis eq. 1).

    With :math:`p` the L2-normalised embeddings of the 2N views and :math:`j(a)` the other view of anchor a:

    .. math::
        \mathcal{L} = \frac{1}{2N} \sum_{a=1}^{2N} -\log
            \frac{\exp(p_a^\top p_{j(a)} / \tau)}{\sum_{k \neq a} \exp(p_a^\top p_k / \tau)}

    Args:
        z_i, z_j: ``(N, D)`` embeddings of the two views; row n of each comes from the same clip.
        temperature: :math:`\tau > 0`.
        gather: when a process group with world size W > 1 is initialised, the candidates :math:`p_k` are the
            embeddings of all ranks (2WN, gathered with gradient: negatives are global) while the anchors
            stay local; every rank must pass the same N. Ignored in one process.

    Returns:
        Scalar mean over the (local) 2N anchors. Under DDP the gradient average over ranks then equals
        the gradient of the single-process loss on the global batch.
    """
    if z_i.dim() != 2 or z_i.shape != z_j.shape:
        raise ValueError(f"z_i, z_j: expected two (N, D) tensors of one shape, got {tuple(z_i.shape)}, {tuple(z_j.shape)}")
    _check_temperature(temperature)
    with torch.autocast(z_i.device.type, enabled=False):  # fp32 whatever the caller's autocast (see _fp32)
        return _nt_xent(_fp32(z_i), _fp32(z_j), temperature, gather)


def _nt_xent(z_i: Tensor, z_j: Tensor, temperature: float, gather: bool) -> Tensor:
    n = z_i.shape[0]
    z_i = F.normalize(z_i, dim=1)
    z_j = F.normalize(z_j, dim=1)
    anchors = torch.cat([z_i, z_j], dim=0)  # (2N, D)

    if gather and dist.is_dist():
        cand_i = dist.gather_with_grad(z_i)  # (W*N, D)
        cand_j = dist.gather_with_grad(z_j)  # (W*N, D)
        candidates = torch.cat([cand_i, cand_j], dim=0)  # (2WN, D): [all views i | all views j]
        offset, total = dist.get_rank() * n, cand_i.shape[0]
    else:
        candidates, offset, total = anchors, 0, n

    logits = anchors @ candidates.T / temperature  # (2N, 2WN)
    local = torch.arange(n, device=z_i.device)
    self_idx = torch.cat([offset + local, total + offset + local])  # where each anchor sits among the candidates
    pos_idx = torch.cat([total + offset + local, offset + local])  # where its other view sits
    rows = torch.arange(2 * n, device=z_i.device)
    logits[rows, self_idx] = float("-inf")  # 1[k != a]: drop self-similarity
    return F.cross_entropy(logits, pos_idx)


def info_nce(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.07) -> Tensor:
    r"""InfoNCE with a queue of negatives (MoCo; thesis eq. 2).

    With :math:`q, k_+` and the queue keys :math:`k_1..k_K` L2-normalised:

    .. math::
        \mathcal{L} = \frac{1}{N} \sum_{n=1}^{N} -\log
            \frac{\exp(q_n^\top k_{+,n} / \tau)}{\exp(q_n^\top k_{+,n} / \tau) + \sum_{i=1}^{K} \exp(q_n^\top k_i / \tau)}

    i.e. cross entropy over the logits ``[q.k+, q.queue^T] / tau`` with the positive at index 0.

    Args:
        q: ``(N, D)`` queries (gradient flows here only).
        k: ``(N, D)`` positive keys; treated as constants (detached).
        queue: ``(K, D)`` negative keys; treated as constants (detached).
        temperature: :math:`\tau > 0`.

    Returns:
        Scalar mean over the N queries.
    """
    if q.dim() != 2 or q.shape != k.shape:
        raise ValueError(f"q, k: expected two (N, D) tensors of one shape, got {tuple(q.shape)}, {tuple(k.shape)}")
    if queue.dim() != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"queue: expected (K, {q.shape[1]}), got {tuple(queue.shape)}")
    _check_temperature(temperature)
    with torch.autocast(q.device.type, enabled=False):  # fp32 whatever the caller's autocast (see _fp32)
        q = F.normalize(_fp32(q), dim=1)
        k = F.normalize(_fp32(k.detach()), dim=1).to(q.dtype)
        queue = F.normalize(_fp32(queue.detach()), dim=1).to(q.dtype)
        l_pos = (q * k).sum(dim=1, keepdim=True)  # (N, 1)
        l_neg = q @ queue.T  # (N, K)
        logits = torch.cat([l_pos, l_neg], dim=1) / temperature  # (N, 1+K)
        labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, labels)
