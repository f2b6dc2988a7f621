"""Search a video collection: ``videocontrast embed`` builds an index, ``videocontrast search`` queries it.

The index is one ``.npz`` file: L2-normalised video embeddings ``(N, D)``, optional per-clip embeddings
``(N, n_clips, D)``, the video paths, the checkpoint it came from and the files that could not be read.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from .api import embed_videos, load_encoder
from .data.datasets import find_videos
from .data.decode import VideoDecodeError, probe_video
from .eval.report import retrieval_report


def build_index(checkpoint: str | Path, root: str | Path, out: str | Path, clips: int = 4, per_clip: bool = False,
                device: str | None = None, batch_size: int = 8) -> Path:
    """Embed every readable video under ``root``; unreadable files are reported and listed, not fatal."""

    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    encoder = load_encoder(checkpoint, device=dev)
    good, bad = [], []
    for p in find_videos(root):
        try:
            probe_video(p)
            good.append(p)
        except VideoDecodeError as e:
            warnings.warn(f"skipping unreadable video {p}: {e.reason}", stacklevel=2)
            bad.append({"path": str(p), "reason": e.reason})
    if not good:
        raise FileNotFoundError(f"none of the videos under '{root}' could be read")
    emb = embed_videos(encoder, good, clips_per_video=clips, batch_size=batch_size, device=dev, per_clip=True)
    video = emb.mean(1)
    video /= np.linalg.norm(video, axis=1, keepdims=True) + 1e-12
    out = Path(out)
    if out.suffix != ".npz":
        out = out.with_name(out.name + ".npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"embeddings": video.astype(np.float32), "paths": np.array([str(p) for p in good]),
              "meta": np.array(json.dumps({"checkpoint": str(Path(checkpoint).resolve()), "clips": clips,
                                           "unreadable": bad}))}
    if per_clip:
        arrays["clip_embeddings"] = emb.astype(np.float32)
    tmp = out.with_name(f".{out.name}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(out)
    return out


def load_index(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file() and Path(str(path) + ".npz").is_file():
        path = Path(str(path) + ".npz")
    if not path.is_file():
        raise FileNotFoundError(f"index '{path}' does not exist; build it with `videocontrast embed`")
    with np.load(path, allow_pickle=False) as z:
        return {"embeddings": z["embeddings"], "paths": [str(p) for p in z["paths"]],
                "meta": json.loads(str(z["meta"]))}


def search(index: str | Path, query: str | Path, k: int = 5, html: str | None = None,
           device: str | None = None) -> list[tuple[str, float]]:
    """The ``k`` indexed videos most similar (cosine) to ``query``, as ``(path, similarity)`` pairs."""

    idx = load_index(index)
    meta = idx["meta"]
    dev = torch.device(device) if device else torch.device("cpu")
    encoder = load_encoder(meta["checkpoint"], device=dev)
    q = embed_videos(encoder, [query], clips_per_video=meta.get("clips", 4), device=dev)[0]
    sims = idx["embeddings"] @ q
    order = np.argsort(-sims)[:k]
    hits = [(idx["paths"][i], float(sims[i])) for i in order]
    if html:
        out_dir = Path(html).parent
        queries = [{"path": str(query), "label_name": "query",
                    "neighbours": [{"path": p, "label_name": Path(p).parent.name, "sim": s, "hit": None}
                                   for p, s in hits]}]
        page = retrieval_report(out_dir, queries, title=f"Search: {Path(query).name}", metrics={})
        if Path(page) != Path(html):
            Path(page).replace(html)
    return hits
