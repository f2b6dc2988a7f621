"""Per-iteration schedules and optimiser parameter groups."""

import math

import numpy as np
import pytest
import torch

from videocontrast.engine.checkpoint import load_checkpoint, save_checkpoint
from videocontrast.engine.optim import build_optimizer, cosine_schedule, momentum_schedule


def test_cosine_schedule_hand_worked():
    s = cosine_schedule(1.0, 0.0, epochs=2, steps_per_epoch=5, warmup_epochs=1)
    assert len(s) == 10
    np.testing.assert_allclose(s[:5], [0.0, 0.2, 0.4, 0.6, 0.8])  # linear warm-up over the first epoch
    # cosine over the remaining 5 steps: 0.5 * (1 + cos(pi * i / 5))
    np.testing.assert_allclose(s[5:], [0.5 * (1 + math.cos(math.pi * i / 5)) for i in range(5)])
    assert s[5] == 1.0 and np.all(np.diff(s[5:]) < 0)


def test_no_weight_decay_on_norms_and_biases():
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3), torch.nn.BatchNorm3d(4), torch.nn.Linear(4, 2))
    for name in ("sgd", "adam", "adamw", "lars"):
        opt = build_optimizer(model, name, lr=0.1, weight_decay=0.5)
        decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
        for pname, p in model.named_parameters():
            assert (id(p) in decayed) == (p.ndim > 1), pname


def test_lars_step_reduces_a_quadratic():
    w = torch.nn.Parameter(torch.tensor([[3.0, -2.0]]))
    opt = build_optimizer(torch.nn.ParameterList([w]), "lars", lr=1.0, weight_decay=0.0)
    first = float((w.detach() ** 2).sum())
    for _ in range(50):
        opt.zero_grad()
        (w ** 2).sum().backward()
        opt.step()
    assert float((w.detach() ** 2).sum()) < first


def test_checkpoint_is_atomic_and_versioned(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "config": {}, "epoch": 3})
    assert load_checkpoint(path)["epoch"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left behind
    path.write_bytes(path.read_bytes()[:20])  # a truncated file (e.g. disk full) gives a clear message
    try:
        load_checkpoint(path)
        raise AssertionError("truncated checkpoint loaded")
    except RuntimeError as e:
        assert "truncated" in str(e) and str(path) in str(e)


def test_momentum_schedule_constant_and_cosine_hand_worked():
    np.testing.assert_allclose(momentum_schedule(0.99, 2, 5, cosine=False), np.full(10, 0.99))
    m = momentum_schedule(0.99, epochs=1, steps_per_epoch=100, cosine=True)
    # m_i = 1 - (1 - m0) * (cos(pi * i / n) + 1) / 2 (BYOL / DINO), from m0 towards 1
    assert m[0] == pytest.approx(0.99)
    assert m[50] == pytest.approx(1 - 0.01 * 0.5)
    assert m[25] == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)
    assert np.all(np.diff(m) > 0) and m[-1] < 1.0


def test_lr_scales_put_the_backbone_at_a_fraction_of_the_head():
    # Fine-tuning: backbone lr = head lr x 0.1; each group records its scale for the engine's schedule.
    model = torch.nn.Module()
    model.backbone = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3), torch.nn.BatchNorm3d(4))
    model.head = torch.nn.Linear(4, 2)
    opt = build_optimizer(model, "sgd", lr=0.02, weight_decay=1e-4, lr_scales={"backbone.": 0.1})
    by_param = {id(p): g for g in opt.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        g = by_param[id(p)]
        scale = 0.1 if name.startswith("backbone.") else 1.0
        assert g["lr_scale"] == scale and g["lr"] == pytest.approx(0.02 * scale), name
        assert (g["weight_decay"] > 0) == (p.ndim > 1), name


def test_cosine_schedule_hold_phase_hand_worked():
    # thesis code (train_videos_3d.py): the lr stays at its peak for the first epochs, then decays by cosine
    s = cosine_schedule(2.0, 0.0, epochs=4, steps_per_epoch=2, warmup_epochs=1, hold_epochs=1)
    assert len(s) == 8
    np.testing.assert_allclose(s[:2], [0.0, 1.0])  # warm-up over the first epoch
    np.testing.assert_allclose(s[2:4], [2.0, 2.0])  # held for one epoch
    np.testing.assert_allclose(s[4:], [1.0 + math.cos(math.pi * i / 4) for i in range(4)])  # 2 * 0.5 * (1 + cos)
    # a hold longer than the run is cut to the run: the lr never decays, the length never changes
    np.testing.assert_allclose(cosine_schedule(1.0, 0.0, 2, 3, hold_epochs=5), np.ones(6))


def test_negative_hold_is_rejected_by_name():
    from videocontrast.config import ConfigError, load_config
    with pytest.raises(ConfigError, match="optim.hold_epochs"):
        load_config("cpu-small", ["optim.hold_epochs=-1"])
