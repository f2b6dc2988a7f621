"""From a config to the objects it describes: datasets, augmentations, backbones, methods (``components``), and
the augmentation preview (``preview``). ``from videocontrast.build import build_augment`` keeps working."""
from .components import (  # noqa: F401 (the package's public names)
    PURPOSES, FINETUNE_MIN_SCALE, backbone_kwargs, backbone_from_config, method_from_config, backbone_state,
    method_from_checkpoint, model_from_checkpoint, default_cache_dir, ensure_synthetic, dataset_root,
    sampler_from_config, dataset_from_config, cache_frames, labeled_dataset, eval_loader, build_augment,
    finetune_aug, describe_augment, build_eval_transform, eval_crop_positions,
)
