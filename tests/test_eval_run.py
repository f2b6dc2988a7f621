"""The evaluation glue: feature caches must never serve features of a different network or input."""

import torch

from videocontrast.config import load_config
from videocontrast.eval.run import resolve_encoder


def test_random_encoders_of_different_architectures_do_not_share_a_cache_key(tmp_path):
    a = load_config("demo", ["model.width=8"])
    b = load_config("demo", ["model.width=16"])
    ea = resolve_encoder("random", a, torch.device("cpu"), tmp_path)
    eb = resolve_encoder("random", b, torch.device("cpu"), tmp_path)
    assert ea.fingerprint != eb.fingerprint
    assert ea.module.feature_dim != eb.module.feature_dim
    same = resolve_encoder("random", load_config("demo", ["model.width=8"]), torch.device("cpu"), tmp_path)
    assert same.fingerprint == ea.fingerprint  # same architecture and seed: same weights, cache reusable
    for pa, pb in zip(ea.module.parameters(), same.module.parameters()):
        assert torch.equal(pa, pb)


def test_external_state_dict_is_used_as_weights_of_the_configured_backbone(tmp_path):
    from videocontrast.models import build_backbone

    cfg = load_config("demo", ["model.width=8"])
    src = build_backbone("r3d_small", width=8)
    path = tmp_path / "external.pth"
    torch.save(src.state_dict(), path)  # a plain state dict, not a videocontrast checkpoint
    enc = resolve_encoder(str(path), cfg, torch.device("cpu"), tmp_path)
    assert enc.description.startswith("external weights")
    for (name, a), b in zip(src.state_dict().items(), enc.module.state_dict().values()):
        assert torch.equal(a, b), name
