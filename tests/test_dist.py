"""Two gloo processes vs one process: gather with gradient, SimCLR under DDP-style averaging, MoCo's queue.

One spawn (2 ranks) runs every distributed check and saves its results; the tests compare them with
single-process computations in the parent. Without a process group every helper must be a no-op.
"""

import os

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from videocontrast import dist
from videocontrast.losses import nt_xent
from videocontrast.methods import MoCo, SimCLR
from videocontrast.models import build_backbone, build_head

WORLD = 2
N = 8  # global batch; N / WORLD per rank
SHAPE = (3, 2, 4, 4)  # (C, T, H, W), tiny


class FlatLinear(nn.Module):
    """A BatchNorm-free encoder: features do not depend on how the batch is split."""

    feature_dim = 6

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 2 * 4 * 4, self.feature_dim)

    def forward(self, x):
        return self.fc(x.flatten(1))


def _global_inputs():
    g = torch.Generator().manual_seed(123)
    z = torch.randn(2, N, 5, generator=g, dtype=torch.float64)
    views = torch.randn(2, N, *SHAPE, generator=g, dtype=torch.float64)
    moco_views = torch.randn(2, 2, N, 3, 4, 16, 16, generator=g)  # (step, view, N, C, T, H, W)
    return z, views, moco_views


def _simclr_model():
    torch.manual_seed(7)
    return SimCLR(FlatLinear(), build_head("mlp", 6, 8, 4), temperature=0.2).double()


def _moco_model():
    torch.manual_seed(11)  # same init (and queue) on every rank, as DDP's initial broadcast would give
    return MoCo(build_backbone("r3d_small", width=4), build_head("mlp", 32, 16, 8), queue_size=6,
                momentum=0.9, temperature=0.2, bn_mode="shuffle")


def _worker(rank, tmp):
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    info = dist.init_distributed(backend="gloo", init_method=f"file://{tmp}/rendezvous")
    assert (info.rank, info.world_size) == (rank, WORLD) and dist.get_world_size() == WORLD
    n = N // WORLD
    sl = slice(rank * n, (rank + 1) * n)
    z, views, moco_views = _global_inputs()
    out = {}

    # 1. nt_xent(gather=True): local anchors, global candidates.
    z_i = z[0, sl].clone().requires_grad_(True)
    z_j = z[1, sl].clone().requires_grad_(True)
    loss = nt_xent(z_i, z_j, 0.3, gather=True)
    loss.backward()
    out["nt_loss"] = dist.all_reduce_mean(loss)
    out["nt_grad_i"], out["nt_grad_j"] = z_i.grad, z_j.grad

    # 2. SimCLR with DDP-style gradient averaging.
    model = _simclr_model()
    loss, _ = model(views[0, sl], views[1, sl])
    loss.backward()
    for p in model.parameters():
        torch.distributed.all_reduce(p.grad)
        p.grad /= WORLD
    out["simclr_loss"] = dist.all_reduce_mean(loss)
    out["simclr_grads"] = {k: p.grad for k, p in model.named_parameters()}

    # 3. MoCo, two steps with shuffle BN; record the local keys handed to the queue.
    moco = _moco_model()
    x = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3) + 100 * rank
    xs, idx = moco._batch_shuffle(x)
    out["shuffled"] = dist.gather_no_grad(xs)
    out["unshuffled"] = moco._batch_unshuffle(xs, idx)
    keys, enqueue = [], moco._dequeue_and_enqueue
    moco._dequeue_and_enqueue = lambda k: (keys.append(k.clone()), enqueue(k))
    opt = torch.optim.SGD([p for p in moco.parameters() if p.requires_grad], lr=0.1)
    out["queue0"] = moco.queue.clone()
    for step in range(2):
        loss, _ = moco(moco_views[step, 0, sl], moco_views[step, 1, sl])
        opt.zero_grad()
        loss.backward()
        for p in moco.parameters():
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad /= WORLD
        opt.step()
        moco.momentum_update()
    out["keys"] = keys
    out["queue"], out["queue_ptr"] = moco.queue.clone(), moco.queue_ptr.clone()
    out["x"] = x
    torch.save(out, f"{tmp}/rank{rank}.pt")
    dist.barrier()
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(str(tmp),), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_nt_xent_gather_equals_single_process(ranks):
    z, _, _ = _global_inputs()
    z_i, z_j = z[0].clone().requires_grad_(True), z[1].clone().requires_grad_(True)
    loss = nt_xent(z_i, z_j, 0.3)
    loss.backward()
    n = N // WORLD
    for r, out in enumerate(ranks):
        torch.testing.assert_close(out["nt_loss"], loss.detach(), rtol=1e-5, atol=1e-8)
        # Rank r's loss averages its 2n anchors: the global loss is the mean of the W rank losses,
        # so d(global)/dz_r = (1/W) * d(sum_r loss_r)/dz_r, the latter being what gather_with_grad returns.
        torch.testing.assert_close(out["nt_grad_i"] / WORLD, z_i.grad[r * n:(r + 1) * n], rtol=1e-5, atol=1e-10)
        torch.testing.assert_close(out["nt_grad_j"] / WORLD, z_j.grad[r * n:(r + 1) * n], rtol=1e-5, atol=1e-10)


def test_simclr_two_ranks_equal_one_process(ranks):
    _, views, _ = _global_inputs()
    model = _simclr_model()
    loss, _ = model(views[0], views[1])
    loss.backward()
    for out in ranks:
        torch.testing.assert_close(out["simclr_loss"], loss.detach(), rtol=1e-5, atol=1e-8)
        for k, p in model.named_parameters():
            torch.testing.assert_close(out["simclr_grads"][k], p.grad, rtol=1e-5, atol=1e-10, msg=k)


def test_batch_shuffle_across_ranks(ranks):
    everything = torch.cat([out["x"] for out in ranks])
    for out in ranks:
        torch.testing.assert_close(out["unshuffled"], out["x"])  # unshuffle inverts shuffle
        # every rank sees the same permutation of the global batch
        torch.testing.assert_close(out["shuffled"], ranks[0]["shuffled"])
    assert sorted(ranks[0]["shuffled"][:, 0].tolist()) == sorted(everything[:, 0].tolist())
    assert not torch.equal(ranks[0]["shuffled"], everything)  # a real permutation (fixed seed)


def test_moco_queues_identical_and_hold_keys_of_both_ranks(ranks):
    torch.testing.assert_close(ranks[0]["queue"], ranks[1]["queue"], rtol=0, atol=0)
    assert ranks[0]["queue_ptr"].item() == ranks[1]["queue_ptr"].item() == (2 * N) % 6
    # By hand: K=6, 8 keys per step (rank 0's 4 then rank 1's 4). Step 1 writes keys 0..7 from row 0
    # (rows 0..5 then 0, 1): rows 0,1 <- keys 6,7; rows 2..5 <- keys 2..5. Step 2 continues at row 2.
    step_keys = [torch.cat([ranks[0]["keys"][s], ranks[1]["keys"][s]]) for s in range(2)]
    sequence = torch.cat(step_keys)  # 16 keys in enqueue order
    expected = ranks[0]["queue0"].clone()
    for i, key in enumerate(sequence):
        expected[i % 6] = key
    torch.testing.assert_close(ranks[0]["queue"], expected)
    # the queue contains keys computed on rank 1 as well as on rank 0
    assert any(torch.equal(row, k) for row in ranks[0]["queue"] for k in ranks[1]["keys"][1])
    assert any(torch.equal(row, k) for row in ranks[0]["queue"] for k in ranks[0]["keys"][1])


def test_helpers_are_noops_without_process_group():
    assert not torch.distributed.is_initialized()
    info = dist.init_distributed() if "WORLD_SIZE" not in os.environ else None
    if info is not None:
        assert (info.rank, info.world_size) == (0, 1)
        assert not torch.distributed.is_initialized()
    x = torch.randn(3, 2, requires_grad=True)
    assert dist.gather_with_grad(x) is x
    assert dist.gather_no_grad(x) is x
    torch.testing.assert_close(dist.all_reduce_mean(x), x.detach())
    assert dist.get_rank() == 0 and dist.get_world_size() == 1 and dist.is_main_process()
    dist.barrier()
    m = nn.BatchNorm1d(3)
    assert dist.convert_sync_bn(m) is m
