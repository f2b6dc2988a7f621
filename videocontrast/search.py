"""Search a video collection: ``videocontrast embed`` builds an index, ``videocontrast search`` queries it.

The index is one ``.npz`` archive (written at exactly the path given, whatever its name): L2-normalised video
embeddings ``(N, D)``, optional per-clip embeddings ``(N, n_clips, D)``, the video paths, and a JSON ``meta``
with the weights it came from (``checkpoint``: their path or ``random``; ``fingerprint``: the SHA-1 of the file,
so a moved checkpoint can be found again and other weights are refused; ``config``), the clips per video and the
entries under the folder that could not be read.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .api import check_device, embed_videos, load_encoder
from .config import Config, config_from_dict
from .data.datasets import find_videos, try_probe
from .engine.run import check_writable
from .data.decode import VideoDecodeError, probe_video
from .eval.features import weights_fingerprint
from .eval.report import retrieval_report


def _skip(entry: dict[str, str]) -> dict[str, str]:
    warnings.warn(f"skipping unreadable video {entry['path']}: {entry['reason']}", stacklevel=3)
    return entry


def build_index(checkpoint: str | Path, root: str | Path, out: str | Path, clips: int = 4, per_clip: bool = False,
                device: str | None = None, batch_size: int = 8, config: str | Path | Config | None = None,
                progress: bool = True) -> Path:
    """Embed every readable video under ``root`` into the index ``out`` (written at exactly that path).

    ``checkpoint``: anything :func:`~videocontrast.api.load_encoder` takes (``config``: the architecture for
    ``random`` and external weights). Unreadable files, symbolic link loops and broken links are reported (a
    warning each) and listed in the index's ``meta["unreadable"]``, not fatal.
    """
    root = Path(root)
    check_writable(out, folder=False)  # before the work, not after it: a full or read-only --out loses nothing
    bad: list[dict[str, str]] = []  # symbolic link loops, broken links, unlistable folders, then unreadable files
    videos = find_videos(root, skipped=bad)
    encoder = load_encoder(checkpoint, device=check_device(device), config=config)
    good = []
    for p in tqdm(videos, desc="embed: checking", unit="video", dynamic_ncols=True, mininterval=1.0,
                  disable=not progress):
        result = try_probe(str(p))  # cached: the dataset that embeds these videos reuses the probe
        if isinstance(result, VideoDecodeError):
            bad.append({"path": str(p), "reason": result.reason})
        else:
            good.append(p)
    for entry in bad:  # after the bar, so the lines do not interleave
        _skip(entry)
    if not good:
        raise FileNotFoundError(f"none of the videos under '{root}' could be read")
    dev = next(encoder.parameters()).device
    emb = embed_videos(encoder, good, clips_per_video=clips, batch_size=batch_size, device=dev, per_clip=True,
                       progress="embed" if progress else None)
    video = emb.mean(1)
    video /= np.linalg.norm(video, axis=1, keepdims=True) + 1e-12
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = str(checkpoint)
    meta = {"checkpoint": spec if spec == "random" else str(Path(spec).resolve()), "source": encoder.source,
            "fingerprint": encoder.fingerprint, "config": encoder.config.to_dict(), "clips": clips,
            "unreadable": bad}
    arrays = {"embeddings": video.astype(np.float32), "paths": np.array([str(p) for p in good]),
              "meta": np.array(json.dumps(meta))}
    if per_clip:
        arrays["clip_embeddings"] = emb.astype(np.float32)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
        np.savez(f, **arrays)
    tmp.replace(out)
    return out


def load_index(path: str | Path) -> dict[str, Any]:
    """An index written by :func:`build_index` (one line naming it when it is missing or damaged)."""
    path = Path(path)
    if not path.is_file() and Path(str(path) + ".npz").is_file():  # written by versions that appended .npz
        path = Path(str(path) + ".npz")
    if not path.is_file():
        raise FileNotFoundError(f"index '{path}' does not exist; build it with `videocontrast embed`")
    try:
        with np.load(path, allow_pickle=False) as z:
            index = {"embeddings": z["embeddings"], "paths": [str(p) for p in z["paths"]],
                     "meta": json.loads(str(z["meta"]))}
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as e:
        reason = " ".join(str(e).split())[:120]
        raise ValueError(f"index '{path}' is damaged or not an index written by `videocontrast embed` "
                         f"({type(e).__name__}: {reason}); build it again with `videocontrast embed`") from None
    if index["embeddings"].ndim != 2 or len(index["embeddings"]) != len(index["paths"]):
        raise ValueError(f"index '{path}' is damaged: {len(index['paths'])} paths for embeddings of shape "
                         f"{index['embeddings'].shape}; build it again with `videocontrast embed`")
    return index


def _index_encoder(index: str | Path, meta: dict[str, Any], checkpoint: str | Path | None, device):
    """The encoder an index was built with: the recorded weights, or ``checkpoint`` when they moved; refused
    unless its fingerprint matches the index's."""
    spec = str(checkpoint) if checkpoint is not None else meta["checkpoint"]
    want = meta.get("fingerprint")
    if spec != "random":
        if not Path(spec).is_file():
            if checkpoint is None:
                raise FileNotFoundError(f"index '{index}' was built with '{spec}', which does not exist any more; "
                                        "if it moved, pass its new path with --checkpoint PATH")
            raise FileNotFoundError(f"--checkpoint '{spec}' does not exist")
        if want and (have := weights_fingerprint(spec)) != want:
            raise ValueError(f"'{spec}' ({have}) is not the file index '{index}' was built with (fingerprint "
                             f"{want}, from '{meta['checkpoint']}')"
                             + ("; it changed since" if checkpoint is None else "")
                             + "; pass those weights with --checkpoint PATH, or build the index again with "
                               "`videocontrast embed`")
    cfg = config_from_dict(meta["config"]) if isinstance(meta.get("config"), dict) else None
    encoder = load_encoder(spec, device=device, config=cfg)
    if want and encoder.fingerprint != want:  # `random` with another architecture or seed
        raise ValueError(f"'{spec}' gives weights with fingerprint {encoder.fingerprint}, not {want} as index "
                         f"'{index}'; build the index again with `videocontrast embed`")
    return encoder


def search(index: str | Path, query: str | Path, k: int = 5, html: str | None = None,
           device: str | None = None, checkpoint: str | Path | None = None) -> list[tuple[str, float]]:
    """The ``k`` indexed videos most similar (cosine) to ``query``, as ``(path, similarity)`` pairs.

    ``checkpoint``: the weights the index was built with when they are no longer at the recorded path (their
    SHA-1 must match the index's). Raises ValueError / FileNotFoundError with one line for a bad ``k``, device,
    query, index or checkpoint.
    """
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    idx = load_index(index)
    meta = idx["meta"]
    if not Path(query).is_file():
        raise FileNotFoundError(f"query video '{query}' does not exist")
    try:
        probe_video(query)
    except VideoDecodeError as e:
        raise ValueError(f"query video '{query}' cannot be read: {e.reason}") from None
    dev = check_device(device or "cpu")
    encoder = _index_encoder(index, meta, checkpoint, dev)
    try:
        q = embed_videos(encoder, [query], clips_per_video=meta.get("clips", 4), device=dev)[0]
    except VideoDecodeError as e:
        raise ValueError(f"query video '{query}' cannot be read: {e.reason}") from None
    if q.shape[0] != idx["embeddings"].shape[1]:
        raise ValueError(f"the query's embedding has {q.shape[0]} dimensions, index '{index}' "
                         f"{idx['embeddings'].shape[1]}: not the same encoder")
    sims = idx["embeddings"] @ q
    order = np.argsort(-sims)[:k]
    hits = [(idx["paths"][i], float(sims[i])) for i in order]
    if html:
        _write_page(Path(html), query, hits)
    return hits


def _write_page(html: Path, query: str | Path, hits: list[tuple[str, float]]) -> Path:
    """``html`` with its own frame image ``img/<html name>.png`` beside it: pages written into one folder do not
    share an image, and nothing else in the folder (e.g. a ``retrieval.html``) is overwritten."""
    out_dir = html.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    queries = [{"path": str(query), "label_name": "query",
                "neighbours": [{"path": p, "label_name": Path(p).parent.name, "sim": s, "hit": None}
                               for p, s in hits]}]
    image = f"{html.stem}.png"
    work = Path(tempfile.mkdtemp(prefix=".search-", dir=out_dir))
    try:
        page = retrieval_report(work, queries, title=f"Search: {Path(query).name}", metrics={}, image_name=image)
        (out_dir / "img").mkdir(exist_ok=True)
        (work / "img" / image).replace(out_dir / "img" / image)
        page.replace(html)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return html
