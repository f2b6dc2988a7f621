"""Embed a video collection into a folder of standard files: sharded under torchrun, resumable, bad files skipped.

Input (:func:`read_inputs`): a folder (searched recursively; the label is each file's folder name), a list file
(one path a line, optionally followed by whitespace and a label) or a CSV manifest ``path[,label][,start,end]``
(Kinetics-style; start/end in seconds; an optional header row names the columns, in any order; quoted fields may
hold commas and newlines). Relative paths are relative to the list's folder; the table holds absolute paths. A
UTF-8 byte order mark is not part of the first path. A file and span listed twice are embedded once (a warning
names the lines skipped).

Output folder (:func:`embed_collection`)::

    embeddings.npy      (N, D) float32 or float16, L2-normalised; row i is row i of the table
    table.parquet       path, label, start, end, clip, clip_start, clip_end, duration, size, mtime_ns, fingerprint
                        (table.csv where pyarrow is not installed)
    meta.json           the encoder (checkpoint, fingerprint, config), clips, per_clip, roots, unreadable files
    index.faiss, index.json   the FAISS index (videocontrast.search.index) when faiss is installed
    parts/              each rank's shards (videocontrast.search.shards), written every few files: what makes resume work

Under ``torchrun --nproc_per_node=G`` rank r embeds every G-th file still to do and writes its own parts; rank 0
merges them into the files above (in the input's order, so the result does not depend on G). A killed run
continues with the files that have no part yet; a file whose size or modification time changed is embedded
again. Per video, the embedding is :func:`videocontrast.eval.embedding.video_embedding` of ``clips`` evenly spaced
clips (the normalised mean of their normalised features: the vector ``retrieve`` ranks with); with ``per_clip``
each clip is its own row (its normalised feature) with its time span.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .. import dist
from ..api import check_device, load_encoder
from ..build.components import build_eval_transform
from ..config import Config
from ..engine.run import check_writable
from ..eval.embedding import l2_normalize, video_embedding
from ..data.discover import find_videos, read_list_file, try_probe
from ..data.decode import VideoDecodeError, VideoInfo, read_frames
from ..fileio import atomic_write, atomic_write_text
from .index import build_index, embeddings_sha1, remove_index, save_index
from .shards import TABLE_COLUMNS, fmt, part_key, read_parts, read_table, stat_key, write_part, write_table  # noqa: F401
from ..transforms.temporal import uniform_clips

@dataclass(frozen=True)
class Item:
    """One entry of the input: a file, its label ('' if none) and the span to embed (seconds; None: all)."""

    path: str
    label: str = ""
    start: float | None = None
    end: float | None = None


def _float(text: str, where: str, field: str) -> float | None:
    if text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {field} '{text}' is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: {field} '{text}' must be a finite number of seconds >= 0")
    return value


CSV_COLUMNS = ("path", "label", "start", "end")


def read_inputs(source: str | Path, skipped: list[dict[str, str]] | None = None) -> tuple[list[Item], list[str]]:
    """The items to embed (absolute paths, each file and span once) and the roots they live under.

    The roots are only provisional for a list or CSV (:func:`usable_roots` of the rows that could be embedded is
    what ``meta.json`` records): a line naming an unreadable file elsewhere must not widen them.

    Raises:
        FileNotFoundError / ValueError: one line naming the file (and line and field) at fault.
    """
    source = Path(source)
    if source.is_dir():
        root = source.resolve()
        # abspath, not resolve: a link keeps its own name (and folder, the label) in the table
        items = [Item(os.path.abspath(p), p.parent.name if p.parent.resolve() != root else "")
                 for p in find_videos(source, skipped=skipped)]
        return items, [str(root)]
    if not source.is_file():
        raise FileNotFoundError(f"--root '{source}' is neither a folder of videos nor a list or CSV file")
    lines = _read_csv(source) if source.suffix.lower() == ".csv" else _read_list(source)
    base = Path(os.path.abspath(source.parent))  # relative lines are relative to the list, wherever embed runs
    items: list[Item] = []
    first: dict[tuple, int] = {}
    dropped: list[str] = []
    for n, item in lines:
        item = Item(os.path.abspath(base / item.path), item.label, item.start, item.end)
        key = (item.path, item.start, item.end)
        if key in first:  # the same file and span twice would be embedded once and counted twice
            dropped.append(f"line {n} (= line {first[key][0]}"
                           + (f", label '{item.label}' dropped for '{first[key][1]}'" if item.label != first[key][1]
                              else "") + ")")
            continue
        first[key] = (n, item.label)
        items.append(item)
    if dropped:
        warnings.warn(f"{source}: {len(dropped)} duplicate line(s) skipped, each file and span is embedded once: "
                      + "; ".join(dropped[:5]) + (" ..." if len(dropped) > 5 else ""), stacklevel=2)
    if not items:
        raise FileNotFoundError(f"'{source}' lists no videos")
    return items, usable_roots([i.path for i in items])


def usable_roots(paths: list[str]) -> list[str]:
    """The folders (links resolved) that hold ``paths``: what ``serve`` may hand out.

    Each file's own folder, less those inside another of them. Not one common ancestor: two videos in
    /data/a and /home/b would make that ``/``, and every file on the machine would be under a root.
    """
    folders = sorted({str(Path(p).resolve().parent) for p in paths})
    return [f for f in folders if not any(f != g and os.path.commonpath([f, g]) == g for g in folders)]


def _read_list(source: Path) -> list[tuple[int, Item]]:
    """``(line number, item)`` of a list file (:func:`~videocontrast.data.discover.read_list_file`)."""
    return [(n, Item(path, label)) for n, path, label in read_list_file(source)]


def _read_csv(source: Path) -> list[tuple[int, Item]]:
    """``(line number, item)`` of a CSV manifest ``path[,label][,start,end]``; a first row naming a ``path``
    column is a header, whose names map the columns in any order. The csv module reads the file itself, so a
    quoted field may hold a comma or a newline."""
    with open(source, encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.reader(f)
        rows = [(reader.line_num, row) for row in reader]
    header = None
    names = [h.strip().lower() for h in rows[0][1]] if rows else []
    # A header names the path column, in any order; "path,colour" is a header with a column too many.
    if "path" in names and (names[0] == "path" or set(names) <= set(CSV_COLUMNS)):
        header = names
        unknown = set(header) - set(CSV_COLUMNS)
        if unknown:
            raise ValueError(f"{source}: unknown column(s) {', '.join(sorted(unknown))} ({', '.join(CSV_COLUMNS)})")
        if len(set(header)) != len(header):
            raise ValueError(f"{source}: a column is named twice in the header ({', '.join(header)})")
        rows = rows[1:]
    out = []
    for n, row in rows:
        if not row or not "".join(row).strip():
            continue
        where = f"{source}:{n}"
        if header:
            if len(row) != len(header):
                raise ValueError(f"{where}: {len(row)} fields, the header has {len(header)}")
            f = dict(zip(header, row))
        elif len(row) in (1, 2):
            f = dict(zip(("path", "label"), row))
        elif len(row) in (3, 4):
            f = dict(zip(("path", "start", "end") if len(row) == 3 else CSV_COLUMNS, row))
        else:
            raise ValueError(f"{where}: {len(row)} fields; expected path[,label][,start,end]")
        if not f["path"].strip():
            raise ValueError(f"{where}: the path is empty")
        start, end = _float(f.get("start", ""), where, "start"), _float(f.get("end", ""), where, "end")
        if start is not None and end is not None and end <= start:
            raise ValueError(f"{where}: end {end} is not after start {start}")
        out.append((n, Item(f["path"].strip(), f.get("label", "").strip(), start, end)))
    return out


# ----------------------------------------------------------------------------- one file -> clips

def clip_indices(info: VideoInfo, item: Item, clips: int, clip_len: int, stride: int) -> list[np.ndarray]:
    """``clips`` evenly spaced clips (frame indices) inside the item's span; ValueError when the span misses the
    video."""
    fps = info.fps if info.fps > 0 else 25.0
    f0 = 0 if item.start is None else int(round(item.start * fps))
    f1 = info.num_frames if item.end is None else min(info.num_frames, int(round(item.end * fps)))
    if f0 >= f1:
        raise ValueError(f"span {item.start}-{item.end} s is outside the video ({info.num_frames / fps:.2f} s)")
    return [c + f0 for c in uniform_clips(f1 - f0, clip_len, clips, stride=stride)]


class _Clips(Dataset):
    """Item i -> dict with ``video`` uint8 ``(V, T, C, H, W)`` and clip spans, or ``error`` (a reason)."""

    def __init__(self, items: list[Item], clips: int, clip_len: int, stride: int, decode_size) -> None:
        self.items, self.clips, self.clip_len, self.stride = items, clips, clip_len, stride
        if isinstance(decode_size, (int, np.integer)):  # short side decode_size, centre square: any aspect stacks
            self.size, self.fit = (int(decode_size), int(decode_size)), "cover"
        else:
            self.size, self.fit = decode_size, "stretch"

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        out: dict[str, Any] = {"i": i}
        try:
            st = os.stat(item.path)
            out.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
        except OSError as e:
            return {**out, "size": -1, "mtime_ns": -1, "error": f"cannot stat: {e.strerror}"}
        info = try_probe(item.path)
        if isinstance(info, VideoDecodeError):
            return {**out, "error": info.reason}
        try:
            views = clip_indices(info, item, self.clips, self.clip_len, self.stride)
            frames = read_frames(item.path, np.concatenate(views), size=self.size, info=info, fit=self.fit)
        except (VideoDecodeError, ValueError) as e:
            return {**out, "error": getattr(e, "reason", str(e))}
        fps = info.fps if info.fps > 0 else 25.0
        out["video"] = frames.reshape(len(views), self.clip_len, *frames.shape[1:])  # (V, T, C, H, W)
        out["spans"] = [(float(v.min() / fps), float((v.max() + 1) / fps)) for v in views]
        out["duration"] = info.num_frames / fps
        return out


def _loader(items: list[Item], encoder, clips: int, num_workers: int) -> DataLoader:
    ds = _Clips(items, clips, encoder.clip_len, encoder.stride, encoder.decode_size)
    return DataLoader(ds, batch_size=None, num_workers=num_workers)  # one file at a time, decoded in workers


def embed_items(encoder, items: list[Item], clips: int = 4, batch_size: int = 32, num_workers: int = 0,
                progress: bool | None = None, desc: str = "embed") -> Iterator[tuple[dict[str, Any], np.ndarray | None]]:
    """Yield ``(record, clip_embeddings)`` per item, in order: ``clip_embeddings`` float32 ``(V, D)``, each
    L2-normalised, or None for a file that cannot be read (``record["error"]`` says why).

    Clips of several files go through the encoder together (``batch_size`` clips), in float32 on every device
    as evaluation's feature extraction runs: so a folder holds the vectors ``retrieve`` ranks with.
    """
    device = next(encoder.parameters()).device
    transform = build_eval_transform(encoder.config).to(device)
    pending: list[dict[str, Any]] = []

    def flush() -> Iterator[tuple[dict[str, Any], np.ndarray | None]]:
        good = [r for r in pending if "video" in r]
        feats: list[np.ndarray] = []
        if good:
            x = torch.cat([r["video"] for r in good]).to(device, non_blocking=True)  # (B*V, T, C, H, W)
            with torch.inference_mode():
                z = l2_normalize(encoder(transform(x)).reshape(len(x), -1).float().cpu().numpy())  # (B*V, D)
            feats = np.split(z, np.cumsum([len(r["video"]) for r in good])[:-1])
        it = iter(feats)
        for r in pending:
            r.pop("video", None)
            yield r, (next(it) if "spans" in r else None)
        pending.clear()

    bar = tqdm(total=len(items), desc=desc, unit="file", dynamic_ncols=True, mininterval=1.0,
               disable=None if progress is None else not progress)
    try:
        for record in _loader(items, encoder, clips, num_workers):
            pending.append(record)
            if sum(len(r["video"]) for r in pending if "video" in r) >= batch_size:
                n = len(pending)
                yield from flush()
                bar.update(n)
        n = len(pending)
        yield from flush()
        bar.update(n)
    finally:
        bar.close()


# ----------------------------------------------------------------------------- the whole collection

def _settings(encoder, clips: int, per_clip: bool) -> dict[str, Any]:
    return {"fingerprint": encoder.fingerprint, "clips": clips, "per_clip": per_clip}


def embed_collection(checkpoint: str | Path, source: str | Path, out: str | Path, clips: int = 4,
                     per_clip: bool = False, device: str | None = None, batch_size: int = 32,
                     dtype: str = "float32", config: str | Path | Config | None = None, num_workers: int = 0,
                     flush_every: int = 16, index_kind: str | None = "auto",
                     progress: bool | None = None) -> Path | None:
    """Embed every item of ``source`` (folder, list or CSV) into the folder ``out``; see the module docstring.

    Runs in one process, or as one rank of ``torchrun`` (each rank its share, rank 0 merges). ``index_kind``:
    the FAISS index to build (:data:`videocontrast.search.index.INDEX_KINDS`), None for none.

    Returns:
        ``out`` on rank 0 (the merged folder), None on the other ranks.
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"--dtype must be float32 or float16, got {dtype!r}")
    started = not torch.distributed.is_initialized()
    info = dist.init_distributed()
    started = started and torch.distributed.is_initialized()
    out = Path(out)
    check_writable(out, folder=True)  # before the work: a read-only or misnamed --out loses nothing
    parts = out / "parts"
    bad: list[dict[str, str]] = []
    items, roots = read_inputs(source, skipped=bad)
    if not Path(source).is_dir():
        roots = None  # a list's or CSV's: from the rows that could be embedded, once they are known
    if device is None and info.world_size > 1:
        device = str(info.device)
    encoder = load_encoder(checkpoint, device=check_device(device), config=config)
    settings = _settings(encoder, clips, per_clip)
    if info.rank == 0:
        parts.mkdir(parents=True, exist_ok=True)
        stored = parts / "settings.json"
        if _stored_settings(stored) != settings:
            for p in parts.glob("r*-*"):  # made with other weights or clips (or unknown): nothing to reuse
                p.unlink()
        atomic_write_text(stored, json.dumps(settings))
    dist.barrier()
    done = read_parts(parts)
    todo = [it for it in items if part_key(it, *stat_key(it.path)) not in done]
    mine = todo[info.rank::info.world_size]
    rows: list[dict[str, Any]] = []
    embs: list[np.ndarray] = []
    seq, files = 0, 0
    for record, z in embed_items(encoder, mine, clips, batch_size, num_workers, progress=progress if info.rank == 0
                                 else False, desc=f"embed{f' rank {info.rank}' if info.world_size > 1 else ''}"):
        item = mine[record["i"]]
        base = {"path": item.path, "label": item.label, "start": fmt(item.start), "end": fmt(item.end),
                "size": record["size"], "mtime_ns": record["mtime_ns"]}
        if z is not None:
            check_finite(z, checkpoint, f"'{item.path}'")
        if z is None:
            rows.append({**base, "clip": -1, "clip_start": "", "clip_end": "", "duration": "", "status": "bad",
                         "reason": record["error"]})
        else:
            spans = record["spans"]
            if per_clip:
                for c, (s, e) in enumerate(spans):
                    rows.append({**base, "clip": c, "clip_start": s, "clip_end": e, "duration": record["duration"],
                                 "status": "ok", "reason": ""})
                embs.append(z)
            else:
                rows.append({**base, "clip": -1, "clip_start": spans[0][0], "clip_end": spans[-1][1],
                             "duration": record["duration"], "status": "ok", "reason": ""})
                embs.append(video_embedding(z)[None])
        files += 1
        if files % flush_every == 0:
            write_part(parts, info.rank, seq, rows, embs)
            rows, embs, seq = [], [], seq + 1
    if rows:
        write_part(parts, info.rank, seq, rows, embs)
    dist.barrier()
    try:
        if info.rank == 0:
            _merge(out, items, roots, bad, encoder, checkpoint, settings, dtype, index_kind)
    finally:
        if started:
            dist.barrier()
            torch.distributed.destroy_process_group()
    return out if info.rank == 0 else None


def check_finite(emb: np.ndarray, checkpoint, what: str) -> None:
    """ValueError naming the weights when ``emb`` holds NaN or inf (NaN weights give NaN everywhere; nothing
    downstream would say so)."""
    if not np.isfinite(emb).all():
        raise ValueError(f"the weights '{checkpoint}' give non-finite embeddings (NaN or inf) for {what}: the file "
                         "holds NaN/inf or its activations overflow; use other weights (e.g. an earlier checkpoint)")


def _stored_settings(path: Path) -> Any:
    """The settings an earlier run recorded in ``parts/settings.json``; None when there are none to trust (absent,
    damaged, or a link planted there: its target is not read)."""
    if path.is_symlink() or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _merge(out: Path, items: list[Item], roots: list[str] | None, bad: list[dict[str, str]], encoder, checkpoint,
           settings: dict[str, Any], dtype: str, index_kind: str | None) -> None:
    """Rank 0: the parts, in the input's order, as embeddings.npy + the table + meta.json (+ the FAISS index)."""
    done = read_parts(out / "parts")
    table: list[dict[str, Any]] = []
    chunks: list[np.ndarray] = []
    for item in items:
        got = done.get(part_key(item, *stat_key(item.path)))
        if got is None:  # changed while this run went on: the next run embeds it
            bad.append({"path": item.path, "reason": "changed or vanished while embedding; run embed again"})
            continue
        rows, emb = got
        if rows[0]["status"] != "ok":
            bad.append({"path": item.path, "reason": rows[0]["reason"]})
            continue
        for r in rows:
            table.append({"path": r["path"], "label": r["label"],
                          "start": float(r["start"]) if r["start"] else math.nan,
                          "end": float(r["end"]) if r["end"] else math.nan, "clip": int(r["clip"]),
                          "clip_start": float(r["clip_start"]), "clip_end": float(r["clip_end"]),
                          "duration": float(r["duration"]), "size": int(r["size"]), "mtime_ns": int(r["mtime_ns"]),
                          "fingerprint": encoder.fingerprint})
        chunks.append(emb)
    for entry in bad:
        warnings.warn(f"skipping unreadable video {entry['path']}: {entry['reason']}", stacklevel=3)
    if not chunks:
        raise FileNotFoundError(f"none of the {len(items)} videos could be read (e.g. {bad[0]['path']}: "
                                f"{bad[0]['reason']})" if bad else "no videos to embed")
    emb = np.concatenate(chunks).astype(dtype)
    check_finite(emb, checkpoint, f"'{out}'")  # also parts left by an earlier run
    if roots is None:
        roots = usable_roots([r["path"] for r in table])
    # The old index describes the old table: gone before the table changes, so that no kill in between leaves an
    # index that answers with the wrong rows (search also checks its fingerprint).
    remove_index(out)
    atomic_write(out / "embeddings.npy", lambda f: np.save(f, emb))
    write_table(table, out)
    spec = str(checkpoint)
    meta = {"checkpoint": spec if spec == "random" else str(Path(spec).resolve()), "source": encoder.source,
            "config": encoder.config.to_dict(), **settings, "dtype": dtype, "dim": int(emb.shape[1]),
            "count": int(len(emb)), "embeddings_sha1": embeddings_sha1(emb), "roots": roots, "unreadable": bad}
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2) + "\n")
    if index_kind:
        try:
            index, params = build_index(emb, index_kind)
        except ImportError as e:
            warnings.warn(f"no FAISS index written ({e}); search falls back to exact NumPy search", stacklevel=3)
            return
        save_index(index, {**params, "embeddings_sha1": embeddings_sha1(emb)}, out)
