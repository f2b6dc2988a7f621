"""Config: presets load, overrides are typed, impossible settings are rejected naming the field."""

import pytest

from videocontrast.config import ConfigError, config_from_dict, list_presets, load_config, parse_overrides


def test_every_preset_loads_and_round_trips():
    for name in list_presets():
        cfg = load_config(name, ["data.root=/data"])
        assert config_from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


def test_thesis_presets_match_the_paper():
    ucf = load_config("ucf101-simclr", ["data.root=/d"])
    assert (ucf.data.clip_len, ucf.data.size, ucf.aug.temporal, ucf.aug.max_shift) == (16, 224, "shift", 8)
    assert (ucf.aug.spatial_mode, ucf.optim.batch_size, ucf.train.epochs) == ("chunk", 128, 100)
    assert load_config("hmdb51-simclr", ["data.root=/d"]).aug.max_shift == 4
    assert load_config("ucf101-moco-v2", ["data.root=/d"]).method.queue_size == 8192
    assert load_config("hmdb51-moco-v2", ["data.root=/d"]).method.queue_size == 1024
    v1 = load_config("ucf101-moco-v1", ["data.root=/d"])
    assert (v1.method.name, v1.train.epochs) == ("moco-v1", 200)
    abl = load_config("ucf101-ablation-56", ["data.root=/d"])
    assert (abl.data.size, abl.optim.batch_size, abl.train.epochs) == (56, 256, 100)


def test_overrides_are_typed():
    cfg = load_config("demo", ["optim.lr=0.5", "aug.flip=false", "model.layers=[2,2,2,2]", "data.splits=null"])
    assert cfg.optim.lr == 0.5 and cfg.aug.flip is False and cfg.model.layers == [2, 2, 2, 2]
    assert parse_overrides(["a.b=1", "a.c=x"]) == {"a": {"b": 1, "c": "x"}}


@pytest.mark.parametrize("override, field", [
    ("optim.lr=abc", "optim.lr"), ("aug.temporal=bogus", "aug.temporal"), ("nope.x=1", "nope"),
    ("data.size=500", "data.decode_size"), ("optim.batch_size=1", "optim.batch_size"),
    ("method.momentum=1.5", "method.momentum"), ("data.split=4", "data.split"), ("lr", "lr"),
    ("eval.finetune_augment=jitter", "eval.finetune_augment"),
])
def test_impossible_config_names_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config("demo", [override])


def test_finetune_augment_is_one_of_its_choices():
    from videocontrast.config import FINETUNE_AUGMENTS

    assert load_config("demo").eval.finetune_augment == "crop"
    for choice in FINETUNE_AUGMENTS:
        assert load_config("demo", [f"eval.finetune_augment={choice}"]).eval.finetune_augment == choice
    with pytest.raises(ConfigError, match=r"eval\.finetune_augment='jitter' is not one of \('crop', 'resize', "
                                          r"'pretrain'\)"):
        load_config("demo", ["eval.finetune_augment=jitter"])


def test_real_dataset_needs_root():
    with pytest.raises(ConfigError, match="data.root"):
        load_config("ucf101-simclr")
    with pytest.raises(ConfigError, match="neither a preset"):
        load_config("no-such-preset")
