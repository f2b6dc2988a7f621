"""Query an embedding folder written by ``videocontrast embed`` (see :mod:`videocontrast.search.embed`).

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
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..api import check_device, load_encoder
from ..config import config_from_dict
from ..data.discover import find_videos
from .embed import Item, embed_items
from .shards import read_table
from ..eval.embedding import top_k, video_embedding
from ..eval.features import weights_fingerprint
from ..eval.report import retrieval_report
from ..engine.run import check_writable
from .index import INDEX_FILE, index_mismatch, load_index, search_index


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


# What search and serve read from meta.json: the fields each needs, and the type of each field when it is there.
META_REQUIRED = ("checkpoint", "clips")
META_TYPES: dict[str, type] = {"checkpoint": str, "clips": int, "fingerprint": str, "per_clip": bool, "dim": int,
                               "count": int, "roots": list, "config": dict, "unreadable": list}


def _note(notes: list[str] | None, text: str) -> None:
    if notes is None:
        warnings.warn(text, stacklevel=3)
    else:
        notes.append(text)


def _damaged(folder: Path, what: str) -> ValueError:
    return ValueError(f"embedding folder '{folder}' is damaged ({what}); build it again with `videocontrast embed`")


def _check_meta(folder: Path, meta: Any, emb: np.ndarray) -> dict[str, Any]:
    where = folder / "meta.json"
    if not isinstance(meta, dict):
        raise _damaged(folder, f"{where} holds a JSON {type(meta).__name__}, not an object")
    for key in META_REQUIRED:
        if key not in meta:
            raise _damaged(folder, f"{where} has no '{key}'")
    for key, kind in META_TYPES.items():
        value = meta.get(key)
        if key in meta and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise _damaged(folder, f"{where}: '{key}' is {value!r:.40}, not a{'n' if kind is int else ''} "
                                   f"{kind.__name__}")
    if not all(isinstance(r, str) for r in meta.get("roots", [])):
        raise _damaged(folder, f"{where}: 'roots' is not a list of folder names")
    if meta["clips"] < 1:
        raise _damaged(folder, f"{where}: 'clips' is {meta['clips']}, not at least 1")
    shape = (meta.get("count", len(emb)), meta.get("dim", emb.shape[1]))
    if shape != tuple(emb.shape):
        raise _damaged(folder, f"{where} says {shape[0]}x{shape[1]} embeddings, embeddings.npy holds "
                               f"{'x'.join(map(str, emb.shape))}")
    return meta


def load_collection(folder: str | Path, use_index: bool = True, notes: list[str] | None = None) -> Collection:
    """Read an embedding folder (one line naming it when it is missing or damaged).

    An index that does not belong to the embeddings (another row count or fingerprint: a run killed between the
    table and the index, an index from before the table changed) is not used: exact search, with a note (appended
    to ``notes``, else a warning).
    """
    folder = Path(folder)
    if not (folder / "meta.json").is_file() or not (folder / "embeddings.npy").is_file():
        raise FileNotFoundError(f"'{folder}' is not an embedding folder (no meta.json / embeddings.npy); build it "
                                "with `videocontrast embed`")
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (ValueError, OSError) as e:
        raise _damaged(folder, f"{folder / 'meta.json'} is not JSON: {' '.join(str(e).split())[:80]}") from None
    try:
        stored = np.load(folder / "embeddings.npy", allow_pickle=False)
        table = read_table(folder)
    except (ValueError, OSError, KeyError) as e:
        reason = " ".join(str(e).split())[:120]
        raise _damaged(folder, f"{type(e).__name__}: {reason}") from None
    if stored.ndim != 2 or any(len(v) != len(stored) for v in table.values()):
        raise _damaged(folder, f"{len(table.get('path', []))} table rows for embeddings of shape {stored.shape}")
    meta = _check_meta(folder, meta, stored)
    index = None
    if use_index and (folder / INDEX_FILE).is_file():
        try:
            index, params = load_index(folder)
        except ImportError:
            index = None  # faiss not installed: exact search below
        else:
            why = index_mismatch(params, stored)
            if why is not None:
                _note(notes, f"not using the index '{folder / INDEX_FILE}': {why}; searching exactly instead "
                             "(run `videocontrast embed` again to rebuild it)")
                index = None
    return Collection(folder, stored.astype(np.float32), table, meta, index)


def row_filter(col: Collection, label: str | None = None, prefix: str | None = None) -> np.ndarray | None:
    """The rows with ``label`` and a path under ``prefix`` (links resolved), or None when neither is given."""
    if label is None and prefix is None:
        return None
    mask = np.ones(len(col), bool)
    if label is not None:
        mask &= col.table["label"] == label
    if prefix is not None:
        want = os.path.realpath(prefix)
        mask &= np.array([p == want or p.startswith(want.rstrip(os.sep) + os.sep) for p in col.real_paths()], bool)
    return np.flatnonzero(mask)


def nearest(col: Collection, queries: np.ndarray, k: int, label: str | None = None,
            prefix: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Similarities and rows ``(M, k)`` of the rows nearest each query (``-1`` pads when fewer qualify)."""
    return search_rows(col, queries, k, row_filter(col, label, prefix))


def search_rows(col: Collection, q: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest` with the rows already filtered (``allowed``: None for every row)."""
    q = np.atleast_2d(np.asarray(q, np.float32))
    if col.index is not None:
        return search_index(col.index, q, k, allowed)
    # Padded as the FAISS index pads (-inf, row -1) where fewer than k rows are allowed: one answer shape.
    sims = np.full((len(q), k), -np.inf, np.float32)
    rows = np.full((len(q), k), -1, np.int64)
    picked = None if allowed is None else np.asarray(allowed, np.int64)
    if picked is None or len(picked):
        s, r = top_k(q, col.emb if picked is None else col.emb[picked], k)
        sims[:, :s.shape[1]] = s
        rows[:, :r.shape[1]] = r if picked is None else picked[r]
    return sims, rows


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


def embed_queries(encoder, paths: list[str], clips: int,
                  skipped: list[tuple[str, str]] | None = None) -> np.ndarray:
    """``(M, D)`` float32 video embeddings of ``paths``; ValueError naming the first that cannot be read, or with
    ``skipped`` given, ``(path, reason)`` of each such file appended to it and only the others' rows returned."""
    out = []
    for record, z in embed_items(encoder, [Item(str(p)) for p in paths], clips, progress=False):
        if z is None:
            if skipped is None:
                raise ValueError(f"query video '{paths[record['i']]}' cannot be read: {record['error']}")
            skipped.append((str(paths[record["i"]]), record["error"]))
            continue
        out.append(video_embedding(z))
    return np.stack(out) if out else np.zeros((0, 0), np.float32)


def _parse_row(query: str) -> int | None:
    text = query[4:] if query.startswith("row:") else query
    return int(text) if text.isdigit() and not Path(query).exists() else None


def _labels(col: Collection, most: int = 8) -> str:
    names = sorted({str(v) for v in col.table["label"]} - {""})
    shown = ", ".join(repr(n) for n in names[:most]) + (f" ... ({len(names)} in all)" if len(names) > most else "")
    return f"labels: {shown}" if names else "no row has a label"


def search(folder: str | Path, query: str | Path, k: int = 5, label: str | None = None, prefix: str | None = None,
           html: str | None = None, device: str | None = None, checkpoint: str | Path | None = None,
           notes: list[str] | None = None) -> list[tuple[str, list[tuple[str, float, int]]]]:
    """The ``k`` rows most similar (cosine) to each query, as ``[(query, [(path, similarity, row), ...]), ...]``.

    ``query``: a video file, a row (``row:N`` or ``N``), or a folder of query videos (a file in it that cannot be
    read is skipped with a note). Raises ValueError / FileNotFoundError with one line for a bad ``k``, query,
    folder, checkpoint, or a ``label``/``prefix`` no row has. ``notes`` collects what the user should know (``k``
    cut to the table, skipped queries); without it they are warnings.
    """
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if html:  # before any work: a read-only folder loses nothing
        check_writable(Path(html), folder=False, flag="--html")
    col = load_collection(folder, notes=notes)
    if int(k) > len(col):
        _note(notes, f"-k {k} is more than the {len(col)} rows of '{folder}': showing at most {len(col)}")
        k = len(col)
    allowed = row_filter(col, label, prefix)
    if allowed is not None and len(allowed) == 0:
        what = " and ".join(x for x in (f"label {label!r}" if label is not None else "",
                                          f"a path under '{prefix}'" if prefix is not None else "") if x)
        hint = _labels(col) if label is not None else f"roots: {', '.join(col.meta.get('roots', [])) or 'none'}"
        raise ValueError(f"no row of '{folder}' has {what} ({hint})")
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
        if not qpath.is_dir():
            q, names = embed_queries(encoder, paths, col.meta["clips"]), paths
        else:  # one bad file among many queries is reported, the others answered
            bad: list[tuple[str, str]] = []
            q = embed_queries(encoder, paths, col.meta["clips"], skipped=bad)
            if len(bad) == len(paths):
                raise ValueError(f"none of the {len(paths)} query videos in '{query}' can be read (e.g. "
                                 f"'{bad[0][0]}': {bad[0][1]})")
            for path, reason in bad:
                _note(notes, f"skipping query video '{path}': it cannot be read: {reason}")
            names = [p for p in paths if p not in {b[0] for b in bad}]
    if q.shape[1] != col.emb.shape[1]:
        raise ValueError(f"the query's embedding has {q.shape[1]} dimensions, '{folder}' {col.emb.shape[1]}: "
                         "not the same encoder")
    sims, rows = search_rows(col, q, k, allowed)
    results = [(name, [(str(col.table["path"][r]), float(s), int(r)) for s, r in zip(srow, rrow) if r >= 0])
               for name, srow, rrow in zip(names, sims, rows)]
    if html:
        try:
            _write_page(Path(html), names[0], [(p, s) for p, s, _ in results[0][1]])
        except OSError as e:
            raise ValueError(f"--html '{html}' cannot be written ({e.strerror or e}); choose another --html") from None
    return results


def _write_page(html: Path, query: str | Path, hits: list[tuple[str, float]]) -> Path:
    """``html`` with its own frame image ``img/<html name>.png`` beside it: pages written into one folder do not
    share an image, and nothing else in the folder (e.g. a ``retrieval.html``) is overwritten."""
    out_dir = html.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    queries = [{"path": str(query).split(" ", 1)[-1], "label_name": "", "title": "query",
                "neighbours": [{"path": p, "label_name": Path(p).parent.name, "sim": s, "hit": None}
                               for p, s in hits]}]
    image = f"{html.stem}.png"
    work = Path(tempfile.mkdtemp(prefix=".search-", dir=out_dir))
    try:
        page = retrieval_report(work, queries, title=f"Search: {Path(str(query)).name}", metrics={},
                                image_name=image,
                                caption="The query (left) and the videos of the folder nearest to it, most similar "
                                        "first, each with its folder's name and cosine similarity to the query.")
        (out_dir / "img").mkdir(exist_ok=True)
        (work / "img" / image).replace(out_dir / "img" / image)
        page.replace(html)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return html
