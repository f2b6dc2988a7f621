"""From a config to the objects it describes: datasets, augmentations, backbones, methods (``components``), the
augmentation preview (``preview``), and ``encoder``, the one resolver from ``--checkpoint`` (a checkpoint, an
export, external weights or ``random``) to an encoder, imported where it is used since it reads checkpoints.
``from videocontrast.build import build_augment`` keeps working."""
from .components import (  # noqa: F401 (the package's public names)
    PURPOSES, FINETUNE_MIN_SCALE, backbone_kwargs, backbone_from_config, method_from_config, default_cache_dir,
    ensure_synthetic, dataset_root, sampler_from_config, dataset_from_config, cache_frames, labeled_dataset,
    eval_loader, build_augment, finetune_aug, describe_augment, build_eval_transform, eval_crop_positions,
)
