"""videoMoCo v1/v2 (thesis section 3, "videoMOCO"; He et al. 2020, Chen et al. 2020).

A query encoder (backbone + head, trained) and a key encoder (its exponential moving average), a FIFO queue
of K keys as negatives, InfoNCE (eq. 2). Training step, in the engine::

    loss, stats = moco(view_q, view_k)     # keys under no_grad, loss, then enqueue
    loss.backward(); optimizer.step()
    moco.momentum_update(m)                # after the step (model.module.momentum_update under DDP)

Pass only ``requires_grad`` parameters to the optimiser (the key encoder has none).
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videocontrast import dist
from videocontrast.losses import info_nce
from videocontrast.names import BN_MODES, check_momentum

__all__ = ["BN_MODES", "MoCo", "check_momentum"]


def _infer_out_dim(head: nn.Module) -> int:
    for m in reversed(list(head.modules())):
        if isinstance(m, nn.Linear):
            return m.out_features
    raise ValueError("feature_dim: cannot infer the head's output size (no nn.Linear in it); pass feature_dim")


class MoCo(nn.Module):
    """Momentum Contrast on clips.

    Args:
        backbone, head: the query encoder ``head(backbone(x))``: ``(B, C, T, H, W) -> (B, D)``.
        queue_size: K, number of negative keys (thesis: 1024 for HMDB51, 8192 for UCF101).
        momentum: EMA momentum m in [0, 1) (the engine may schedule it, see ``engine.optim.momentum_schedule``).
        temperature: InfoNCE tau (0.07 for v1, 0.2 for v2).
        bn_mode: how to stop BatchNorm from leaking batch statistics between a query and its key:
            ``"shuffle"``: shuffle BN (keys computed on a permutation of the global batch, spread over ranks).
            In one process the shuffled batch is fed to the key encoder in ``shuffle_splits`` chunks so that
            its BN statistics come from random sub-batches (as SplitBatchNorm in MoCo's single-GPU demo).
            ``"sync"``: the caller converts the model with ``dist.convert_sync_bn`` (``build_method`` does).
            ``"none"``: nothing.
        feature_dim: D, size of the head's output; inferred from its last ``nn.Linear`` when None.
        num_train_clips: size of the training set; a warning is given when K exceeds it, since then the
            queue holds keys of the same videos as the queries (false negatives; thesis section 5.5).
        shuffle_splits: number of key-encoder chunks in one process with ``bn_mode="shuffle"``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        queue_size: int = 8192,
        momentum: float = 0.999,
        temperature: float = 0.07,
        bn_mode: str = "shuffle",
        feature_dim: int | None = None,
        *,
        num_train_clips: int | None = None,
        shuffle_splits: int = 2,
    ) -> None:
        super().__init__()
        if queue_size < 1:
            raise ValueError(f"queue_size: must be >= 1, got {queue_size}")
        check_momentum(momentum)
        if not temperature > 0:
            raise ValueError(f"temperature: must be > 0, got {temperature}")
        if bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode: expected one of {BN_MODES}, got {bn_mode!r}")
        if shuffle_splits < 1:
            raise ValueError(f"shuffle_splits: must be >= 1, got {shuffle_splits}")
        if num_train_clips is not None and queue_size > num_train_clips:
            warnings.warn(
                f"queue_size={queue_size} > num_train_clips={num_train_clips}: the queue will hold keys of the "
                "same videos as the current queries (false negatives); choose K below the dataset size "
                "(thesis section 5.5: K=1024 for HMDB51, 8192 for UCF101)"
            )
        self.backbone = backbone
        self.head = head
        self.key_backbone = copy.deepcopy(backbone)
        self.key_head = copy.deepcopy(head)
        for p in self.key_parameters():
            p.requires_grad_(False)
        self.momentum = float(momentum)
        self.temperature = float(temperature)
        self.bn_mode = bn_mode
        self.shuffle_splits = int(shuffle_splits)
        dim = int(feature_dim) if feature_dim is not None else _infer_out_dim(head)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, dim), dim=1))  # (K, D)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))  # next row to write

    def key_parameters(self):
        yield from self.key_backbone.parameters()
        yield from self.key_head.parameters()

    def _pairs(self):
        """(query, key) pairs of parameters, then of buffers."""
        q_mods, k_mods = (self.backbone, self.head), (self.key_backbone, self.key_head)
        params = [(pq, pk) for mq, mk in zip(q_mods, k_mods) for pq, pk in zip(mq.parameters(), mk.parameters())]
        buffers = [(bq, bk) for mq, mk in zip(q_mods, k_mods) for bq, bk in zip(mq.buffers(), mk.buffers())]
        return params, buffers

    @torch.no_grad()
    def momentum_update(self, m: float | None = None) -> None:
        """EMA of the query encoder into the key encoder: ``k = m * k + (1 - m) * q`` for parameters;
        buffers (BN running statistics) are copied. Call after ``optimizer.step()``; ``m`` defaults to
        ``self.momentum`` and is stored there (so a schedule's current value is visible)."""
        if m is not None:
            if not 0.0 <= m <= 1.0:
                raise ValueError(f"momentum: must be in [0, 1], got {m}")
            self.momentum = float(m)
        m = self.momentum
        params, buffers = self._pairs()
        for pq, pk in params:
            pk.mul_(m).add_(pq.detach(), alpha=1.0 - m)
        for bq, bk in buffers:
            bk.copy_(bq)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: Tensor) -> None:
        """Write ``keys (N, D)`` (gathered from all ranks under DDP) into the queue, FIFO with wrap-around.

        K need not be a multiple of the batch; with more keys than K only the newest K are kept.
        Indices are computed on the device: no host sync.
        """
        keys = dist.gather_no_grad(keys).to(self.queue.dtype)  # (W*N, D)
        n, size = keys.shape[0], self.queue.shape[0]
        ptr = self.queue_ptr
        if n > size:  # only the newest K survive; the older ones would be overwritten anyway
            ptr = (ptr + (n - size)) % size
            keys, n = keys[n - size:], size
        idx = (ptr + torch.arange(n, device=self.queue.device)) % size  # (n,)
        self.queue.index_copy_(0, idx, keys)
        self.queue_ptr.copy_((ptr + n) % size)

    @torch.no_grad()
    def _batch_shuffle(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Shuffle BN, step 1: a random permutation of the global batch; this rank gets its share.

        ``x (N, ...)`` local -> ``(x_shuffled (N, ...), idx_unshuffle (W*N,))``. In one process: a
        permutation of the local batch (the same code path; W = 1).
        """
        n = x.shape[0]
        x_all = dist.gather_no_grad(x)  # (W*N, ...)
        perm = torch.randperm(x_all.shape[0], device=x.device)
        if dist.is_dist():
            torch.distributed.broadcast(perm, src=0)  # one permutation for all ranks
        idx_unshuffle = torch.argsort(perm)
        rank = dist.get_rank()
        return x_all[perm[rank * n:(rank + 1) * n]], idx_unshuffle

    @torch.no_grad()
    def _batch_unshuffle(self, x: Tensor, idx_unshuffle: Tensor) -> Tensor:
        """Shuffle BN, step 2: undo ``_batch_shuffle``. ``x (N, ...)`` shuffled -> ``(N, ...)`` in input order."""
        n = x.shape[0]
        x_all = dist.gather_no_grad(x)  # (W*N, ...)
        rank = dist.get_rank()
        return x_all[idx_unshuffle[rank * n:(rank + 1) * n]]

    @torch.no_grad()
    def _keys(self, view_k: Tensor) -> Tensor:
        """Normalised keys ``(N, D)`` from the key encoder, with shuffle BN when ``bn_mode="shuffle"``."""
        def encode(x: Tensor) -> Tensor:
            return F.normalize(self.key_head(self.key_backbone(x)), dim=1)

        if self.bn_mode != "shuffle":
            return encode(view_k)
        x, idx_unshuffle = self._batch_shuffle(view_k)
        splits = 1 if dist.is_dist() else self.shuffle_splits
        k = torch.cat([encode(c) for c in x.chunk(splits)], dim=0)  # (N, D), shuffled order
        return self._batch_unshuffle(k, idx_unshuffle)

    def forward(self, view_q: Tensor, view_k: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss for a batch; enqueues the keys afterwards.

        Args:
            view_q, view_k: ``(B, C, T, H, W)`` float; two views of the same B clips.

        Returns:
            ``(loss, stats)``: InfoNCE of the local queries against their keys and the queue as it was
            before this batch; stats ``{"loss", "pos_sim", "neg_sim"}`` (mean cosine to the positive key /
            to the queue; local).
        """
        if view_q.shape != view_k.shape:
            raise ValueError(f"view_q, view_k: shapes differ: {tuple(view_q.shape)} vs {tuple(view_k.shape)}")
        q = F.normalize(self.head(self.backbone(view_q)), dim=1)  # (N, D)
        k = self._keys(view_k)  # (N, D), constant
        queue = self.queue.clone().detach()  # (K, D): snapshot, the enqueue below is in place
        loss = info_nce(q, k, queue, self.temperature)
        with torch.no_grad():
            pos_sim = (q * k).sum(dim=1).mean()
            neg_sim = (q @ queue.to(q.dtype).T).mean()
        self._dequeue_and_enqueue(k)
        return loss, {"loss": loss.detach(), "pos_sim": pos_sim, "neg_sim": neg_sim}  # 0-dim, as SimCLR's
