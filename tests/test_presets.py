"""The thesis presets hold the thesis's experiments: one row per preset, written from the thesis text and,
where the text is silent, from the thesis's published code (simionAndrei/MScThesis)."""

import pytest
from torch import nn

from videocontrast.config import list_presets, load_config
from videocontrast.methods import build_method
from videocontrast.models import build_backbone

# Sources: T = thesis text (section 4 / 4.1 / 5, Tables 1, 3-5); C = simionAndrei/MScThesis config.txt
# (SimCLR "temp": 0.5, "strength": 0.5, ablation "batch_size": 256, "frame_resize": 56, "num_epochs": 100);
# M = videoMOCO_scripts/main_moco.py (--moco-t 0.07, --moco-m 0.999, --moco-dim 128, SGD lr 0.03 momentum 0.9
# wd 1e-4, v1 aug without blur, v2 aug (aug_plus) with blur p 0.5, temporal_transform=None) and
# moco_scripts/moco/builder.py (mlp: Linear(512, 512), ReLU, Linear(512, 128)).
#        preset               method     head      out  temp  queue epochs temporal shift blur  strength backbone   size batch
THESIS = {
    "ucf101-simclr":      ("simclr",  "mlp",    256, 0.5,  None, 100, "shift", 8, True,  0.5, "hara_r3d_18", 224, 128),  # T Table 1, C
    "hmdb51-simclr":      ("simclr",  "mlp",    256, 0.5,  None, 100, "shift", 4, True,  0.5, "hara_r3d_18", 224, 128),  # T Table 1/4, C
    "ucf101-moco-v1":     ("moco-v1", "linear", 128, 0.07, 8192, 200, "none",  None, False, 0.5, "hara_r3d_18", 224, 128),  # T Table 1/5, M
    "hmdb51-moco-v1":     ("moco-v1", "linear", 128, 0.07, 1024, 200, "none",  None, False, 0.5, "hara_r3d_18", 224, 128),  # T Table 1/5, M
    "ucf101-moco-v2":     ("moco-v2", "mlp",    128, 0.07, 8192, 200, "none",  None, True,  0.5, "hara_r3d_18", 224, 128),  # T Table 1, M
    "hmdb51-moco-v2":     ("moco-v2", "mlp",    128, 0.07, 1024, 200, "none",  None, True,  0.5, "hara_r3d_18", 224, 128),  # T Table 1, M
    "ucf101-ablation-56": ("simclr",  "mlp",    256, 0.5,  None, 100, "none",  None, True,  0.5, "hara_r3d_18", 56, 256),   # T sec. 5, Table 3, C
    "hmdb51-ablation-56": ("simclr",  "mlp",    256, 0.5,  None, 100, "none",  None, True,  0.5, "hara_r3d_18", 56, 256),   # T sec. 5, Fig. 5, C
}


def test_every_preset_loads_and_validates():
    names = list_presets()
    assert set(THESIS) <= set(names) and "ucf101-simclr-ours" in names
    for name in names:
        load_config(name, ["data.root=/d"])


@pytest.mark.parametrize("name", sorted(THESIS))
def test_thesis_values(name):
    method, head, out, temp, queue, epochs, temporal, shift, blur, strength, backbone, size, batch = THESIS[name]
    cfg = load_config(name, ["data.root=/d"])
    assert cfg.method.name == method
    # The head the config builds (on a tiny backbone with the same 512-d output as hara_r3d_18).
    m = build_method(method, build_backbone("r3d_small", width=64), temperature=cfg.method.temperature,
                     queue_size=cfg.method.queue_size, head_hidden=cfg.model.head_hidden, head_out=cfg.model.head_out)
    linears = [c for c in m.head.modules() if isinstance(c, nn.Linear)]
    assert len(linears) == {"linear": 1, "mlp": 2}[head]
    assert (linears[0].in_features, linears[-1].out_features) == (512, out)
    assert cfg.method.temperature == temp
    if queue is not None:
        assert cfg.method.queue_size == queue
    assert cfg.train.epochs == epochs
    assert cfg.aug.temporal == temporal
    if shift is not None:
        assert cfg.aug.max_shift == shift
    assert cfg.aug.blur is blur and cfg.aug.strength == strength
    assert cfg.model.backbone == backbone
    assert (cfg.data.size, cfg.optim.batch_size) == (size, batch)
    if method.startswith("moco"):  # main_moco.py: MoCo's InstDisc/v2 augmentation and optimiser
        assert cfg.aug.min_scale == 0.2 and cfg.aug.jitter and cfg.aug.gray and cfg.aug.gray_p == 0.2
        assert cfg.aug.jitter_p == (1.0 if method == "moco-v1" else 0.8)
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == ("sgd", 0.03, 0.9, 1e-4)
        assert cfg.method.momentum == 0.999
        assert (cfg.optim.warmup_epochs, cfg.optim.hold_epochs) == (0, 0)  # main_moco.py: no warm-up
    else:  # train_videos_3d.py: Adam 3e-4, wd 1e-6; lr constant for 10 epochs, then cosine
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adam", 3e-4, 1e-6)
        assert (cfg.optim.warmup_epochs, cfg.optim.hold_epochs) == (0, 10)


def test_ours_differs_only_in_temperature_and_strength():
    ours = load_config("ucf101-simclr-ours", ["data.root=/d"]).to_dict()
    thesis = load_config("ucf101-simclr", ["data.root=/d"]).to_dict()
    assert (ours["method"]["temperature"], ours["aug"]["strength"]) == (0.1, 1.0)
    ours["method"]["temperature"], ours["aug"]["strength"] = 0.5, 0.5
    ours.pop("preset"), thesis.pop("preset")
    assert ours == thesis


def test_cpu_presets_stay_small():
    for name in ("demo", "demo-real", "cpu-small"):
        assert load_config(name).model.backbone == "r3d_small"


@pytest.mark.parametrize("name", sorted(THESIS) + ["ucf101-simclr-ours"])
def test_thesis_presets_fine_tune_on_resized_frames_as_the_thesis_code(name):
    """simionAndrei/MScThesis fine_tune.py and train_videos_3d_supervised.py train on Resize((s, s)) + ToTensor:
    the whole frame, no crop, no flip, no colour."""
    from videocontrast.build.components import build_augment

    cfg = load_config(name, ["data.root=/d"])
    assert cfg.eval.finetune_augment == "resize"
    aug = build_augment(cfg, "finetune")
    assert not (aug.crop or aug.flip or aug.jitter or aug.gray or aug.blur)
    assert build_augment(cfg).jitter  # pretraining keeps the SimCLR pipeline


def test_cpu_presets_fine_tune_on_crops_without_colour():
    from videocontrast.build.components import build_augment

    for name in ("demo", "demo-real", "cpu-small"):
        cfg = load_config(name)
        aug = build_augment(cfg, "supervised")
        aug = getattr(aug, "transform", aug)  # demo's residual input wraps it in Residual
        assert cfg.eval.finetune_augment == "crop" and aug.scale == (0.5, 1.0)
        assert aug.crop and not (aug.jitter or aug.gray or aug.blur)
        assert aug.flip is (name != "demo")  # demo: a flip changes the class (cw <-> ccw), so it stays off
