"""Training engine: one loop for every method, schedules, optimisers, atomic checkpoints."""

from .checkpoint import (CHECKPOINT_VERSION, CheckpointReadError, UnsafeCheckpointError, load_checkpoint,
                         save_checkpoint)
from .optim import build_optimizer, cosine_schedule

__all__ = ["CHECKPOINT_VERSION", "CheckpointReadError", "UnsafeCheckpointError", "build_optimizer",
           "cosine_schedule", "load_checkpoint", "save_checkpoint"]
