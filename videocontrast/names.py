"""The names a config or a command line may choose from, the two value checks config shares with the library, and
the metric keys results are written under with the words and percent format they are shown in.

Torch-free on purpose: ``config`` and ``cli`` (every ``--help``, ``choices=`` and validation message) read them
here without importing torch, and so do the reports (demo, ablate, reproduce). Each list is defined here once; the
module that implements the concept imports it back under the same name (``data.datasets.DATASET_NAMES``,
``methods.METHODS``, ``eval.retrieval.DEFAULT_KS``, ...), so both spellings stay one list.
"""

from __future__ import annotations

import re
from typing import Any

# data.dataset (data.datasets)
DATASET_NAMES = ("synthetic", "ucf101", "hmdb51", "folder")
# data.cache (data.cache)
CACHE_MODES = ("none", "memory", "disk", "auto")
# data.val_fraction of `--val` without a value (data.subsets)
DEFAULT_VAL_FRACTION = 0.2
# aug.temporal (transforms.temporal)
TEMPORAL_TRANSFORMS: tuple[str, ...] = ("none", "shift", "drop", "reverse", "shuffle")
# aug.spatial_mode: one parameter draw per clip | per frame (transforms.spatial)
SPATIAL_MODES = ("chunk", "frame")
# data.input: what the network sees: frames | frame differences | both, stacked as 6 channels
# (transforms.spatial.Residual)
INPUT_MODES = ("rgb", "residual", "both")
# data.input modes whose clips are T - 1 frame differences (of clip_len decoded frames)
DIFFERENCE_INPUTS = ("residual", "both")
# backbones whose first convolution takes other than 3 input channels (data.input=both feeds 6)
CHANNEL_BACKBONES = ("hara_r3d_18", "r3d_small")
# data.eval_crops -> the crop positions evaluated per clip (1: centre; 3: the usual multi-crop protocol).
EVAL_CROPS: dict[int, tuple[str, ...]] = {1: ("center",), 3: ("start", "center", "end")}
# model.backbone (models.backbones.BACKBONES holds their builders, in this order)
BACKBONE_NAMES = ("r3d_18", "r2plus1d_18", "mc3_18", "hara_r3d_18", "r3d_small")
# method.name -> (head kind, default head output size, default temperature) (methods)
METHODS: dict[str, tuple[str, int, float]] = {
    "simclr": ("mlp", 256, 0.1),
    "moco-v1": ("linear", 128, 0.07),
    "moco-v2": ("mlp", 256, 0.2),
}
# method.bn_mode: the MoCo key encoder's batch norm (methods.moco)
BN_MODES = ("shuffle", "sync", "none")
# optim.name and eval.finetune_optimizer (engine.optim)
OPTIMIZERS = ("sgd", "adam", "adamw", "lars")
# train.precision (engine.device)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# train.device: auto, or one of these (cuda:N for one GPU of several) (engine.device)
DEVICE_TYPES = ("cpu", "cuda", "mps")
# `videocontrast export --format` (export)
EXPORT_FORMATS = ("torchvision", "safetensors", "onnx")
# `videocontrast curate select --strategy` (videocontrast.search.curate): core-set k-center, TypiClust, uniform.
CURATE_STRATEGIES = ("diverse", "typical", "random")
# `videocontrast reproduce --scale` (reproduce)
SCALES = ("full", "smoke")

# ----------------------------------------------------------------------------- metric keys and how they are shown
# The keys below are written into results.json and CSV files that other tools read: never rename one.

# eval.recall_ks: the k of video retrieval's recall@k, written as "R@k" (eval.retrieval.DEFAULT_KS)
RECALL_KS: tuple[int, ...] = (1, 5, 10, 20, 50)


def recall_key(k: int) -> str:
    """The results key of retrieval recall@``k``: ``R@k``."""
    return f"R@{k}"


# results key -> the words a table header shows it under (demo report, retrieval report). Any R@k, k outside
# RECALL_KS included, reads "retrieval R@k" (metric_label).
METRIC_LABELS: dict[str, str] = {
    "linear_top1": "linear probe top-1",
    "linear_video_top1": "linear probe top-1 (video)",
    "knn_top1": "kNN top-1",
    **{recall_key(k): f"retrieval {recall_key(k)}" for k in RECALL_KS},
}
# The demo's scores: its report's columns (demo.report.COLUMNS), in this order
DEMO_METRICS = ("linear_top1", "linear_video_top1", "knn_top1", "R@1", "R@5", "R@10")
# The demo scores its verdict weighs (demo.verdict.METRICS) and bench/demo_seeds tabulates
VERDICT_METRICS = ("linear_top1", "knn_top1", "R@1", "R@5")
# The scores an ablation cell keeps of each evaluation (and of its val_ form), stored as "<evaluation>_<key>":
# linear_top1, knn_video_top1, retrieve_R@1 (the demo's R@1), ... (eval.ablate)
ABLATE_SCORES = ("top1", "video_top1", "R@1", "R@5")


def metric_label(key: str) -> str:
    """The header words of results key ``key``: :data:`METRIC_LABELS`, ``retrieval R@k`` for any R@k, else the key
    with spaces for underscores."""
    if key in METRIC_LABELS:
        return METRIC_LABELS[key]
    return f"retrieval {key}" if key.startswith("R@") else key.replace("_", " ")


def percent(x: Any, digits: int = 1) -> str:
    """A fraction as a percentage with ``digits`` decimals: 0.775 -> '77.5%', 1 -> '100.0%'; '-' for None (or a
    string, or anything else that is not a number): every report's one percent format."""
    if x is None or isinstance(x, (str, bytes)):
        return "-"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "-"
    return f"{100 * v:.{digits}f}%"


def input_frames(input_mode: str, clip_len: int) -> int:
    """Frames the network sees of a clip of ``clip_len`` decoded frames (T - 1 with frame differences)."""
    return clip_len - 1 if input_mode in DIFFERENCE_INPUTS else clip_len


def input_channels(input_mode: str) -> int:
    """The network's input channels: 3 (RGB or RGB differences), 6 with ``both`` (frames, then differences)."""
    return 6 if input_mode == "both" else 3

# The device names train.device takes besides auto: a bare type of DEVICE_TYPES, or cuda:N (an index only for
# cuda). N is written as torch.device reads it: ASCII digits, no leading zero, below 2**31.
_DEVICE = re.compile(r"(?:cpu|cuda|mps)|cuda:(0|[1-9][0-9]*)", re.ASCII)


def check_device_name(name: str, field: str = "train.device") -> str:
    """``name`` when it names a device videocontrast trains on (``auto`` included), asked of the string alone:
    whether this machine has the device is :func:`videocontrast.engine.device.check_available`'s question.

    Raises:
        ValueError: one line naming ``field``.
    """
    match = _DEVICE.fullmatch(name) if isinstance(name, str) else None
    if name != "auto" and (match is None or (match.group(1) is not None and int(match.group(1)) >= 2**31)):
        raise ValueError(f"{field}='{name}' is not a device (use auto, cpu, cuda or cuda:N)")
    return name


def check_momentum(m: float, name: str = "momentum") -> float:
    """The key-encoder EMA momentum must lie in [0, 1): at 1 the key encoder would never learn.

    (A schedule may reach 1 at its very end; :meth:`videocontrast.methods.moco.MoCo.momentum_update` accepts that
    value.)
    """
    if not 0.0 <= m < 1.0:
        raise ValueError(f"{name}={m} must be in [0, 1) (1 would freeze the key encoder; MoCo uses 0.999)")
    return float(m)
