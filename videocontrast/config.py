"""Run configuration: dataclasses, YAML presets shipped in the package, ``key=value`` overrides.

A run is fully described by one :class:`Config`. It is built from a preset (``videocontrast/presets/*.yaml``)
or a user YAML file, then command-line overrides such as ``optim.lr=0.01`` or ``aug.temporal=drop``, then
validated. The resolved config is written into every run folder (``config.yaml``) and into every
checkpoint, so a number can always be traced back to the exact settings that produced it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from .fileio import atomic_write_text
# The names a config chooses from, torch-free (importing the config, or `videocontrast --help`, loads no torch); the
# modules that implement each concept import the same lists from there.
from .names import (BACKBONE_NAMES, BN_MODES, CACHE_MODES, CHANNEL_BACKBONES, DATASET_NAMES, DIFFERENCE_INPUTS,
                    EVAL_CROPS, INPUT_MODES, METHODS, OPTIMIZERS, PRECISIONS, RECALL_KS, SPATIAL_MODES,
                    TEMPORAL_TRANSFORMS, check_device_name, check_momentum)

PRESET_DIR = Path(__file__).parent / "presets"
# The linear probe's grid of inverse L2 strengths C, searched by cross-validation on the training split.
LINEAR_CS = (0.001, 0.01, 0.1, 1.0, 10.0)
# eval.linear_input: what a frozen or fine-tuned encoder is shown at evaluation (build.build_eval_transform).
LINEAR_INPUTS = ("crop", "resize")
# eval.retrieval_protocol: which retrieval evaluation runs (eval.run.run_retrieve).
RETRIEVAL_PROTOCOLS = ("ours", "thesis")
# eval.finetune_augment: the training augmentation of the supervised objectives (fine-tuning and the supervised
# baseline), turned into aug.* settings by build.finetune_aug: crop = random resized crop of 0.5-1 of the frame's
# area + aug.flip, no colour jitter, grayscale or blur (ours); resize = the whole frame resized to data.size, nothing
# random (the thesis code's fine_tune.py / train_videos_3d_supervised.py); pretrain = aug.* as pretraining uses them
# (SimCLR's pipeline: what fine-tuning trained with before this setting existed).
FINETUNE_AUGMENTS = ("crop", "resize", "pretrain")
# Range limits of validate: far beyond any real run, well before the schedules overflow (an lr schedule array has
# epochs x steps entries; a float epoch count x steps becomes an int).
MAX_LR = 100.0  # LARS at a batch of 16k takes ~5
MAX_EPOCHS = 100_000


class ConfigError(ValueError):
    """A configuration a user wrote cannot be run; the message names the field and what to do."""


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line saying where and why PyYAML stopped (its own message spans several lines with a caret)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return " ".join(f"{where}{problem}".split())


# YAML aliases let a small file stand for billions of values ("billion laughs": nine nested lists of nine aliases
# each), which safe_load returns as shared references in no time and which explode only when walked or printed.
# So a value is never walked, printed or turned into a string unless it is a scalar (or, for a list field, a list of
# at most MAX_LIST_ITEMS scalars): see _coerce.
MAX_LIST_ITEMS = 10_000


def _safe_load(text: str) -> Any:
    """``yaml.safe_load``, with nesting too deep for the parser (``[[[[...`` 10^4 deep: a RecursionError from
    inside PyYAML) reported as a YAML error like any other."""
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


def _read_yaml_file(path: Path) -> dict[str, Any]:
    """A config file's top-level mapping, read with ``yaml.safe_load`` (plain data only: a ``!!python/...``
    tag is an error, never a call). Any problem is a one-line ConfigError naming the file."""
    try:
        data = _safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"config file '{path}' is not valid YAML ({_yaml_problem(e)}); fix it (the config.yaml "
                          "of any run folder is a valid example)") from None
    except (UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"config file '{path}' cannot be read as UTF-8 text ({type(e).__name__}); give a "
                          "YAML file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' holds a {type(data).__name__}, not a mapping of sections "
                          "(e.g. `optim: {lr: 0.01}`)")
    return data


@dataclass
class DataConfig:
    dataset: str = "synthetic"
    root: str | None = None  # synthetic: where the clips are generated (default: <out>/../synthetic-data)
    splits: str | None = None  # ucf101/hmdb51 split-file folder (default: looked up next to root)
    split: int = 1
    clip_len: int = 16  # m of "Random m"
    stride: int = 1  # every k-th frame (strided Random m)
    decode_size: int = 128  # short side after decoding (320x240 -> 171x128)
    size: int = 112  # crop size fed to the network
    num_workers: int = 2
    eval_clips: int = 5  # clips per video for evaluation (video-level = mean over clips x crops)
    eval_crops: int = 1  # 1: centre crop; 3: start, centre and end of the long side
    input: str = "rgb"  # rgb | residual (frame differences: removes the static scene, keeps motion)
    require_complete: bool = False
    strict: bool = False  # a bad video file stops the run instead of being skipped
    # The synthetic motion dataset (generated once, no download).
    synthetic_videos_per_class: int = 40
    synthetic_frames: int = 32
    synthetic_size: int = 64
    synthetic_seed: int = 0
    synthetic_appearances: int = 0  # 0: free appearance; K: one of K appearance bundles (class-independent)
    # Decoded-frame cache for training (data/cache.py): none | memory | disk | auto (memory if it fits in half
    # the available RAM, else disk under the run folder if it fits, else none).
    cache: str = "none"
    # Subsets of the training videos for evaluation (data/subsets.py; pretraining ignores them). 0: off.
    val_fraction: float = 0.0  # a validation split of the training videos, grouped by source, scored instead of test
    labels_per_class: int = 0  # train the probe / fine-tuning on N labelled videos per class
    label_fraction: float = 0.0  # ... or on this fraction of each class (per class round(F * n_c), at least 1)
    labelled: str | None = None  # ... or on the training videos a list file names (`curate select`'s queue.txt)
    # dataset=folder with class subfolders but no train/ and test/: the share of each class held out for test
    # (whole name groups, drawn by train.seed, written to the run folder and reused; data/subsets.py)
    test_fraction: float = 0.3


@dataclass
class AugConfig:
    temporal: str = "shift"  # none | shift | drop | reverse | shuffle
    max_shift: int = 8  # s of RandomShift[-s, s]
    spatial_mode: str = "chunk"  # chunk: one draw per clip; frame: one draw per frame
    strength: float = 1.0  # colour-jitter strength s
    jitter_p: float = 0.8  # probability of colour jitter per clip
    gray_p: float = 0.2  # probability of grayscale per clip
    flip_p: float = 0.5
    blur_p: float = 0.5
    min_scale: float = 0.08  # random resized crop scale range [min_scale, 1]
    crop: bool = True
    flip: bool = True
    jitter: bool = True
    gray: bool = True
    blur: bool = True
    on_device: bool = True  # batched on the training device (False: per sample in loader workers)


@dataclass
class ModelConfig:
    backbone: str = "r3d_18"
    weights: str | None = None  # local state-dict file to start from (never downloaded)
    width: int = 64  # r3d_small only
    layers: list[int] = field(default_factory=lambda: [1, 1, 1, 1])  # r3d_small only
    head_hidden: int = 512
    head_out: int | None = None  # None: method default (256 MLP, 128 linear)


@dataclass
class MethodConfig:
    name: str = "simclr"
    temperature: float | None = None  # None: method default (SimCLR 0.1, MoCo v1 0.07, v2 0.2)
    queue_size: int = 8192
    momentum: float = 0.999
    momentum_schedule: bool = False  # cosine schedule of m towards 1 (BYOL/DINO)
    bn_mode: str = "shuffle"  # MoCo key encoder: shuffle | sync | none


@dataclass
class OptimConfig:
    name: str = "adam"  # sgd | adam | adamw | lars
    lr: float = 3e-4  # per global batch of `batch_size`
    weight_decay: float = 1e-6
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    hold_epochs: float = 0.0  # lr held at its peak after warm-up, before the cosine decay (thesis code: 10)
    min_lr_ratio: float = 0.0
    batch_size: int = 128  # global batch (all processes together)
    accum_steps: int = 1


@dataclass
class TrainConfig:
    epochs: int = 100
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    compile: bool = False
    channels_last: bool = True
    deterministic: bool = False
    save_every: int = 1  # epochs between writes of checkpoints/last.pt
    keep_every: int = 0  # also keep checkpoints/epoch_NNNN.pt every N epochs (0: never)
    log_every: int = 10  # iterations between metrics.jsonl lines
    knn_every: int = 0  # epochs between kNN monitor evaluations (0: off; needs labels)
    max_steps_per_epoch: int = 0  # 0: full epoch (smoke tests and benchmarks cap it)
    time_limit_s: float = 0.0  # 0: none; otherwise stop cleanly (with a checkpoint) after this


@dataclass
class EvalConfig:
    knn_k: int = 20
    knn_temperature: float = 0.07
    linear_cs: list[float] = field(default_factory=lambda: list(LINEAR_CS))
    cv_folds: int = 5
    batch_size: int = 32
    recall_ks: list[int] = field(default_factory=lambda: list(RECALL_KS))
    # Fine-tuning (and the supervised baseline) run on the training engine with these settings in place of
    # `optim.*` / `train.epochs`; batch size, precision, device and logging are shared with pretraining.
    finetune_epochs: int = 10
    finetune_lr: float = 0.01  # the classifier's peak lr
    finetune_backbone_lr_ratio: float = 0.1  # backbone lr = finetune_lr x this (thesis / DPC: 1/10)
    finetune_optimizer: str = "sgd"
    finetune_weight_decay: float = 1e-4
    finetune_warmup_epochs: float = 1.0
    # The supervised objectives' training augmentation (one of FINETUNE_AUGMENTS): a fine-tuning run records it as
    # the aug.* of its own config (eval.finetune.finetune_config), which a resume may not change.
    finetune_augment: str = "crop"
    # Evaluation input: crop = centre crop of the decoded frame (ours); resize = the whole frame resized to
    # data.size x data.size, aspect not kept (thesis sec. 4: "we resize the video frames from 320x240 to 224x224").
    linear_input: str = "crop"
    # Retrieval: ours = test videos query the training videos with backbone features, R@k; thesis = test videos
    # query the other test videos with the projection head's output (thesis Fig. 4), cosine, 3 neighbours shown.
    retrieval_protocol: str = "ours"


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    preset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def apply_overrides(cfg: Config, overrides: list[str] | dict[str, Any]) -> Config:
    """Set ``key=value`` strings (or a nested dict) on ``cfg`` in place, rejecting unknown fields; not validated."""
    _apply(cfg, parse_overrides(overrides) if isinstance(overrides, list) else overrides, "")
    return cfg


def _apply(obj: Any, data: dict[str, Any], where: str) -> None:
    """Recursively set dataclass fields from a nested dict, rejecting unknown keys by name."""
    hints = get_type_hints(type(obj))
    names = {f.name for f in fields(obj)}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise ConfigError(f"unknown config field '{path}'; valid fields here: {sorted(names)}")
        current = getattr(obj, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"config field '{path}' is a section; give it as a mapping")
            _apply(current, value, path)
        else:
            setattr(obj, key, _coerce(value, hints[key], path))


_SCALARS = (str, int, float, bool)


def _shown(value: Any) -> str:
    """A value for an error message: short scalars as they are, anything else by its type (a list or mapping from
    YAML aliases may be too large to print)."""
    if isinstance(value, _SCALARS):
        text = repr(value)
        return text if len(text) <= 80 else f"{text[:77]}..."
    return f"a {type(value).__name__}"


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """Convert a YAML/command-line value to the field's declared type (int, float, bool, list, optional).

    Only scalars (and, for list fields, lists of scalars) are converted: a mapping or list where a scalar belongs
    is an error naming the field, never turned into its string (which YAML aliases can make astronomically long).
    """
    text = str(hint)
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"config field '{path}' may not be null")
    is_list = text.startswith("list") or text.startswith("typing.List")
    try:
        if is_list:
            if isinstance(value, str):
                value = _safe_load(value)
            if not isinstance(value, (list, tuple)):
                value = [value]
            if len(value) > MAX_LIST_ITEMS or not all(isinstance(v, _SCALARS) for v in value):
                raise TypeError(value)
            inner = float if "float" in text else int if "int" in text else str
            return [inner(v) for v in value]
        if not isinstance(value, _SCALARS):
            raise TypeError(value)
        if hint is bool or text == "bool":
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        for typ in (int, float):
            if hint is typ or text in (typ.__name__, f"{typ.__name__} | None"):
                if typ is int and isinstance(value, float) and not value.is_integer():
                    raise ValueError(value)
                return typ(value)
        if "str" in text and not isinstance(value, str):
            return str(value)
        return value
    except (TypeError, ValueError, OverflowError, yaml.YAMLError):
        raise ConfigError(f"config field '{path}': cannot use {_shown(value)} (expected {text})") from None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=0.1", "aug.flip=false"]`` -> nested dict, values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {_shown(item)} is not of the form section.field=value (e.g. optim.lr=0.01)")
        key, raw = item.split("=", 1)
        try:
            value = _safe_load(raw) if raw != "" else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {_shown(item)}: the value is not valid YAML ({_yaml_problem(e)})") from None
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def load_config(preset: str | None = None, overrides: list[str] | dict | None = None) -> Config:
    """Build a validated :class:`Config` from a preset name or YAML path plus overrides.

    Args:
        preset: a name from :func:`list_presets` (e.g. ``"ucf101-simclr"``), a path to a YAML file, or None
            for the defaults.
        overrides: ``key=value`` strings (``optim.lr=0.01``) or an already nested dict.
    """
    cfg = _load_preset(preset) if preset else Config()
    if overrides:
        apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg


def _load_preset(preset: str) -> Config:
    """A preset (with its ``base:`` chain) applied to the defaults; not validated yet (overrides follow)."""
    path = Path(preset)
    if not path.suffix:
        path = PRESET_DIR / f"{preset}.yaml"
    if not path.exists():
        raise ConfigError(f"config '{preset}' is neither a preset ({', '.join(list_presets())}) nor a YAML file")
    data = _read_yaml_file(path)
    base = data.pop("base", None)  # presets may inherit from another preset
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"config file '{path}': base: must be a preset name or a YAML path, not {_shown(base)}")
    cfg = _load_preset(base) if base else Config()
    _apply(cfg, data, "")
    cfg.preset = preset
    return cfg


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a config saved with :meth:`Config.to_dict` (checkpoints, config.yaml)."""
    cfg = Config()
    _apply(cfg, data, "")
    return cfg


def validate(cfg: Config) -> None:
    """Reject impossible settings up front, naming the field, instead of failing an hour into a run."""
    d, a, o, m = cfg.data, cfg.aug, cfg.optim, cfg.method

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(msg)

    need(d.dataset in DATASET_NAMES, f"data.dataset='{d.dataset}' is not one of {DATASET_NAMES}")
    need(m.name in METHODS, f"method.name='{m.name}' is not one of {tuple(METHODS)}")
    need(cfg.model.backbone in BACKBONE_NAMES,
         f"model.backbone='{cfg.model.backbone}' is not one of {BACKBONE_NAMES}")
    need(a.temporal in TEMPORAL_TRANSFORMS, f"aug.temporal='{a.temporal}' is not one of {TEMPORAL_TRANSFORMS}")
    need(a.spatial_mode in SPATIAL_MODES, f"aug.spatial_mode='{a.spatial_mode}' is not one of {SPATIAL_MODES}")
    need(d.input in INPUT_MODES, f"data.input='{d.input}' is not one of {INPUT_MODES}")
    need(d.cache in CACHE_MODES, f"data.cache='{d.cache}' is not one of {CACHE_MODES}")
    need(d.clip_len >= (2 if d.input in DIFFERENCE_INPUTS else 1),
         f"data.clip_len={d.clip_len} must be >= 1 (>= 2 with data.input={d.input})" if d.input in DIFFERENCE_INPUTS
         else f"data.clip_len={d.clip_len} must be >= 1")
    need(d.input != "both" or cfg.model.backbone in CHANNEL_BACKBONES,
         f"data.input=both feeds 6 channels, which model.backbone={cfg.model.backbone} (torchvision's, 3 channels) "
         f"cannot take; use one of {CHANNEL_BACKBONES} or data.input=rgb|residual")
    need(d.stride >= 1, f"data.stride={d.stride} must be >= 1")
    need(d.eval_crops in EVAL_CROPS, f"data.eval_crops={d.eval_crops} must be 1 (centre) or 3 (start, centre, end)")
    need(d.split in (1, 2, 3), f"data.split={d.split} must be 1, 2 or 3 (the official splits)")
    need(d.size >= 8, f"data.size={d.size} must be >= 8 pixels")
    need(d.decode_size >= d.size, f"data.decode_size={d.decode_size} must be >= data.size={d.size} "
         "(frames are decoded at decode_size, then cropped to size)")
    need(a.max_shift >= 0, f"aug.max_shift={a.max_shift} must be >= 0")
    need(0 < a.min_scale <= 1, f"aug.min_scale={a.min_scale} must be in (0, 1]")
    for field_name, value in (("optim.name", o.name), ("eval.finetune_optimizer", cfg.eval.finetune_optimizer)):
        need(value in OPTIMIZERS, f"{field_name}='{value}' is not one of {OPTIMIZERS}")
    # every float a finite number first: inf/nan pass comparisons silently (nan > 0 is False, so `lr > 0` alone
    # would say so, but nan <= 1 is False too) and overflow in the schedules as tracebacks
    for section in fields(cfg):
        sub = getattr(cfg, section.name)
        if not is_dataclass(sub):
            continue
        for f in fields(sub):
            v = getattr(sub, f.name)
            for x in (v if isinstance(v, list) else [v]):
                need(not isinstance(x, float) or math.isfinite(x),
                     f"{section.name}.{f.name}={x} must be a finite number")
    need(0 < o.lr <= MAX_LR, f"optim.lr={o.lr} must be in (0, {MAX_LR:g}] (the peak lr per global batch)")
    need(0 <= o.weight_decay <= 1, f"optim.weight_decay={o.weight_decay} must be in [0, 1]")
    need(0 <= o.momentum <= 1, f"optim.momentum={o.momentum} must be in [0, 1]")
    need(0 <= o.min_lr_ratio <= 1, f"optim.min_lr_ratio={o.min_lr_ratio} must be in [0, 1] (a share of optim.lr)")
    need(o.batch_size >= 2, f"optim.batch_size={o.batch_size} must be >= 2 (contrastive losses need negatives)")
    need(o.accum_steps >= 1, f"optim.accum_steps={o.accum_steps} must be >= 1")
    for name in ("warmup_epochs", "hold_epochs"):
        need(0 <= getattr(o, name) <= MAX_EPOCHS, f"optim.{name}={getattr(o, name)} must be in [0, {MAX_EPOCHS}]")
    need(m.queue_size >= 1, f"method.queue_size={m.queue_size} must be >= 1")
    try:
        check_momentum(m.momentum, "method.momentum")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    need(m.bn_mode in BN_MODES, f"method.bn_mode='{m.bn_mode}' is not one of {BN_MODES}")
    t = cfg.train
    need(1 <= t.epochs <= MAX_EPOCHS, f"train.epochs={t.epochs} must be in [1, {MAX_EPOCHS}]")
    try:
        check_device_name(t.device)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    need(m.temperature is None or m.temperature > 0, f"method.temperature={m.temperature} must be > 0")
    for name in ("jitter_p", "gray_p", "flip_p", "blur_p"):
        need(0 <= getattr(a, name) <= 1, f"aug.{name}={getattr(a, name)} must be a probability in [0, 1]")
    need(a.strength >= 0, f"aug.strength={a.strength} must be >= 0")
    for name in ("save_every", "log_every"):
        need(getattr(t, name) >= 1, f"train.{name}={getattr(t, name)} must be >= 1")
    for name in ("keep_every", "knn_every", "max_steps_per_epoch"):
        need(getattr(t, name) >= 0, f"train.{name}={getattr(t, name)} must be >= 0 (0: off)")
    need(t.time_limit_s >= 0, f"train.time_limit_s={t.time_limit_s} must be >= 0 (0: no limit)")
    need(d.num_workers >= 0, f"data.num_workers={d.num_workers} must be >= 0 (0: load in the main process)")
    need(0 <= d.val_fraction < 1, f"data.val_fraction={d.val_fraction} must be in [0, 1) (0: no validation split)")
    need(0 < d.test_fraction < 1, f"data.test_fraction={d.test_fraction} must be in (0, 1) (the share of each class "
         "a folder without train/ and test/ holds out for test, e.g. 0.3)")
    need(d.labels_per_class >= 0, f"data.labels_per_class={d.labels_per_class} must be >= 0 (0: every label)")
    need(0 <= d.label_fraction <= 1, f"data.label_fraction={d.label_fraction} must be in [0, 1] (0: every label)")
    need(not (d.labels_per_class and d.label_fraction),
         "data.labels_per_class and data.label_fraction are both set; choose one")
    need(not (d.labelled and (d.labels_per_class or d.label_fraction)),
         "data.labelled and data.labels_per_class/data.label_fraction are both set; choose one")
    ev = cfg.eval
    need(1 <= ev.finetune_epochs <= MAX_EPOCHS,
         f"eval.finetune_epochs={ev.finetune_epochs} must be in [1, {MAX_EPOCHS}]")
    need(0 < ev.finetune_lr <= MAX_LR, f"eval.finetune_lr={ev.finetune_lr} must be in (0, {MAX_LR:g}]")
    need(0 <= ev.finetune_weight_decay <= 1, f"eval.finetune_weight_decay={ev.finetune_weight_decay} must be in [0, 1]")
    need(ev.finetune_backbone_lr_ratio >= 0,
         f"eval.finetune_backbone_lr_ratio={ev.finetune_backbone_lr_ratio} must be >= 0")
    need(0 <= ev.finetune_warmup_epochs <= MAX_EPOCHS,
         f"eval.finetune_warmup_epochs={ev.finetune_warmup_epochs} must be in [0, {MAX_EPOCHS}]")
    need(ev.knn_temperature > 0, f"eval.knn_temperature={ev.knn_temperature} must be > 0")
    need(cfg.train.precision in PRECISIONS, f"train.precision='{cfg.train.precision}' is not one of {PRECISIONS}")
    e = cfg.eval
    need(e.linear_input in LINEAR_INPUTS, f"eval.linear_input='{e.linear_input}' is not one of {LINEAR_INPUTS}")
    need(e.linear_input == "crop" or d.eval_crops == 1,
         f"data.eval_crops={d.eval_crops} needs eval.linear_input=crop (resize feeds the whole frame: one view)")
    need(e.finetune_augment in FINETUNE_AUGMENTS,
         f"eval.finetune_augment='{e.finetune_augment}' is not one of {FINETUNE_AUGMENTS}")
    need(e.retrieval_protocol in RETRIEVAL_PROTOCOLS,
         f"eval.retrieval_protocol='{e.retrieval_protocol}' is not one of {RETRIEVAL_PROTOCOLS}")
    need(d.dataset == "synthetic" or d.root is not None,
         f"data.root is required for dataset '{d.dataset}' (pass --root DIR)")


def dump_config(cfg: Config, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
