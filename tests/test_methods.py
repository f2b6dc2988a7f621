"""SimCLR and MoCo: gradients, the EMA rule, the FIFO queue, wiring of the loss, build_method."""


import numpy as np
import pytest
import torch
from torch import nn

from videocontrast.config import ConfigError, load_config
from videocontrast.methods import MoCo, SimCLR, Supervised, build_method, check_momentum, encoder_of
from videocontrast.models import build_backbone, build_head

SHAPE = (4, 3, 4, 16, 16)  # (B, C, T, H, W)


class LinearEncoder(nn.Module):
    """No BatchNorm: a clip's features do not depend on the rest of the batch."""

    def __init__(self, in_shape=SHAPE[1:], dim=6):
        super().__init__()
        self.fc = nn.Linear(int(np.prod(in_shape)), dim)
        self.feature_dim = dim

    def forward(self, x):
        return self.fc(x.flatten(1))


def _small():
    return build_backbone("r3d_small", width=8)


def _views(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)


def _backward_reaches_every_trainable(model, *inputs):
    """One forward and backward on ``inputs`` (default: two random views); every trainable parameter must get
    a non-zero gradient."""
    loss, stats = model(*(inputs or _views()))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert missing == []
    return loss, stats


def test_simclr_every_parameter_gets_gradient():
    torch.manual_seed(0)
    model = SimCLR(_small(), build_head("mlp", 64, 32, 16), temperature=0.1)
    loss, stats = _backward_reaches_every_trainable(model)
    assert set(stats) >= {"loss", "pos_sim"} and float(stats["loss"]) == pytest.approx(loss.item())


def test_simclr_loss_is_nt_xent_of_the_two_views():
    # No BN, so the concatenated forward equals per-view forwards; reference: eq. (1) in NumPy.
    torch.manual_seed(0)
    model = SimCLR(LinearEncoder(), build_head("mlp", 6, 8, 5), temperature=0.3)
    v1, v2 = _views(3)
    loss, stats = model(v1, v2)
    with torch.no_grad():
        p = torch.cat([model.head(model.backbone(v1)), model.head(model.backbone(v2))]).double().numpy()
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    n2 = len(p)
    sim = np.exp(p @ p.T / 0.3)
    expected = np.mean([-np.log(sim[a, (a + n2 // 2) % n2] / (sim[a].sum() - sim[a, a])) for a in range(n2)])
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    cos = np.sum(p[: n2 // 2] * p[n2 // 2:], axis=1).mean()
    assert float(stats["pos_sim"]) == pytest.approx(cos, rel=1e-5)


def test_moco_gradients_only_in_query_encoder():
    torch.manual_seed(0)
    model = MoCo(_small(), build_head("mlp", 64, 32, 16), queue_size=10)
    loss, stats = _backward_reaches_every_trainable(model)
    key_params = list(model.key_backbone.parameters()) + list(model.key_head.parameters())
    assert key_params and all(p.grad is None and not p.requires_grad for p in key_params)
    assert {"loss", "pos_sim", "neg_sim"} <= set(stats)


def test_moco_momentum_update_is_ema():
    torch.manual_seed(0)
    model = MoCo(_small(), build_head("mlp", 64, 32, 16), queue_size=10)
    model(*_views())[0].backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5).step()
    q_state = {k: v.clone() for k, v in list(model.backbone.state_dict().items())}
    k_before = {k: v.clone() for k, v in model.key_backbone.state_dict().items()}
    q_params = dict(model.backbone.named_parameters())
    model.momentum_update(0.9)
    assert model.momentum == 0.9
    moved = 0
    for name, k_new in model.key_backbone.state_dict().items():
        if name in q_params:  # parameter: EMA
            expected = 0.9 * k_before[name] + 0.1 * q_state[name]
            torch.testing.assert_close(k_new, expected, rtol=1e-6, atol=1e-7)
            moved += int(not torch.equal(k_new, k_before[name]))
        else:  # buffer (BN running stats): copied from the query encoder
            assert torch.equal(k_new, q_state[name]), name
    assert moved > 0
    head_q, head_k = model.head[0].weight, model.key_head[0].weight
    k0 = head_k.clone()
    model.momentum_update(0.5)
    torch.testing.assert_close(head_k, 0.5 * k0 + 0.5 * head_q.detach())


def _tiny_moco(queue_size, dim=3, **kw):
    torch.manual_seed(0)
    return MoCo(LinearEncoder(dim=4), build_head("linear", 4, out_dim=dim), queue_size=queue_size, bn_mode="none", **kw)


def test_queue_fifo_wraps_around():
    model = _tiny_moco(queue_size=5, dim=3)
    q0 = model.queue.clone()
    a, b, c = (torch.randn(2, 3) for _ in range(3))
    model._dequeue_and_enqueue(a)
    assert model.queue_ptr.item() == 2
    torch.testing.assert_close(model.queue, torch.cat([a, q0[2:]]))
    model._dequeue_and_enqueue(b)
    assert model.queue_ptr.item() == 4
    torch.testing.assert_close(model.queue, torch.cat([a, b, q0[4:]]))
    model._dequeue_and_enqueue(c)  # row 4 <- c[0], wraps: row 0 <- c[1]
    assert model.queue_ptr.item() == 1
    torch.testing.assert_close(model.queue, torch.stack([c[1], a[1], b[0], b[1], c[0]]))


def test_queue_batch_larger_than_queue_keeps_newest():
    model = _tiny_moco(queue_size=3, dim=2)
    model._dequeue_and_enqueue(torch.randn(1, 2))  # ptr 1
    keys = torch.arange(10.0).reshape(5, 2)  # 5 keys into K=3: the newest 3 survive in FIFO positions
    model._dequeue_and_enqueue(keys)
    # Writing the 5 keys one by one from row 1 hits rows 1, 2, 0, 1, 2: the last writes are keys 2, 3, 4.
    torch.testing.assert_close(model.queue, torch.stack([keys[2], keys[3], keys[4]]))
    assert model.queue_ptr.item() == (1 + 5) % 3


def test_moco_forward_uses_queue_before_enqueue_and_enqueues_normalised_keys():
    # No BN and key encoder == query encoder at init: k = normalise(f(view_k)); reference: numpy eq. (2).
    model = _tiny_moco(queue_size=6, dim=3, temperature=0.2)
    v_q, v_k = _views(1)
    queue_before = model.queue.clone().numpy().astype(np.float64)
    with torch.no_grad():
        fq = model.head(model.backbone(v_q)).double().numpy()
        fk = model.head(model.backbone(v_k)).double().numpy()
    loss, _ = model(v_q, v_k)
    fq /= np.linalg.norm(fq, axis=1, keepdims=True)
    fk /= np.linalg.norm(fk, axis=1, keepdims=True)
    expected = np.mean([
        -np.log(np.exp(fq[n] @ fk[n] / 0.2) / (np.exp(fq[n] @ fk[n] / 0.2) + np.exp(queue_before @ fq[n] / 0.2).sum()))
        for n in range(len(fq))
    ])
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(model.queue[:4].numpy(), fk, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.queue[4:].numpy(), queue_before[4:], rtol=0, atol=0)
    assert model.queue_ptr.item() == 4


@pytest.mark.parametrize("splits", [1, 2, 3])
def test_single_process_shuffle_is_invertible(splits):
    model = _tiny_moco(queue_size=4, shuffle_splits=splits)
    x = torch.arange(24.0).reshape(6, 4)
    xs, idx = model._batch_shuffle(x)
    assert sorted(xs[:, 0].tolist()) == sorted(x[:, 0].tolist())
    torch.testing.assert_close(model._batch_unshuffle(xs, idx), x)


def test_shuffle_bn_keys_in_input_order():
    # With BN in eval mode, keys do not depend on the batch: the shuffled/chunked path must give f(view_k) in order.
    torch.manual_seed(0)
    model = MoCo(_small(), build_head("mlp", 64, 32, 16), queue_size=8, bn_mode="shuffle", shuffle_splits=2)
    model.key_backbone.eval()
    _, v_k = _views(2)
    with torch.no_grad():
        ref = nn.functional.normalize(model.key_head(model.key_backbone(v_k)), dim=1)
    torch.testing.assert_close(model._keys(v_k), ref, rtol=1e-5, atol=1e-6)


def test_moco_warns_when_queue_exceeds_dataset():
    with pytest.warns(UserWarning, match="num_train_clips"):
        _tiny_moco(queue_size=50, num_train_clips=20)
    with pytest.warns(UserWarning, match="queue_size"):
        build_method("moco-v1", LinearEncoder(), queue_size=100, num_train_clips=99)


def test_momentum_range_is_one_rule_for_config_and_method():
    # [0, 1): 1 would freeze the key encoder. The config validates with the same function as MoCo.
    assert check_momentum(0.0) == 0.0 and check_momentum(0.999) == 0.999
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            check_momentum(bad)
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            MoCo(build_backbone("r3d_small", width=4), build_head("linear", 32, out_dim=8), queue_size=4,
                 momentum=bad)
        with pytest.raises(ConfigError, match=r"method.momentum"):
            load_config(None, [f"method.momentum={bad}"])


@pytest.mark.parametrize("name,kind_out,tau", [("simclr", 256, 0.1), ("moco-v1", 128, 0.07), ("moco-v2", 256, 0.2)])
def test_build_method_defaults(name, kind_out, tau):
    backbone = LinearEncoder()
    method = build_method(name, backbone, queue_size=16)
    assert method.temperature == tau
    assert encoder_of(method) is backbone
    linears = [m for m in method.head if isinstance(m, nn.Linear)]
    assert linears[-1].out_features == kind_out
    assert len(linears) == (1 if name == "moco-v1" else 2)
    if name != "simclr":
        assert method.queue.shape == (16, kind_out)
        torch.testing.assert_close(method.queue.norm(dim=1), torch.ones(16))


def test_build_method_errors():
    with pytest.raises(ValueError, match="simclr.*moco-v1.*moco-v2"):
        build_method("byol", LinearEncoder())
    with pytest.raises(ValueError, match="bn_mode"):
        build_method("moco-v2", LinearEncoder(), bn_mode="ghost")


def test_supervised_objective_is_cross_entropy_and_trains_backbone_and_head():
    # Reference: cross-entropy written out in NumPy on the same logits.
    torch.manual_seed(0)
    model = Supervised(LinearEncoder(), num_classes=3)
    x, _ = _views(4)
    y = torch.tensor([0, 2, 1, 2])
    loss, stats = _backward_reaches_every_trainable(model, x, y)
    with torch.no_grad():
        logits = model.classifier()(x).double().numpy()
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert loss.item() == pytest.approx(-logp[np.arange(4), y.numpy()].mean(), rel=1e-5)
    assert float(stats["acc"]) == pytest.approx(float((logits.argmax(1) == y.numpy()).mean()))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model(x, torch.tensor([0, 1, 3, -1]))
