"""``videocontrast serve``: a local web page over an embedding folder (Starlette + uvicorn).

The page (``static/serve.html``) shows the collection as a grid of animated previews; clicking one lists its
nearest neighbours with their cosine similarity, each playable (the video file itself, or its animated preview
where the browser cannot play the format, e.g. AVI). A query can also be an uploaded video or a path.

Routes::

    GET  /                          the page;            GET /static/{name}   its script and style
    GET  /api/items?offset=&limit=  a page of rows: path, label, clip span, preview and media URLs, whether it exists
    GET  /api/neighbours/{row}?k=   the rows nearest row (optional label=, prefix=)
    GET  /api/query?path=&k=        nearest to an indexed video file (optional label=, prefix=; X-Videocontrast: 1)
    POST /api/query?k=              nearest to the uploaded video (the request body; header X-Videocontrast: 1)
    GET  /preview/{row}             animated WebP of the row's span, made once with our decoder, cached on disk
    GET  /media/{root}/{path}       the video file, with its content type (HTTP range requests for seeking)

Only files inside the folder's indexed roots (``meta.json`` ``roots``) that are rows of the table are served, and
every route that touches a file goes through one check (:meth:`Library.open`): the file is opened once, without
following a link on its last component, and the open descriptor itself must be a regular file at an indexed
path of the same size as when indexed; what is sent or decoded is that descriptor, so a link swapped in after the
check is never followed. ``..``, absolute paths, links out of a root and their URL-encoded forms are refused
(403); a query path that is not an indexed file gets that same 403 whether it exists or not, and is never opened.
A video that was deleted or moved since ``embed`` gets a placeholder preview (and no media link).

Against other sites (DNS rebinding, cross-site requests): a request whose ``Host`` is neither an IP address nor
``localhost`` or the name served on gets 400 (:class:`TrustedHost`); one that another site's page makes
(``Sec-Fetch-Site: cross-site`` or ``same-site``, but for a link to ``/``), one with another site's ``Origin``, and
a query or POST without the page's ``X-Videocontrast: 1`` header (a POST: or a JSON body) get 403
(:class:`SameOrigin`). Queries are bounded (:class:`Limits`): the upload's size (by ``Content-Length`` before
reading, then while it streams to a temporary file, deleted after), the time it may take to arrive and how many
arrive at once (it holds no decode slot meanwhile), the picture and frame count of the query video (from its
header and a demux, before any frame is decoded), the time a decode may take, and how many decode at once (more
get 503, not a queue). There are no users or passwords: anyone who can reach the port can read the collection.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import ipaddress
import mimetypes
import os
import re
import socket
import stat
import sys
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, urlsplit

import numpy as np
from PIL import Image, ImageDraw

from ..api import check_device
from ..data.decode import VideoDecodeError, probe_frame_size, probe_video, read_frames
from .query import Collection, collection_encoder, embed_queries, load_collection, nearest

STATIC = Path(__file__).parent / "static"
PREVIEW_FRAMES, PREVIEW_SIZE = 10, 96  # frames per animated preview, short side in pixels
VIDEO_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".mkv": "video/x-matroska", ".mov": "video/quicktime",
               ".avi": "video/x-msvideo"}
PAGE_HEADER = "x-videocontrast"  # the page's script sends it with its requests; another site's page cannot
PAGE_ONLY = ("/api/query",)  # GET routes that decode: they need PAGE_HEADER
NOT_INDEXED = "not a video of this index"  # one answer for every such path: existing or not, inside a root or not
MAX_TEXT = 4096  # characters in a text query parameter (a path prefix, a label)
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


def _starlette():
    try:
        import starlette  # noqa: F401
    except ImportError:
        raise ImportError("`videocontrast serve` needs starlette and uvicorn: pip install 'videocontrast[search]'") \
            from None


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

    def __enter__(self) -> OpenFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
        with f:
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


# ----------------------------------------------------------------------------------------- other sites

def trusted_hosts(host: str) -> list[str]:
    """The names a request's ``Host`` may carry besides an IP address: ``localhost``, the ``--host`` given
    (with every interface, 0.0.0.0 or ::, this machine's own names). Any other name is what a page that rebinds
    its own name to this machine would send; an address cannot be rebound, so every address is accepted."""
    names = {"localhost"}
    bare = host.strip("[]").lower()
    if bare in ("", "0.0.0.0", "::"):
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    elif not _is_address(bare):
        names.add(bare)
    return sorted(names)


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class TrustedHost:
    """ASGI middleware: 400 for a request whose ``Host`` is neither an IP address (IPv4, or IPv6 in brackets;
    with or without a port) nor one of ``names`` (:func:`trusted_hosts`). DNS rebinding (another site's page
    pointing its own name at this machine) always sends a name, never an address. Starlette's
    TrustedHostMiddleware matches names and ``*.domain`` patterns only: it cannot accept every address, which a
    browser on the network reaching ``--host 0.0.0.0`` by the machine's address sends."""

    def __init__(self, app, names: list[str]) -> None:
        self.app, self.names = app, set(names)

    def allowed(self, host: str) -> bool:
        try:
            split = urlsplit(f"//{host}")
            name, _ = split.hostname, split.port  # a port that is not a number: ValueError
        except ValueError:
            return False
        if not name or split.netloc != host or split.username is not None or split.path:
            return False
        if host.startswith("["):  # only an IPv6 address goes in brackets
            return ":" in name and _is_address(name)
        return _is_address(name) or name in self.names

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            from starlette.datastructures import Headers
            from starlette.responses import PlainTextResponse

            if not self.allowed(Headers(scope=scope).get("host", "")):
                await PlainTextResponse("Invalid host header", status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _same_origin(origin: str, host: str, scheme: str) -> bool:
    default = {"http": 80, "https": 443}
    try:
        o, h = urlsplit(origin), urlsplit(f"//{host}")
        return (o.scheme == scheme and o.hostname is not None and o.hostname == h.hostname
                and (o.port or default.get(o.scheme)) == (h.port or default.get(scheme)))
    except ValueError:  # a port that is not a number
        return False


class SameOrigin:
    """ASGI middleware: 403 for a request that another site's page makes, before any work:

    * one its browser marks ``Sec-Fetch-Site: cross-site`` or ``same-site`` (every current browser sends it),
      except a top-level navigation to the page ``/`` (a link to it). A GET carries no ``Origin``: without this
      an ``<img>`` or ``<video>`` on any page could load previews (decodes, in a loop: the CPU), time them (which
      rows are indexed) and read the duration and size of a guessed ``/media`` file;
    * one carrying another site's ``Origin``;
    * a query by path (GET :data:`PAGE_ONLY`, it decodes) without the page's ``X-Videocontrast: 1`` header, and
      a POST (or any other non-reading method) with neither that header nor a JSON body.

    Another site's form, ``<img>`` or no-CORS fetch can send neither without a CORS preflight, which this
    server never grants. ``/preview`` and ``/media`` are loaded by the page's own ``<img>`` and ``<video>``,
    which cannot send a header: ``Sec-Fetch-Site`` (``same-origin`` for them) is their defence.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            from starlette.datastructures import Headers
            from starlette.responses import JSONResponse

            headers = Headers(scope=scope)
            origin = headers.get("origin")
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            site = headers.get("sec-fetch-site", "").lower()
            reading = scope["method"] in ("GET", "HEAD", "OPTIONS")
            link = scope["path"] == "/" and reading and headers.get("sec-fetch-mode") == "navigate" \
                and headers.get("sec-fetch-dest", "document") == "document"
            reason = None
            if site in ("cross-site", "same-site") and not link:
                reason = f"a request from another site (Sec-Fetch-Site: {site}) is refused"
            elif origin is not None and not _same_origin(origin, headers.get("host", ""),
                                                         scope.get("scheme", "http")):
                reason = f"a request from another site ({origin[:80]}) is refused"
            elif reading and scope["path"] in PAGE_ONLY and headers.get(PAGE_HEADER) != "1":
                reason = "a query needs the header X-Videocontrast: 1 (the page sends it)"
            elif not reading and headers.get(PAGE_HEADER) != "1" and kind != "application/json":
                reason = "a POST needs the header X-Videocontrast: 1 (the page sends it) or a JSON body"
            if reason:
                await JSONResponse({"error": reason}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


# ----------------------------------------------------------------------------------------- the app

def _int_param(request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw) if re.fullmatch(r"[+-]?\d{1,20}", raw.strip()) else None
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise Refusal(400, f"{name} must be a whole number from {lo} to {hi}, got {raw[:40]!r}")
    return value


def _text_param(request, name: str) -> str | None:
    raw = request.query_params.get(name)
    if raw is not None and (len(raw) > MAX_TEXT or any(ord(c) < 32 or ord(c) == 127 for c in raw)):
        raise Refusal(400, f"{name} must be text of at most {MAX_TEXT} characters without control characters "
                           "(such as NUL)")
    return raw


def create_app(folder: str | Path, checkpoint: str | None = None, device: str | None = None,
               cache: str | Path | None = None, host: str = "127.0.0.1", limits: Limits | None = None):
    """The Starlette app over the embedding ``folder``; see the module docstring for its routes. ``host``: the
    address it is served on (its ``Host`` name is trusted besides the loopback names); ``limits``: what a query
    may cost."""
    _starlette()
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.middleware import Middleware
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    lib = Library(folder, checkpoint, device, cache, limits)
    lim = lib.limits

    async def refused(request: Request, exc: Refusal) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def page(request: Request):
        return HTMLResponse((STATIC / "serve.html").read_text(encoding="utf-8"))

    async def static(request: Request):
        name = request.path_params["name"]
        if name not in ("serve.js", "serve.css"):
            raise Refusal(404, "not found")
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response((STATIC / name).read_bytes(), media_type=kind)

    def items(request: Request):
        offset = _int_param(request, "offset", 0, 0, 10**12)
        limit = _int_param(request, "limit", 200, 1, 1000)
        rows = range(offset, min(len(lib.col), offset + limit))
        return JSONResponse({"count": len(lib.col), "offset": offset, "per_clip": bool(lib.col.meta.get("per_clip")),
                             "items": [lib.item(i) for i in rows]})

    def neighbours(request: Request):
        row = request.path_params["row"]
        k = _int_param(request, "k", 8, 1, 1000)
        label, prefix = _text_param(request, "label"), _text_param(request, "prefix")
        if not 0 <= row < len(lib.col):
            raise Refusal(404, f"row {row} is not in the index ({len(lib.col)} rows)")
        q = lib.col.emb[row]
        return JSONResponse({"query": lib.item(row), "neighbours": lib.neighbours(q, k, label, prefix, skip=row)})

    async def receive_upload(request: Request) -> tuple[str, Callable[[], None]]:
        """The request body streamed to a temporary file, at most ``max_upload_mb`` (413 as soon as it is more,
        whatever ``Content-Length`` said) within ``upload_seconds`` (408 after: a client trickling its upload
        is cut), ``max_uploads`` at once (503); the file and a function deleting it. No decode slot is held."""
        too_big = f"the upload is larger than the limit of {lim.max_upload_mb:g} MB (serve --max-upload-mb)"
        suffix = Path(request.headers.get("x-filename", "")).suffix.lower()
        suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,7}", suffix) else ".mp4"
        if not lib.uploads.acquire(blocking=False):
            raise Refusal(503, f"busy: {lim.max_uploads} uploads are being received; try again in a moment")
        try:
            fd, tmp = tempfile.mkstemp(prefix="videocontrast-upload-", suffix=suffix)
        except BaseException:
            lib.uploads.release()
            raise

        def delete() -> None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass

        async def stream(out) -> None:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > lim.max_upload_bytes:
                    raise Refusal(413, too_big)
                out.write(chunk)
            if size == 0:
                raise Refusal(400, "upload a video as the request body")

        try:
            try:
                with os.fdopen(fd, "wb") as out:
                    await asyncio.wait_for(stream(out), lim.upload_seconds)
            finally:
                lib.uploads.release()
        except asyncio.TimeoutError:
            delete()
            raise Refusal(408, f"the upload took longer than {lim.upload_seconds:g} s; try a smaller video") \
                from None
        except ClientDisconnect:  # the client left mid-upload: the answer goes nowhere, nothing to log
            delete()
            raise Refusal(400, "the upload was cut short (the client disconnected)") from None
        except BaseException:
            delete()
            raise
        return tmp, delete

    async def query(request: Request):
        k = _int_param(request, "k", 8, 1, 1000)
        label, prefix = _text_param(request, "label"), _text_param(request, "prefix")
        if request.method == "GET":
            raw = _text_param(request, "path")
            if not raw:
                raise Refusal(400, "path is missing: /api/query?path=VIDEO (a video of this index)")
            f = lib.open(raw)  # before any decode: 403 for every path that is not an indexed file
            q = await lib.query_embedding(f.path, raw, f.close)
            name = raw
        else:
            length = request.headers.get("content-length")
            if length is not None and not length.isdigit():
                raise Refusal(400, "Content-Length must be a whole number")
            if length is not None and int(length) > lim.max_upload_bytes:
                raise Refusal(413, f"the upload is larger than the limit of {lim.max_upload_mb:g} MB "
                                   "(serve --max-upload-mb)")
            tmp, delete = await receive_upload(request)  # complete before it takes a decode slot
            q = await lib.query_embedding(tmp, "the uploaded video", delete)
            name = "upload"
        return JSONResponse({"query": {"path": name}, "neighbours": lib.neighbours(q, k, label, prefix)})

    def preview(request: Request):
        row = request.path_params["row"]
        if not 0 <= row < len(lib.col):
            raise Refusal(404, "no such row")
        data, kind = lib.preview(row)
        return Response(data, media_type=kind, headers={"Cache-Control": "max-age=3600"})

    def media(request: Request):
        real = lib.resolve(request.path_params["root"], request.path_params["path"])
        if real is None:
            raise Refusal(403, NOT_INDEXED)
        f = lib.open(real)
        kind = VIDEO_TYPES.get(Path(real).suffix.lower()) or mimetypes.guess_type(real)[0] or "application/octet-stream"
        # Starlette sends the file (ranges included) by reopening f.path, the descriptor's own name: the checked
        # file, whatever the indexed path points to by then.
        return FileResponse(f.path, media_type=kind, stat_result=f.st, background=BackgroundTask(f.close))

    routes = [Route("/", page), Route("/static/{name}", static), Route("/api/items", items),
              Route("/api/neighbours/{row:int}", neighbours), Route("/api/query", query, methods=["GET", "POST"]),
              Route("/preview/{row:int}", preview), Route("/media/{root:int}/{path:path}", media)]
    middleware = [Middleware(TrustedHost, names=trusted_hosts(host)), Middleware(SameOrigin)]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={Refusal: refused})
    app.state.library = lib
    return app


# ----------------------------------------------------------------------------------------- the command

def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening, or ValueError with one line: not a port, not an address
    of this machine, in use. Bound before anything says "serving", and handed to uvicorn as it is."""
    if not 0 <= port <= 65535:
        raise ValueError(f"--port {port} is not a port number (0 to 65535)")
    bare = host.strip("[]")
    if re.fullmatch(r"[\d.]+", bare):  # looks numeric: never sent to DNS as a name
        try:
            ipaddress.IPv4Address(bare)
        except ValueError:
            raise ValueError(f"--host {host} is not an IP address (four numbers 0 to 255, e.g. 127.0.0.1)") from None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise ValueError(f"--host {host} is not an address or a name of this machine "
                         f"({getattr(e, 'strerror', None) or e})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after Ctrl-C, as uvicorn does
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ValueError(f"port {port} is in use on {host} (another server?); pick another with --port") \
                from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise ValueError(f"--host {host} is not an address of this machine") from None
        if e.errno == errno.EACCES:
            raise ValueError(f"port {port} needs administrator rights; pick one above 1023 with --port") from None
        raise ValueError(f"cannot listen on {host} port {port}: {e.strerror}") from None
    return sock


def run_server(folder: str | Path, host: str = "127.0.0.1", port: int = 8000, checkpoint: str | None = None,
               device: str | None = None, limits: Limits | None = None) -> None:
    """Serve ``folder`` until Ctrl-C (127.0.0.1 by default: only this machine can connect)."""
    limits = limits or Limits()
    sock = listen(host, port)
    try:
        app = create_app(folder, checkpoint, device, host=host, limits=limits)
        import uvicorn
    except BaseException:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    address = sock.getsockname()[0]
    if not ipaddress.ip_address(address.split("%")[0]).is_loopback:
        print(f"videocontrast serve: warning: --host {host} opens the page to the network: anyone who can reach "
              f"port {bound} can read the whole collection (serve has no users or passwords); Host names accepted: "
              f"any IP address, {', '.join(trusted_hosts(host))}", file=sys.stderr)
    print(f"serving {folder} ({len(app.state.library.col)} rows) at http://{shown}:{bound}/  (Ctrl-C stops)",
          flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
