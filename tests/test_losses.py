"""Losses against plain NumPy ports of the thesis's equations (1) and (2), closed forms and properties."""

import math

import numpy as np
import pytest
import torch

from videocontrast.losses import info_nce, nt_xent


def _normalise(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def nt_xent_numpy(z_i, z_j, tau):
    """Eq. (1), literally: loop over the 2N anchors, denominator over k != a."""
    p = _normalise(np.concatenate([z_i, z_j]))
    n2 = p.shape[0]
    n = n2 // 2
    total = 0.0
    for a in range(n2):
        pos = (a + n) % n2
        sims = np.array([p[a] @ p[k] for k in range(n2)]) / tau
        denom = sum(math.exp(sims[k]) for k in range(n2) if k != a)
        total += -math.log(math.exp(sims[pos]) / denom)
    return total / n2


def info_nce_numpy(q, k, queue, tau):
    """Eq. (2), literally: positive key plus K queue keys in the denominator, mean over queries."""
    q, k, queue = _normalise(q), _normalise(k), _normalise(queue)
    total = 0.0
    for n in range(q.shape[0]):
        pos = math.exp(q[n] @ k[n] / tau)
        neg = sum(math.exp(q[n] @ queue[i] / tau) for i in range(queue.shape[0]))
        total += -math.log(pos / (pos + neg))
    return total / q.shape[0]


@pytest.mark.parametrize("n,d,tau", [(1, 3, 0.1), (4, 8, 0.1), (7, 5, 0.5), (16, 32, 0.07), (5, 2, 1.0)])
def test_nt_xent_matches_numpy(n, d, tau):
    rng = np.random.default_rng(n * 100 + d)
    z_i, z_j = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    got = nt_xent(torch.from_numpy(z_i), torch.from_numpy(z_j), temperature=tau).item()
    assert got == pytest.approx(nt_xent_numpy(z_i, z_j, tau), rel=1e-5)


@pytest.mark.parametrize("n,d,k,tau", [(1, 3, 1, 0.07), (4, 8, 10, 0.07), (6, 5, 7, 0.2), (3, 16, 64, 1.0)])
def test_info_nce_matches_numpy(n, d, k, tau):
    rng = np.random.default_rng(n * 1000 + d * 10 + k)
    q, key, queue = rng.normal(size=(n, d)), rng.normal(size=(n, d)), rng.normal(size=(k, d))
    got = info_nce(torch.from_numpy(q), torch.from_numpy(key), torch.from_numpy(queue), temperature=tau).item()
    assert got == pytest.approx(info_nce_numpy(q, key, queue, tau), rel=1e-5)


@pytest.mark.parametrize("n,tau", [(2, 0.1), (5, 0.5), (8, 1.0)])
def test_nt_xent_all_equal_is_log_2n_minus_1(n, tau):
    z = torch.ones(n, 4, dtype=torch.float64)
    assert nt_xent(z, z.clone(), tau).item() == pytest.approx(math.log(2 * n - 1), rel=1e-6)


@pytest.mark.parametrize("k,tau", [(1, 0.07), (9, 0.2), (100, 1.0)])
def test_info_nce_all_equal_is_log_k_plus_1(k, tau):
    q = torch.full((3, 4), 2.0, dtype=torch.float64)
    queue = torch.ones(k, 4, dtype=torch.float64)
    assert info_nce(q, q.clone(), queue, tau).item() == pytest.approx(math.log(k + 1), rel=1e-6)


def test_nt_xent_symmetric_and_scale_invariant():
    g = torch.Generator().manual_seed(0)
    z_i, z_j = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    ref = nt_xent(z_i, z_j, 0.2)
    torch.testing.assert_close(nt_xent(z_j, z_i, 0.2), ref, rtol=1e-12, atol=0)
    scales = torch.rand(6, 1, generator=g, dtype=torch.float64) * 10 + 0.1
    torch.testing.assert_close(nt_xent(z_i * scales, z_j * 3.0, 0.2), ref, rtol=1e-10, atol=0)


def test_info_nce_scale_invariant():
    g = torch.Generator().manual_seed(1)
    q, k, queue = (torch.randn(s, 6, generator=g, dtype=torch.float64) for s in (4, 4, 11))
    ref = info_nce(q, k, queue, 0.1)
    torch.testing.assert_close(info_nce(q * 5, k * 0.2, queue * 7, 0.1), ref, rtol=1e-10, atol=0)


def test_nt_xent_gradient_reaches_both_inputs():
    g = torch.Generator().manual_seed(2)
    z_i = torch.randn(4, 8, generator=g, requires_grad=True)
    z_j = torch.randn(4, 8, generator=g, requires_grad=True)
    nt_xent(z_i, z_j, 0.1).backward()
    assert z_i.grad is not None and z_i.grad.abs().sum() > 0
    assert z_j.grad is not None and z_j.grad.abs().sum() > 0


def test_info_nce_gradient_only_to_q():
    g = torch.Generator().manual_seed(3)
    q, k, queue = (torch.randn(s, 8, generator=g, requires_grad=True) for s in (4, 4, 10))
    info_nce(q, k, queue, 0.07).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None and queue.grad is None


def test_nt_xent_gradient_matches_numerical():
    # Independent of autograd's correctness for our masking: central differences on the NumPy port.
    rng = np.random.default_rng(4)
    z_i, z_j = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    t_i = torch.from_numpy(z_i).requires_grad_(True)
    nt_xent(t_i, torch.from_numpy(z_j), 0.3).backward()
    eps, num = 1e-6, np.zeros_like(z_i)
    for idx in np.ndindex(*z_i.shape):
        hi, lo = z_i.copy(), z_i.copy()
        hi[idx] += eps
        lo[idx] -= eps
        num[idx] = (nt_xent_numpy(hi, z_j, 0.3) - nt_xent_numpy(lo, z_j, 0.3)) / (2 * eps)
    np.testing.assert_allclose(t_i.grad.numpy(), num, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("bad", [0.0, -0.1])
def test_bad_temperature_raises(bad):
    z = torch.randn(2, 3)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z, z, bad)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(z, z, z, bad)


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="z_i"):
        nt_xent(torch.randn(2, 3), torch.randn(3, 3))
    with pytest.raises(ValueError, match="queue"):
        info_nce(torch.randn(2, 3), torch.randn(2, 3), torch.randn(5, 4))


# -- reduced precision: the logits are computed in fp32 whatever the autocast state


def _leaves(rng, *shapes):
    return [torch.tensor(rng.normal(size=s), dtype=torch.float32, requires_grad=True) for s in shapes]


def _loss_and_grads(fn, leaves, autocast):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = fn(*leaves)
    grads = torch.autograd.grad(loss, [x for x in leaves if x.requires_grad])
    return loss, grads


@pytest.mark.parametrize("loss_name", ["nt_xent", "info_nce"])
def test_losses_under_bf16_autocast_equal_fp32(loss_name):
    rng = np.random.default_rng(3)
    if loss_name == "nt_xent":
        leaves = _leaves(rng, (32, 128), (32, 128))
        fn = lambda a, b: nt_xent(a, b, 0.1)  # noqa: E731
    else:
        leaves = _leaves(rng, (32, 128), (32, 128), (512, 128))
        leaves[1].requires_grad_(False)
        leaves[2].requires_grad_(False)
        fn = lambda q, k, queue: info_nce(q, k, queue, 0.07)  # noqa: E731
    ref_loss, ref_grads = _loss_and_grads(fn, leaves, autocast=False)
    loss, grads = _loss_and_grads(fn, leaves, autocast=True)
    assert loss.dtype == torch.float32
    # Before: the similarity matmul ran in bf16 and the loss moved by ~1e-3 relative.
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-7)


def test_bf16_embeddings_give_the_fp32_loss_of_their_values_while_the_backbone_runs_in_bf16():
    """A SimCLR step under bf16 autocast: the backbone computes in bf16, the loss of its (bf16) embeddings is
    the NumPy eq. (1) of those same values, to fp32 precision."""
    from videocontrast.methods import SimCLR
    from videocontrast.models import build_head

    class Flat(torch.nn.Module):
        feature_dim = 16

        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3 * 2 * 4 * 4, 16)

        def forward(self, x):
            return self.fc(x.flatten(1))

    torch.manual_seed(0)
    model = SimCLR(Flat(), build_head("mlp", 16, 32, 8), temperature=0.1)
    seen = {}
    model.backbone.register_forward_hook(lambda m, i, o: seen.update(backbone=o.dtype))
    model.head.register_forward_hook(lambda m, i, o: seen.update(z=o.detach().clone()))
    views = torch.randn(2, 12, 3, 2, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = model(views[0], views[1])
    assert seen["backbone"] == torch.bfloat16 and seen["z"].dtype == torch.bfloat16
    z = seen["z"].double().numpy()
    assert loss.item() == pytest.approx(nt_xent_numpy(z[:12], z[12:], 0.1), rel=1e-5)
