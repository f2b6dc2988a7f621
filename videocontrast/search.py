"""Query an embedding folder written by ``videocontrast embed`` (see :mod:`videocontrast.embed`).

A query is a video file (embedded with the folder's encoder: the recorded weights, or ``--checkpoint`` when they
moved, refused unless its SHA-1 matches), a row of the folder (``row:17`` or ``17``), or a folder of query videos.
Neighbours come from the FAISS index beside the embeddings (``index.faiss``) or, without faiss, from exact NumPy
search; ``label`` and ``prefix`` restrict them to rows with that label or a path under that prefix.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .api import check_device, load_encoder
from .config import config_from_dict
from .data.datasets import find_videos
from .embed import Item, embed_items
from .shards import read_table
from .eval.features import weights_fingerprint
from .eval.report import retrieval_report
from .index import INDEX_FILE, load_index, search_index


@dataclass
class Collection:
    """An embedding folder in memory: ``emb`` ``(N, D)`` float32, ``table`` columns, ``meta``, the FAISS index
    (None: exact NumPy search)."""

    folder: Path
    emb: np.ndarray
    table: dict[str, np.ndarray]
    meta: dict[str, Any]
    index: Any = None
    _real: list[str] | None = None

    def __len__(self) -> int:
        return len(self.emb)

    def real_paths(self) -> list[str]:
        """Each row's path with links resolved (computed once: prefix filters compare against these)."""
        if self._real is None:
            self._real = [os.path.realpath(str(p)) for p in self.table["path"]]
        return self._real


def load_collection(folder: str | Path, use_index: bool = True) -> Collection:
    """Read an embedding folder (one line naming it when it is missing or damaged)."""
    folder = Path(folder)
    if not (folder / "meta.json").is_file() or not (folder / "embeddings.npy").is_file():
        raise FileNotFoundError(f"'{folder}' is not an embedding folder (no meta.json / embeddings.npy); build it "
                                "with `videocontrast embed`")
    try:
        meta = json.loads((folder / "meta.json").read_text())
        emb = np.load(folder / "embeddings.npy", allow_pickle=False).astype(np.float32)
        table = read_table(folder)
    except (ValueError, OSError, KeyError) as e:
        reason = " ".join(str(e).split())[:120]
        raise ValueError(f"embedding folder '{folder}' is damaged ({type(e).__name__}: {reason}); build it again "
                         "with `videocontrast embed`") from None
    if emb.ndim != 2 or any(len(v) != len(emb) for v in table.values()):
        raise ValueError(f"embedding folder '{folder}' is damaged: {len(table.get('path', []))} table rows for "
                         f"embeddings of shape {emb.shape}; build it again with `videocontrast embed`")
    index = None
    if use_index and (folder / INDEX_FILE).is_file():
        try:
            index, _ = load_index(folder)
        except ImportError:
            index = None  # faiss not installed: exact search below
    return Collection(folder, emb, table, meta, index)


def nearest(col: Collection, queries: np.ndarray, k: int, label: str | None = None,
            prefix: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Similarities and rows ``(M, k)`` of the rows nearest each query (``-1`` pads when fewer qualify)."""
    allowed = None
    if label is not None or prefix is not None:
        mask = np.ones(len(col), bool)
        if label is not None:
            mask &= col.table["label"] == label
        if prefix is not None:
            want = os.path.realpath(prefix)
            mask &= np.array([p == want or p.startswith(want.rstrip(os.sep) + os.sep) for p in col.real_paths()])
        allowed = np.flatnonzero(mask)
    q = np.atleast_2d(np.asarray(queries, np.float32))
    if col.index is not None:
        return search_index(col.index, q, k, allowed)
    sims = q @ col.emb.T  # (M, N) exact
    if allowed is not None:
        keep = np.full(len(col), -np.inf, np.float32)
        keep[allowed] = 0
        sims = sims + keep
    rows = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(sims, rows, 1)
    return top, np.where(np.isfinite(top), rows, -1)


def collection_encoder(col: Collection, checkpoint: str | Path | None, device):
    """The encoder a folder was built with: the recorded weights, or ``checkpoint`` when they moved; refused
    unless its fingerprint matches."""
    meta, where = col.meta, col.folder
    spec = str(checkpoint) if checkpoint is not None else meta["checkpoint"]
    want = meta.get("fingerprint")
    if spec != "random":
        if not Path(spec).is_file():
            if checkpoint is None:
                raise FileNotFoundError(f"'{where}' was built with '{spec}', which does not exist any more; "
                                        "if it moved, pass its new path with --checkpoint PATH")
            raise FileNotFoundError(f"--checkpoint '{spec}' does not exist")
        if want and (have := weights_fingerprint(spec)) != want:
            raise ValueError(f"'{spec}' ({have}) is not the file '{where}' was built with (fingerprint {want}, from "
                             f"'{meta['checkpoint']}'); pass those weights with --checkpoint PATH, or embed again")
    cfg = config_from_dict(meta["config"]) if isinstance(meta.get("config"), dict) else None
    encoder = load_encoder(spec, device=device, config=cfg)
    if want and encoder.fingerprint != want:
        raise ValueError(f"'{spec}' gives weights with fingerprint {encoder.fingerprint}, not {want} as '{where}'; "
                         "embed again with `videocontrast embed`")
    return encoder


def embed_queries(encoder, paths: list[str], clips: int) -> np.ndarray:
    """``(M, D)`` float32 video embeddings of ``paths``; ValueError naming the first that cannot be read."""
    out = []
    for record, z in embed_items(encoder, [Item(str(p)) for p in paths], clips, progress=False):
        if z is None:
            raise ValueError(f"query video '{paths[record['i']]}' cannot be read: {record['error']}")
        v = z.mean(0)
        out.append(v / (np.linalg.norm(v) + 1e-12))
    return np.stack(out)


def _parse_row(query: str) -> int | None:
    text = query[4:] if query.startswith("row:") else query
    return int(text) if text.isdigit() and not Path(query).exists() else None


def search(folder: str | Path, query: str | Path, k: int = 5, label: str | None = None, prefix: str | None = None,
           html: str | None = None, device: str | None = None,
           checkpoint: str | Path | None = None) -> list[tuple[str, list[tuple[str, float, int]]]]:
    """The ``k`` rows most similar (cosine) to each query, as ``[(query, [(path, similarity, row), ...]), ...]``.

    ``query``: a video file, a row (``row:N`` or ``N``), or a folder of query videos. Raises ValueError /
    FileNotFoundError with one line for a bad ``k``, query, folder or checkpoint.
    """
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    col = load_collection(folder)
    query = str(query)
    row = _parse_row(query)
    if row is not None:
        if row >= len(col):
            raise ValueError(f"row {row} is past the end of '{folder}' ({len(col)} rows)")
        names, q = [f"row:{row} {col.table['path'][row]}"], col.emb[row][None]
    else:
        qpath = Path(query)
        if qpath.is_dir():
            paths = [str(p) for p in find_videos(qpath)]
        elif qpath.is_file():
            paths = [query]
        else:
            raise FileNotFoundError(f"query video '{query}' does not exist")
        encoder = collection_encoder(col, checkpoint, check_device(device or "cpu"))
        q = embed_queries(encoder, paths, col.meta.get("clips", 4))
        names = paths
    if q.shape[1] != col.emb.shape[1]:
        raise ValueError(f"the query's embedding has {q.shape[1]} dimensions, '{folder}' {col.emb.shape[1]}: "
                         "not the same encoder")
    sims, rows = nearest(col, q, k, label, prefix)
    results = [(name, [(str(col.table["path"][r]), float(s), int(r)) for s, r in zip(srow, rrow) if r >= 0])
               for name, srow, rrow in zip(names, sims, rows)]
    if html:
        _write_page(Path(html), names[0], [(p, s) for p, s, _ in results[0][1]])
    return results


def _write_page(html: Path, query: str | Path, hits: list[tuple[str, float]]) -> Path:
    """``html`` with its own frame image ``img/<html name>.png`` beside it: pages written into one folder do not
    share an image, and nothing else in the folder (e.g. a ``retrieval.html``) is overwritten."""
    out_dir = html.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    queries = [{"path": str(query).split(" ", 1)[-1], "label_name": "query",
                "neighbours": [{"path": p, "label_name": Path(p).parent.name, "sim": s, "hit": None}
                               for p, s in hits]}]
    image = f"{html.stem}.png"
    work = Path(tempfile.mkdtemp(prefix=".search-", dir=out_dir))
    try:
        page = retrieval_report(work, queries, title=f"Search: {Path(str(query)).name}", metrics={},
                                image_name=image)
        (out_dir / "img").mkdir(exist_ok=True)
        (work / "img" / image).replace(out_dir / "img" / image)
        page.replace(html)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return html
