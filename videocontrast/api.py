"""Use a pretrained encoder in your own code.

    import videocontrast as vc
    encoder = vc.load_encoder("runs/demo/pretrain/checkpoints/last.pt")
    emb = vc.embed_videos(encoder, ["a.mp4", "b.avi"])     # (2, D) float32, L2-normalised
    print(emb @ emb.T)                                       # cosine similarities

The encoder is a plain ``nn.Module`` mapping ``(B, C, T, H, W)`` float clips (RGB, normalised with
``encoder.mean``/``encoder.std``, ``encoder.clip_len`` frames of ``encoder.input_size`` pixels) to ``(B, D)``.
``load_encoder`` takes what ``--checkpoint`` takes on the command line: a checkpoint, a file written by
``videocontrast export``, a state-dict file of external weights (with ``config=``), or ``"random"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .build.components import build_eval_transform
from .config import Config, load_config
from .data.datasets import VideoDataset
from .data.splits import VideoRecord
from .build.encoder import load_weights
from .engine.device import resolve_device
from .eval.embedding import l2_normalize, video_embedding
from .eval.features import extract_features
from .transforms.functional import KINETICS_MEAN, KINETICS_STD
from .transforms.temporal import UniformClips


def _attach(encoder: nn.Module, cfg: Config) -> nn.Module:
    encoder.input_layout = ("(B, C, T, H, W) float32, RGB, normalised by mean/std"
                            + {"residual": ", then frame differences (T - 1 frames)",
                               "both": ", then the frames and their differences stacked as 6 channels (T - 1 frames)"}
                            .get(cfg.data.input, ""))
    encoder.clip_len = cfg.data.clip_len
    encoder.stride = cfg.data.stride
    encoder.input_size = cfg.data.size
    encoder.decode_size = cfg.data.decode_size
    encoder.mean, encoder.std = tuple(KINETICS_MEAN), tuple(KINETICS_STD)
    encoder.config = cfg
    return encoder


def check_device(name: str | torch.device | None) -> torch.device:
    """``--device`` as a device this machine has (``auto``/None: the GPU if there is one); the API's spelling of
    :func:`videocontrast.engine.device.resolve_device`.

    Raises:
        ValueError: one line, for a name that is not a device or a CUDA device on a machine without it.
    """
    return resolve_device(name, field="--device")


def load_encoder(checkpoint: str | Path, device: str | torch.device = "cpu",
                 config: str | Path | Config | None = None) -> nn.Module:
    """The backbone of ``checkpoint``, in eval mode on ``device``.

    Args:
        checkpoint: a videocontrast checkpoint, a file written by ``videocontrast export`` (``.pt`` or
            ``.safetensors`` with its JSON beside it), a state-dict file of external weights, or ``"random"``.
        config: a preset name, YAML file or :class:`Config`: the architecture (and clip settings) for
            ``"random"`` and external weights (default: the default config); checkpoints and exported files
            carry their own.

    The returned module has ``input_layout``, ``clip_len``, ``stride``, ``input_size``, ``decode_size``,
    ``mean``, ``std`` and ``config`` attributes describing the input it expects, ``fingerprint`` (the SHA-1 of
    the weights file, or ``random:...``), ``source`` (what it was loaded from) and ``kind`` (random, export,
    checkpoint or external): the fields of :class:`videocontrast.build.encoder.Encoder`, on the module itself.
    """
    dev = check_device(device)
    cfg = load_config(str(config)) if isinstance(config, (str, Path)) else config
    enc = load_weights(checkpoint, cfg, dev)
    encoder = _attach(enc.module, enc.cfg)
    encoder.fingerprint, encoder.source, encoder.kind = enc.fingerprint, enc.description, enc.kind
    return encoder.to(dev).eval()


def embed_videos(encoder: nn.Module, paths: Sequence[str | Path], clips_per_video: int = 4,
                 batch_size: int = 8, device: str | torch.device | None = None, num_workers: int = 0,
                 per_clip: bool = False, progress: str | None = None) -> np.ndarray:
    """One embedding per video: the L2-normalised mean of the L2-normalised features of ``clips_per_video`` evenly
    spaced clips (:func:`videocontrast.eval.embedding.video_embedding`, what ``videocontrast embed`` stores).

    ``progress``: a label to show a progress bar (videos done / total) on stderr under; None: no bar.

    Returns:
        float32 ``(len(paths), D)``; with ``per_clip=True`` ``(len(paths), clips_per_video, D)``.
        A video that cannot be decoded raises :class:`~videocontrast.data.decode.VideoDecodeError`
        naming it (`videocontrast embed`, :func:`videocontrast.search.embed.embed_collection`, skips and reports bad files instead).
    """
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    records = [VideoRecord(str(p), -1) for p in paths]
    ds = VideoDataset(records, [], UniformClips(encoder.clip_len, clips_per_video, encoder.stride),
                      decode_size=encoder.decode_size, strict=True)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers)
    feats = extract_features(encoder, loader, build_eval_transform(encoder.config).to(device), device,
                             progress=bool(progress), desc=progress)
    clips = l2_normalize(feats["feats"]).reshape(len(paths), clips_per_video, -1)
    # The one definition of a video's embedding (eval.embedding), the vector `embed` stores and `retrieve` ranks.
    return clips if per_clip else np.stack([video_embedding(c) for c in clips])
