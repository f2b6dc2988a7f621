"""``videocontrast data preview``: a PNG grid of sampled clips and their two augmented views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .components import build_augment, dataset_from_config
from ..config import Config
from ..eval.plots import new_figure
from ..transforms.functional import denormalize
from ..fileio import save_figure


def preview(cfg: Config, out: Path, num_videos: int = 4, frames_shown: int = 4) -> Path:
    """Rows: for each of ``num_videos`` videos, view 1 and view 2 after the temporal and spatial
    transforms, ``frames_shown`` frames each — what the model sees."""
    ds = dataset_from_config(cfg, "train", "pretrain")
    augment = build_augment(cfg)
    g = torch.Generator().manual_seed(cfg.train.seed)
    picks = np.linspace(0, len(ds) - 1, min(num_videos, len(ds))).astype(int)
    fig, axes = new_figure((1.6 * frames_shown, 3.3 * len(picks)), 2 * len(picks), frames_shown, dpi=100,
                           squeeze=False)
    for row, i in enumerate(picks):
        item = ds[int(i)]
        views = item["video"]  # (2, T, C, H, W) uint8
        for v in range(2):
            clip = denormalize(augment(views[v:v + 1], generator=g))[0]  # (T, C, H, W) in [0, 1]
            t_idx = np.linspace(0, clip.shape[0] - 1, frames_shown).astype(int)
            for col, t in enumerate(t_idx):
                ax = axes[2 * row + v][col]
                ax.imshow(clip[t].permute(1, 2, 0).clamp(0, 1).numpy())
                ax.set_xticks([])
                ax.set_yticks([])
                if col == 0:
                    label = ds.classes[item["label"]] if item["label"] >= 0 and ds.classes else "unlabeled"
                    ax.set_ylabel(f"{label}\nview {v + 1}", fontsize=7)
    fig.suptitle(f"{cfg.data.dataset}: temporal={cfg.aug.temporal}, spatial={cfg.aug.spatial_mode}", fontsize=9)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "preview.png"
    save_figure(fig, path)
    return path
