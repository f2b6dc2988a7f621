"""Per-iteration schedules and optimiser parameter groups."""

import math

import numpy as np
import torch

from videocontrast.engine.checkpoint import load_checkpoint, save_checkpoint
from videocontrast.engine.optim import build_optimizer, cosine_schedule


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
