"""Use a pretrained encoder in your own code.

    import videocontrast as vc
    encoder = vc.load_encoder("runs/demo/pretrain/checkpoints/last.pt")
    emb = vc.embed_videos(encoder, ["a.mp4", "b.avi"])     # (2, D) float32, L2-normalised
    print(emb @ emb.T)                                       # cosine similarities

The encoder is a plain ``nn.Module`` mapping ``(B, C, T, H, W)`` float clips (RGB, normalised with
``encoder.mean``/``encoder.std``, ``encoder.clip_len`` frames of ``encoder.input_size`` pixels) to ``(B, D)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .build import build_eval_transform, model_from_checkpoint
from .config import Config
from .data.datasets import VideoDataset, VideoRecord
from .engine.checkpoint import load_checkpoint
from .eval.features import extract_features
from .transforms.spatial import KINETICS_MEAN, KINETICS_STD
from .transforms.temporal import UniformClips


def _attach(encoder: nn.Module, cfg: Config) -> nn.Module:
    encoder.input_layout = ("(B, C, T, H, W) float32, RGB, normalised by mean/std"
                            + (", then frame differences (T - 1 frames)" if cfg.data.input == "residual" else ""))
    encoder.clip_len = cfg.data.clip_len
    encoder.stride = cfg.data.stride
    encoder.input_size = cfg.data.size
    encoder.decode_size = cfg.data.decode_size
    encoder.mean, encoder.std = tuple(KINETICS_MEAN), tuple(KINETICS_STD)
    encoder.config = cfg
    return encoder


def load_encoder(checkpoint: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The pretrained backbone of a videocontrast checkpoint, in eval mode on ``device``.

    The returned module has ``input_layout``, ``clip_len``, ``stride``, ``input_size``, ``decode_size``,
    ``mean``, ``std`` and ``config`` attributes describing the input it expects.
    """
    state = load_checkpoint(checkpoint)
    encoder, cfg = model_from_checkpoint(state)
    return _attach(encoder, cfg).to(device).eval()


def embed_videos(encoder: nn.Module, paths: Sequence[str | Path], clips_per_video: int = 4,
                 batch_size: int = 8, device: str | torch.device | None = None, num_workers: int = 0,
                 per_clip: bool = False) -> np.ndarray:
    """One L2-normalised embedding per video (mean over ``clips_per_video`` evenly spaced clips).

    Returns:
        float32 ``(len(paths), D)``; with ``per_clip=True`` ``(len(paths), clips_per_video, D)``.
        A video that cannot be decoded raises :class:`~videocontrast.data.decode.VideoDecodeError`
        naming it (use :func:`videocontrast.search.build_index` to skip and report bad files instead).
    """
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    records = [VideoRecord(str(p), -1) for p in paths]
    ds = VideoDataset(records, [], UniformClips(encoder.clip_len, clips_per_video, encoder.stride),
                      decode_size=encoder.decode_size, strict=True)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers)
    feats = extract_features(encoder, loader, build_eval_transform(encoder.config).to(device), device)
    x = torch.from_numpy(feats["feats"]).float().reshape(len(paths), clips_per_video, -1)
    x = torch.nn.functional.normalize(x, dim=-1)
    if per_clip:
        return x.numpy()
    return torch.nn.functional.normalize(x.mean(1), dim=-1).numpy()
