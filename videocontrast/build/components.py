"""The one layer that turns a :class:`~videocontrast.config.Config` into objects.

Backbones, methods, a model from a checkpoint, datasets with their clip samplers, loaders for evaluation and
the spatial transforms are all built here, so every command (pretrain, linear, knn, retrieve, finetune, embed,
data, demo, ablate) reads the same config fields the same way. Everything above (engine, eval, api, demo,
cli) imports this module; nothing below it (data, transforms, models, methods, losses) knows about configs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import dist
from ..config import FINETUNE_AUGMENTS, AugConfig, Config
from ..data.cache import attach_cache
from ..data.datasets import VideoDataset, build_dataset
from ..data.reports import first_report
from ..data.splits import dataset_records, needs_test_split
from ..data.subsets import plan_test_split
from ..data.synthetic import generate_synthetic
from ..methods import build_method
from ..models import build_backbone
from ..names import input_channels
from ..transforms.eval import ClipEval
from ..names import EVAL_CROPS
from ..transforms.spatial import ClipAugment, Residual
from ..transforms.temporal import RandomClip, TwoViews, UniformClips

# What a dataset is built for -> its clip sampler: two temporal views, one random clip, evenly spaced clips.
PURPOSES = ("pretrain", "finetune", "eval")
# eval.finetune_augment=crop: the smallest crop a supervised objective trains on, as a fraction of the frame's area
# (pretraining's SimCLR crops go down to 0.08, which often misses the action a label names).
FINETUNE_MIN_SCALE = 0.5


# ----------------------------------------------------------------------------- models


def backbone_kwargs(cfg: Config) -> dict[str, Any]:
    """``build_backbone``'s keyword arguments for ``cfg.model`` (only ``r3d_small`` takes width and depth)."""
    m = cfg.model
    kw: dict[str, Any] = {"width": m.width, "layers": list(m.layers)} if m.backbone == "r3d_small" else {}
    if input_channels(cfg.data.input) != 3:  # data.input=both (config allows it only on CHANNEL_BACKBONES)
        kw["in_channels"] = input_channels(cfg.data.input)
    return kw


def backbone_from_config(cfg: Config, seed: int | None = None) -> nn.Module:
    """The backbone ``cfg.model`` describes, with ``model.weights`` loaded if set.

    Args:
        seed: if given, the random initialisation is drawn from ``torch.manual_seed(seed)`` (reproducible
            random-init baselines).
    """
    if seed is not None:
        torch.manual_seed(seed)
    return build_backbone(cfg.model.backbone, weights=cfg.model.weights, **backbone_kwargs(cfg))


def method_from_config(cfg: Config, num_train_clips: int | None = None) -> nn.Module:
    """Backbone + method (head, momentum encoder, queue) as described by ``cfg``."""
    m = cfg.method
    return build_method(m.name, backbone_from_config(cfg), temperature=m.temperature, queue_size=m.queue_size,
                        momentum=m.momentum, head_hidden=cfg.model.head_hidden, head_out=cfg.model.head_out,
                        bn_mode=m.bn_mode, num_train_clips=num_train_clips)


# ----------------------------------------------------------------------------- data


def default_cache_dir() -> Path:
    return Path(os.environ.get("VIDEOCONTRAST_CACHE", Path.home() / ".cache" / "videocontrast"))


def ensure_synthetic(cfg: Config) -> Path:
    """Generate the synthetic motion dataset once (idempotent) and return its root."""
    d = cfg.data
    root = Path(d.root) if d.root else default_cache_dir() / (
        f"synthetic-v{d.synthetic_videos_per_class}-f{d.synthetic_frames}-s{d.synthetic_size}-seed{d.synthetic_seed}"
        f"-a{d.synthetic_appearances}")

    def generate() -> Path:
        return generate_synthetic(root, videos_per_class=d.synthetic_videos_per_class,
                                  num_frames=d.synthetic_frames, size=d.synthetic_size, seed=d.synthetic_seed,
                                  appearances=d.synthetic_appearances)

    # Under torchrun, rank 0 writes the files while the others wait; their call then finds them complete.
    if dist.get_world_size() > 1:
        if dist.is_main_process():
            generate()
        dist.barrier()
    return generate()


def dataset_root(cfg: Config) -> Path:
    return ensure_synthetic(cfg) if cfg.data.dataset == "synthetic" else Path(cfg.data.root)


def sampler_from_config(cfg: Config, purpose: str):
    """The clip sampler (``views_fn``) for ``purpose``: ``pretrain`` two temporal views (thesis section 3),
    ``finetune`` one Random m clip, ``eval`` ``data.eval_clips`` evenly spaced clips."""
    d = cfg.data
    if purpose == "pretrain":
        return TwoViews(cfg.aug.temporal, d.clip_len, cfg.aug.max_shift, d.stride)
    if purpose == "finetune":
        return RandomClip(d.clip_len, d.stride)
    if purpose == "eval":
        return UniformClips(d.clip_len, d.eval_clips, d.stride)
    raise ValueError(f"purpose must be one of {PURPOSES}, not {purpose!r}")


def dataset_from_config(cfg: Config, subset: str, purpose: str, transform=None,
                        run_dir: str | Path | None = None) -> VideoDataset:
    """The ``subset`` (``train`` | ``test`` | ``all``) of the configured dataset, sampled for ``purpose``.

    With ``run_dir`` and a training ``purpose``, the frames are also cached (:func:`cache_frames`); the engine's
    ``fit`` does that itself once it has checked the run folder, so commands leave ``run_dir`` out.
    """
    d = cfg.data
    ds = build_dataset(d.dataset, dataset_root(cfg), splits=d.splits, split=d.split, subset=subset,
                       views_fn=sampler_from_config(cfg, purpose), decode_size=d.decode_size, transform=transform,
                       seed=cfg.train.seed, strict=d.strict, require_complete=d.require_complete)
    if run_dir is not None and purpose != "eval":
        cache_frames(cfg, ds, run_dir)
    return ds


def cache_frames(cfg: Config, ds: VideoDataset, run_dir: str | Path, reserve: int = 0) -> None:
    """``data.cache``: decode every video of ``ds`` once into a cache its items then read every epoch (in memory,
    or under ``run_dir`` for ``disk``, which must also leave ``reserve`` bytes free there: the run's checkpoint).
    Nothing when ``data.cache=none`` or ``ds`` has a cache already."""
    if cfg.data.cache == "none" or ds.frame_cache is not None:
        return
    folder = Path(run_dir) / (f"cache-rank{dist.get_rank()}" if dist.get_world_size() > 1 else "")
    attach_cache(ds, cfg.data.cache, folder, quiet=not dist.is_main_process(), reserve=reserve)


def check_dataset(cfg: Config) -> None:
    """Raise the dataset's own error (a ``--root`` that is not a folder, split files missing) before a command
    touches its run folder, whose refusals (other settings, a run of another kind) would hide it. The synthetic
    set is generated later and checks nothing here."""
    d = cfg.data
    if d.dataset != "synthetic":
        dataset_records(d.dataset, d.root, d.splits, d.split, "all", d.require_complete, quiet=True)


def wants_folder_split(cfg: Config) -> bool:
    """Whether ``cfg`` reads a ``folder`` of class subfolders without train/ and test/ and names no split of it
    (``data.splits``): evaluation then needs one drawn (:func:`make_folder_split`)."""
    d = cfg.data
    return d.dataset == "folder" and d.splits is None and d.root is not None and needs_test_split(Path(d.root))


def cached_split_folder(cfg: Config) -> Path:
    """Where a command without a run folder of its own (linear, knn, retrieve, finetune) keeps the split it drew
    for ``cfg``'s folder: one per folder, seed and fraction, so every such command tests on the same videos."""
    root = os.path.realpath(Path(cfg.data.root).expanduser())
    key = hashlib.sha1(root.encode("utf-8", "replace")).hexdigest()[:12]
    return default_cache_dir() / "folder-splits" / (f"{Path(root).name}-{key}-seed{cfg.train.seed}"
                                                     f"-test{cfg.data.test_fraction:g}")


def make_folder_split(cfg: Config, folder: Path, redraw: bool = False, quiet: bool = False) -> Path:
    """Draw (or, with the same settings, read back) the test split of ``cfg``'s folder into ``folder`` (see
    :func:`~videocontrast.data.subsets.plan_test_split`), saying so once in this process; ``redraw`` replaces a
    split there (``demo --fresh``). Returns ``folder``, for ``data.splits``.

    Raises:
        ValueError: fewer than two classes (the folder's one subfolder is named: often the folder above the
            classes), a class too small to split, or ``folder`` holding a split of other settings.
    """
    d = cfg.data
    root = Path(d.root).expanduser()
    records, classes, _ = dataset_records("folder", root, None, d.split, "all", d.require_complete, quiet=True)
    if len(classes) < 2:
        raise ValueError(f"{root} holds one class folder ({classes[0]}/): evaluation needs two classes or more; is "
                         f"--root the folder that holds the class folders (perhaps {root / classes[0]})?")
    if redraw:
        for name in ("split.json", "train.txt", "test.txt"):
            (folder / name).unlink(missing_ok=True)
    split = plan_test_split(records, classes, root, cfg.train.seed, d.test_fraction, folder)
    if not quiet and first_report(f"folder-split:{folder}") and dist.is_main_process():
        what = (f"split {split.videos} videos by class, {split.test_videos} for test, grouped by name; written to "
                f"{split.test_file}" if split.made else
                f"using the split in {split.test_file} ({split.videos} videos, {split.test_videos} for test)")
        print(f"no train/ and test/ folders under {root}: {what}", flush=True)
    return folder


def labeled_dataset(cfg: Config, subset: str, purpose: str = "eval", transform=None) -> VideoDataset:
    """:func:`dataset_from_config`, checked to be non-empty and labeled (what every evaluation needs). A folder of
    class subfolders without train/ and test/ is split first (:func:`make_folder_split`, into
    :func:`cached_split_folder` unless the command put one in its run folder as ``data.splits``)."""
    if wants_folder_split(cfg):
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, splits=str(
            make_folder_split(cfg, cached_split_folder(cfg)))))
    ds = dataset_from_config(cfg, subset, purpose, transform=transform)
    where = f"dataset '{cfg.data.dataset}' at {dataset_root(cfg)}"
    if len(ds) == 0:
        raise ValueError(f"the '{subset}' subset of {where} is empty; evaluation needs labeled train and test "
                         "videos: ucf101/hmdb51 with their split files, or a folder of <class>/ subfolders (split "
                         "for you) or of train/<class>/ and test/<class>/")
    if min(r.label for r in ds.records) < 0:
        raise ValueError(f"{where} has unlabeled videos; evaluation needs class subfolders (labels). For "
                         "unlabeled footage use `videocontrast embed` and `videocontrast search` instead")
    return ds


def eval_loader(cfg: Config, subset: str) -> DataLoader:
    """Evaluation clips (``data.eval_clips`` per video, in order) of a labeled ``subset``.

    Unreadable videos are left out (probed first, reported with their count) rather than replaced by a
    neighbour, which would count that neighbour twice; a video that probes but does not decode yields a marked
    item (``valid=False``) that :func:`~videocontrast.eval.features.extract_features` drops.
    """
    ds = labeled_dataset(cfg, subset, "eval")
    ds.on_bad = "mark"
    ds.drop_unreadable(f"in the '{subset}' subset of {dataset_root(cfg)}")
    if len(ds) == 0:
        raise ValueError(f"none of the videos in the '{subset}' subset of {dataset_root(cfg)} can be read; "
                         "`videocontrast data info` lists each file with its reason")
    return DataLoader(ds, batch_size=min(cfg.eval.batch_size, len(ds)), shuffle=False,
                      num_workers=cfg.data.num_workers)


# ----------------------------------------------------------------------------- transforms


def _with_input(cfg: Config, transform: nn.Module) -> nn.Module:
    if cfg.data.input == "rgb":
        return transform
    return Residual(transform, keep_frames=cfg.data.input == "both")


def build_augment(cfg: Config, kind: str = "pretrain") -> nn.Module:
    """The training augmentation of the engine's objective ``kind``: ``(B, T, C, H, W)`` uint8 -> ``(B, C, T, H, W)``
    float (``T - 1`` frame differences with ``data.input=residual``). ``pretrain``: ``cfg.aug`` (thesis section 3);
    any other kind (the objectives trained on labels, ``finetune`` and ``supervised``): the ``aug.*`` that
    :func:`finetune_aug` gives for ``eval.finetune_augment``."""
    a = cfg.aug if kind == "pretrain" else finetune_aug(cfg)
    spatial = ClipAugment(size=cfg.data.size, scale=(a.min_scale, 1.0), jitter_strength=a.strength,
                          jitter_p=a.jitter_p, gray_p=a.gray_p, flip_p=a.flip_p, blur_p=a.blur_p,
                          mode=a.spatial_mode, crop=a.crop, flip=a.flip, jitter=a.jitter, gray=a.gray, blur=a.blur,
                          uint8_resize=True)  # the fast path for uint8 clips on a CPU (no effect elsewhere)
    return _with_input(cfg, spatial)


def finetune_aug(cfg: Config) -> AugConfig:
    """The ``aug.*`` settings a supervised objective (fine-tuning, the supervised baseline) trains with, as
    ``eval.finetune_augment`` says (:data:`~videocontrast.config.FINETUNE_AUGMENTS`):

    * ``crop``: random resized crop of :data:`FINETUNE_MIN_SCALE`-1 of the frame's area (aspect 3/4-4/3), one draw
      per clip, horizontal flip as ``aug.flip`` / ``aug.flip_p`` say (a preset that turns flip off because it
      changes the class keeps it off); no colour jitter, grayscale or blur.
    * ``resize``: the whole frame resized to ``data.size x data.size`` (aspect not kept), nothing random: the thesis
      code's fine-tuning and supervised training (simionAndrei/MScThesis fine_tune.py and
      train_videos_3d_supervised.py: ``transforms.Resize((frame_size, frame_size)), transforms.ToTensor()``).
    * ``pretrain``: ``cfg.aug`` as it is (pretraining's pipeline).

    Applied to its own result (the config of a fine-tuning run, :func:`~videocontrast.eval.finetune.finetune_config`)
    it changes nothing, so the engine (:func:`build_augment` of a supervised ``kind``) may apply it again.
    """
    a = dataclasses.replace(cfg.aug)
    choice = cfg.eval.finetune_augment
    if choice == "pretrain":
        return a
    a.spatial_mode = "chunk"
    a.jitter = a.gray = a.blur = False
    a.jitter_p = a.gray_p = a.blur_p = 0.0
    if choice == "crop":
        a.crop, a.min_scale = True, FINETUNE_MIN_SCALE
    elif choice == "resize":
        a.crop, a.min_scale, a.flip, a.flip_p = False, 1.0, False, 0.0
    else:
        raise ValueError(f"eval.finetune_augment='{choice}' is not one of {FINETUNE_AUGMENTS}")
    return a


def describe_augment(cfg: Config) -> str:
    """``cfg.aug``'s spatial training augmentation in words (the protocols of fine-tuning and of the demo)."""
    a, s = cfg.aug, cfg.data.size
    extra = [f"{what} p {p:g}" for on, p, what in ((a.flip, a.flip_p, "horizontal flip"),
                                                   (a.jitter, a.jitter_p, f"colour jitter (strength {a.strength:g})"),
                                                   (a.gray, a.gray_p, "grayscale"), (a.blur, a.blur_p, "Gaussian blur"))
             if on and p > 0]
    text = ", ".join([f"random resized crop ({a.min_scale:g}-1 of the frame's area, aspect 3/4-4/3) to {s}x{s}"
                      if a.crop else f"whole frame resized to {s}x{s} (aspect not kept)", *extra])
    if a.crop or extra:
        text += " (one draw per frame)" if a.spatial_mode == "frame" else " (one draw per clip)"
    else:
        text += ", nothing random"
    return text + ("; normalised with the Kinetics mean/std" +
                   {"residual": "; then frame differences", "both": "; then the frames and their differences as 6 channels"}
                   .get(cfg.data.input, ""))


def build_eval_transform(cfg: Config, position: str = "center") -> nn.Module:
    """Deterministic evaluation transform, same layouts as :func:`build_augment`.

    ``eval.linear_input=crop`` (ours): the ``data.size`` crop at ``position`` of the decoded frame, normalised.
    ``eval.linear_input=resize`` (thesis sec. 4): the whole frame resized to ``data.size x data.size`` (aspect
    not kept), normalised; ``position`` does not apply (config validation allows only one crop position).
    """
    return _with_input(cfg, ClipEval(size=cfg.data.size, position=position, squash=cfg.eval.linear_input == "resize"))


def eval_crop_positions(cfg: Config) -> tuple[str, ...]:
    return EVAL_CROPS[cfg.data.eval_crops]
