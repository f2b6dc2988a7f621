"""The files behind ``videocontrast embed``: each rank's parts (shards) that make a run resumable, and the table.

A part is ``parts/rR-NNNNN-<ns>.csv`` (one row per embedded clip or video, or one ``bad`` row for a file that
could not be read, with the file's size and mtime) and ``.npy`` (the embeddings of its ``ok`` rows, in order); the
CSV is renamed into place last, so a part counts only when both files are whole. The table is Parquet (pyarrow)
or CSV, columns :data:`TABLE_COLUMNS`.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_write, atomic_write_text

TABLE_COLUMNS = ("path", "label", "start", "end", "clip", "clip_start", "clip_end", "duration", "size", "mtime_ns",
                 "fingerprint")
PART_COLUMNS = ("path", "label", "start", "end", "clip", "clip_start", "clip_end", "duration", "size", "mtime_ns",
                "status", "reason")


def stat_key(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


def fmt(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def read_parts(parts: Path) -> dict[tuple, tuple[list[dict[str, str]], np.ndarray | None]]:
    """Every finished part's rows, grouped per (path, start, end, size, mtime_ns): the latest part wins."""
    done: dict[tuple, tuple[list[dict[str, str]], np.ndarray | None]] = {}
    for table in sorted(parts.glob("r*-*.csv"), key=lambda p: p.stat().st_mtime_ns):
        emb_file = table.with_suffix(".npy")
        with open(table, newline="") as f:
            rows = list(csv.DictReader(f))
        emb = np.load(emb_file, allow_pickle=False) if emb_file.is_file() else None
        e = 0
        groups: dict[tuple, list[dict[str, str]]] = {}
        for row in rows:
            key = (row["path"], row["start"], row["end"], int(row["size"]), int(row["mtime_ns"]))
            if row["status"] == "ok":
                row["_emb"] = e
                e += 1
            groups.setdefault(key, []).append(row)
        if emb is not None and e != len(emb):
            warnings.warn(f"ignoring damaged part {table} ({e} rows, {len(emb)} embeddings)", stacklevel=2)
            continue
        for key, group in groups.items():
            done[key] = (group, None if emb is None else emb[[r["_emb"] for r in group if "_emb" in r]])
    return done


def part_key(item, size: int, mtime_ns: int) -> tuple:
    """What identifies one item's rows in the parts: its path, span and the file's size and mtime."""
    return (item.path, fmt(item.start), fmt(item.end), size, mtime_ns)


def write_part(parts: Path, rank: int, seq: int, rows: list[dict[str, Any]], emb: list[np.ndarray]) -> None:
    name = f"r{rank}-{seq:05d}-{time.time_ns()}"  # unique across runs: parts of earlier runs stay
    if emb:
        atomic_write(parts / f"{name}.npy", lambda f: np.save(f, np.concatenate(emb).astype(np.float32)))
    atomic_write_text(parts / f"{name}.csv", _csv_text(PART_COLUMNS, rows))  # last: a part counts once both are there


def write_table(rows: list[dict[str, Any]], out: Path) -> Path:
    """``table.parquet`` (pyarrow) or else ``table.csv``, columns :data:`TABLE_COLUMNS`."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        pa = None
    for stale in ("table.parquet", "table.csv"):
        (out / stale).unlink(missing_ok=True)
    if pa is not None:
        t = pa.table({c: [r[c] for r in rows] for c in TABLE_COLUMNS})
        return atomic_write(out / "table.parquet", lambda f: pq.write_table(t, f))
    return atomic_write_text(out / "table.csv", _csv_text(TABLE_COLUMNS, rows))


def _csv_text(columns: tuple[str, ...] | list[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, columns)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def read_table(folder: str | Path) -> dict[str, np.ndarray]:
    """The table of an embedding folder as columns (NumPy arrays), from Parquet or CSV."""
    folder = Path(folder)
    if (folder / "table.parquet").is_file():
        import pyarrow.parquet as pq

        t = pq.read_table(folder / "table.parquet")
        return {c: np.asarray(t.column(c).to_pylist()) for c in t.column_names}
    if (folder / "table.csv").is_file():
        with open(folder / "table.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        num = {"start", "end", "clip_start", "clip_end", "duration"}
        ints = {"clip", "size", "mtime_ns"}
        return {c: np.asarray([float(r[c]) if c in num and r[c] else (math.nan if c in num else
                               (int(r[c]) if c in ints else r[c])) for r in rows]) for c in TABLE_COLUMNS}
    raise FileNotFoundError(f"'{folder}' holds no table.parquet or table.csv; build it with `videocontrast embed`")
