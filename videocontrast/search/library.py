"""What `serve` may read and how: the indexed collection (:class:`Library`) opens a file once, without following a
link on its last component, checks that the open descriptor is a regular file at an indexed path of its indexed
size, and decodes or sends only that descriptor; its animated previews and placeholders; the bounds of a query
(:class:`Limits`) and the one-line refusals (:class:`Refusal`) the page shows."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import io
import os
import stat
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import numpy as np
from PIL import Image, ImageDraw

from ..api import check_device
from ..data.decode import VideoDecodeError, probe_frame_size, probe_video, read_frames
from .query import Collection, collection_encoder, embed_queries, load_collection, nearest


PREVIEW_FRAMES, PREVIEW_SIZE = 10, 96  # frames per animated preview, short side in pixels


VIDEO_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".mkv": "video/x-matroska", ".mov": "video/quicktime",
               ".avi": "video/x-msvideo"}


NOT_INDEXED = "not a video of this index"  # one answer for every such path: existing or not, inside a root or not


# Open without following a link on the last component (where the platform has it), without blocking on a FIFO,
# and not inherited by a child process.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


_FD_DIR = next((d for d in ("/proc/self/fd", "/dev/fd") if os.path.isdir(d)), None)


@dataclass(frozen=True)
class Limits:
    """What one query may cost: the upload's size and the seconds it may take to arrive (then 408), how many
    uploads arrive at once, the query video's picture (width x height) and frame count, the seconds its decode
    may take before the page gets 503, and how many queries decode at once. More uploads or decodes than that
    are refused with 503, not queued. An upload holds no decode slot while it arrives; a query over its time
    keeps decoding in the background, holding its slot, until it ends."""

    max_upload_mb: float = 200.0
    max_pixels: int = 4096 * 2160
    max_frames: int = 108_000  # an hour at 30 fps
    max_seconds: float = 60.0
    max_decodes: int = 2
    upload_seconds: float = 120.0
    max_uploads: int = 4  # with max_upload_mb: what uploads may hold of the temporary folder at once

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_pixels", "max_frames", "max_seconds", "max_decodes", "upload_seconds",
                     "max_uploads"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < float("inf")):
                flag = {"max_upload_mb": "--max-upload-mb"}.get(name, name)
                raise ValueError(f"{flag} must be a number above 0, got {value!r}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)


class Refusal(Exception):
    """An answer other than 200 with its one-line reason (the page shows it: ``{"error": reason}``); ``short``:
    the few words a placeholder preview shows instead."""

    def __init__(self, status: int, message: str, short: str = "") -> None:
        super().__init__(message)
        self.status, self.short = status, short or message[:40]


def _under(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def _realpath(path: str) -> str | None:
    """``os.path.realpath``, or None when the path changes under it (a link being swapped: OSError)."""
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return None


def _descriptor_path(fd: int) -> str | None:
    """Where an open descriptor really is (None where the platform cannot say)."""
    try:
        if os.path.isdir("/proc/self/fd"):
            return os.readlink(f"/proc/self/fd/{fd}")
        import fcntl

        if hasattr(fcntl, "F_GETPATH"):  # macOS
            return os.fsdecode(fcntl.fcntl(fd, fcntl.F_GETPATH, bytes(1024)).split(b"\0", 1)[0])
    except OSError:
        return None
    return None


class OpenFile:
    """An indexed file, opened once and checked by :meth:`Library.open`: send and decode this descriptor, never
    the path again (a link swapped in after the check is never followed)."""

    def __init__(self, fd: int, real: str) -> None:
        self._file = os.fdopen(fd, "rb", buffering=0)  # closes the descriptor when dropped, whatever happened
        self.real, self.st = real, os.fstat(fd)

    @property
    def path(self) -> str:
        """A name that opens this same file (``/proc/self/fd/N``), for libraries that take a path."""
        return f"{_FD_DIR}/{self._file.fileno()}" if _FD_DIR else self.real

    def close(self) -> None:
        self._file.close()


class Library:
    """The collection behind the page: rows, allowed files, previews, queries."""

    def __init__(self, folder: str | Path, checkpoint: str | None = None, device: str | None = None,
                 cache: str | Path | None = None, limits: Limits | None = None) -> None:
        self.col: Collection = load_collection(folder)
        self.roots = [os.path.realpath(r) for r in self.col.meta.get("roots", [])]
        self.cache = Path(cache) if cache else self.col.folder / "previews"
        self.checkpoint, self.device = checkpoint, device
        self.limits = limits or Limits()
        self._encoder = None
        self._lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(self.limits.max_decodes)
        self.uploads = threading.BoundedSemaphore(self.limits.max_uploads)
        self.pool = ThreadPoolExecutor(self.limits.max_decodes, thread_name_prefix="videocontrast-query")
        # The files the page may hand out: real paths of the table's rows, each under one of the roots, with the
        # size each had when indexed.
        self.allowed: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        sizes = self.col.table.get("size")
        for i, p in enumerate(self.col.table["path"]):
            real = _realpath(str(p))
            if real is not None and any(_under(real, r) for r in self.roots):
                self.allowed.setdefault(real, i)
                if sizes is not None and int(sizes[i]) >= 0:
                    self._sizes.setdefault(real, int(sizes[i]))

    # -- files ------------------------------------------------------------------------------------------
    def media_url(self, row: int) -> str | None:
        """``/media/{root}/{real path relative to it}`` of a row's file, None when it is not servable."""
        real = _realpath(str(self.col.table["path"][row]))
        for i, r in enumerate(self.roots):
            if real is not None and _under(real, r) and real in self.allowed:
                return f"/media/{i}/{quote(os.path.relpath(real, r))}"
        return None

    def resolve(self, root: int, rel: str) -> str | None:
        """The real path of ``rel`` under root ``root`` if it is an indexed file, else None (refused)."""
        if not 0 <= root < len(self.roots) or "\x00" in rel or rel.startswith(("/", "\\")) or os.path.isabs(rel):
            return None
        if any(part == ".." for part in Path(rel).parts):
            return None
        real = _realpath(os.path.join(self.roots[root], rel))
        return real if real is not None and _under(real, self.roots[root]) and real in self.allowed else None

    def open(self, path: str) -> OpenFile:
        """Open an indexed file for reading, once; every route that touches a file comes here.

        Refusal 403 unless ``path`` resolves to an indexed file under a root and the opened descriptor is a
        regular file at that very path (a link swapped in on the way is refused); 404 when the file was deleted,
        moved or changed size since ``embed``.
        """
        real = _realpath(path)
        if real is None or real not in self.allowed:
            raise Refusal(403, NOT_INDEXED)
        try:
            fd = os.open(real, _OPEN_FLAGS)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                raise Refusal(404, "the video was deleted or moved", "video missing") from None
            raise Refusal(403, NOT_INDEXED) from None  # ELOOP: a link put in its place after the check
        f = OpenFile(fd, real)
        try:
            where = _descriptor_path(fd)
            if where is None:  # no way to ask the descriptor: it must be the file now at that path
                try:
                    now = os.stat(real, follow_symlinks=False)
                    where = real if (now.st_dev, now.st_ino) == (f.st.st_dev, f.st.st_ino) else None
                except OSError:
                    where = None
            if not stat.S_ISREG(f.st.st_mode) or where != real:
                raise Refusal(403, NOT_INDEXED)
            indexed = self._sizes.get(real)
            if indexed is not None and f.st.st_size != indexed:
                raise Refusal(404, f"the video changed since embed ({f.st.st_size} bytes, {indexed} when indexed); "
                                   "embed the folder again", "changed since embed")
        except BaseException:
            f.close()
            raise
        return f

    # -- previews ---------------------------------------------------------------------------------------
    def preview(self, row: int) -> tuple[bytes, str]:
        """The row's animated WebP (made once, then read from the cache), or a placeholder PNG when the file is
        gone or unreadable; Refusal 403 when it is not an indexed file of a root (e.g. a link out of it)."""
        try:
            f = self.open(str(self.col.table["path"][row]))
        except Refusal as e:
            if e.status == 404:
                return placeholder(e.short), "image/png"
            raise
        with contextlib.closing(f):
            span = (float(self.col.table["clip_start"][row]), float(self.col.table["clip_end"][row]))
            key = hashlib.sha1(f"{f.real}|{f.st.st_size}|{f.st.st_mtime_ns}|{span}|{PREVIEW_FRAMES}|"
                               f"{PREVIEW_SIZE}".encode()).hexdigest()[:20]
            cached = self.cache / f"{key}.webp"
            if cached.is_file():
                return cached.read_bytes(), "image/webp"
            try:
                data = animated_preview(f.path, span)
            except (VideoDecodeError, ValueError, OSError) as e:
                return placeholder(f"unreadable: {getattr(e, 'reason', e)}"[:40]), "image/png"
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, cached)  # atomic: two requests for one preview never see half a file
        except OSError:  # a read-only folder: serve it uncached
            pass
        return data, "image/webp"

    # -- search -----------------------------------------------------------------------------------------
    def item(self, row: int, sim: float | None = None) -> dict[str, Any]:
        t = self.col.table
        path = str(t["path"][row])
        exists = os.path.isfile(path)
        out = {"row": int(row), "path": path, "name": Path(path).name, "label": str(t["label"][row]),
               "clip_start": float(t["clip_start"][row]), "clip_end": float(t["clip_end"][row]),
               "exists": exists, "preview": f"/preview/{row}", "media": self.media_url(row) if exists else None,
               "type": VIDEO_TYPES.get(Path(path).suffix.lower(), "application/octet-stream")}
        if sim is not None:
            out["sim"] = round(float(sim), 4)
        return out

    def neighbours(self, q: np.ndarray, k: int, label: str | None = None, prefix: str | None = None,
                   skip: int | None = None) -> list[dict[str, Any]]:
        sims, rows = nearest(self.col, q[None], k + (skip is not None), label, prefix)
        hits = [(s, r) for s, r in zip(sims[0], rows[0]) if r >= 0 and r != skip][:k]
        return [self.item(int(r), float(s)) for s, r in hits]

    def check_decodable(self, path: str, name: str) -> None:
        """Refusal 413 for a query video whose picture or frame count is over the limits, read from its header
        and one demux pass (no frame is decoded); 400 when it cannot be read. ``name``: the video in messages."""
        lim = self.limits
        try:
            height, width = probe_frame_size(path)
            if width * height > lim.max_pixels:
                raise Refusal(413, f"{name} is {width}x{height}; a query video may have at most "
                                   f"{lim.max_pixels / 1e6:.1f} Mpixel (4096x2160)")
            frames = probe_video(path).num_frames
        except VideoDecodeError as e:
            raise Refusal(400, f"{name} cannot be read: {e.reason.replace(path, 'the file')}") from None
        if frames > lim.max_frames:
            raise Refusal(413, f"{name} has {frames} frames; a query video may have at most {lim.max_frames}")

    def encoder(self):
        with self._lock:  # one encoder, loaded on the first query
            if self._encoder is None:
                self._encoder = collection_encoder(self.col, self.checkpoint, check_device(self.device or "cpu"))
            return self._encoder

    def embed_file(self, path: str) -> np.ndarray:
        return embed_queries(self.encoder(), [path], self.col.meta.get("clips", 4))[0]

    async def query_embedding(self, path: str, name: str, done: Callable[[], None]) -> np.ndarray:
        """The embedding of one query video, within :class:`Limits` (``name``: the video in messages).

        ``path``: the file to decode, already complete (an upload has been received: it held no slot while it
        arrived); ``done``: called once the file is no longer needed, whatever happens. Refusal 503 when
        ``max_decodes`` queries already decode or this one takes over ``max_seconds``; its decode then goes on
        in the background and keeps its slot until it ends.
        """
        lim = self.limits
        if not self.slots.acquire(blocking=False):
            done()
            raise Refusal(503, f"busy: {lim.max_decodes} queries are being decoded; try again in a moment")
        try:
            future = self.pool.submit(self._decode, path, name, done)
        except BaseException:
            try:
                done()
            finally:
                self.slots.release()
            raise
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), lim.max_seconds)
        except asyncio.TimeoutError:
            raise Refusal(503, f"the query took longer than {lim.max_seconds:g} s; try a shorter video") from None
        except (ValueError, FileNotFoundError) as e:  # unreadable after all, or the folder's weights moved
            raise Refusal(400, str(e).replace(path, name)) from None

    def _decode(self, path: str, name: str, done: Callable[[], None]) -> np.ndarray:
        """In a worker thread: check, decode and embed the query, then free its file and its slot."""
        try:
            self.check_decodable(path, name)
            return self.embed_file(path)
        finally:
            try:
                done()
            finally:
                self.slots.release()


def animated_preview(path: str, span: tuple[float, float], frames: int = PREVIEW_FRAMES,
                     size: int = PREVIEW_SIZE) -> bytes:
    """An animated WebP of ``frames`` evenly spaced frames of ``span`` (seconds), short side ``size``."""
    info = probe_video(path)  # not the per-path probe cache: ``path`` may be a descriptor's name, reused later
    fps = info.fps if info.fps > 0 else 25.0
    f0 = max(0, int(span[0] * fps)) if np.isfinite(span[0]) else 0
    f1 = min(info.num_frames, max(f0 + 1, int(span[1] * fps))) if np.isfinite(span[1]) else info.num_frames
    idx = np.unique(np.linspace(f0, max(f0, f1 - 1), frames).round().astype(np.int64))
    clip = read_frames(path, idx, size=size, info=info)  # (F, C, H, W) uint8
    images = [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in clip]
    buf = io.BytesIO()
    images[0].save(buf, format="WEBP", save_all=True, append_images=images[1:], duration=int(1000 * (f1 - f0) /
                   fps / max(len(images), 1)) or 100, loop=0, quality=70)
    return buf.getvalue()


_PLACEHOLDERS: dict[str, bytes] = {}


def placeholder(text: str) -> bytes:
    """A grey PNG saying ``text`` (a deleted, moved or unreadable video)."""
    if text not in _PLACEHOLDERS:
        img = Image.new("RGB", (128, 96), (90, 90, 90))
        ImageDraw.Draw(img).text((6, 40), text, fill=(235, 235, 235))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        _PLACEHOLDERS[text] = buf.getvalue()
    return _PLACEHOLDERS[text]
