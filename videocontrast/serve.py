"""``videocontrast serve``: a local web page over an embedding folder (Starlette + uvicorn).

The page (``static/serve.html``) shows the collection as a grid of animated previews; clicking one lists its
nearest neighbours with their cosine similarity, each playable (the video file itself, or its animated preview
where the browser cannot play the format, e.g. AVI). A query can also be an uploaded video or a path.

Routes::

    GET  /                          the page;            GET /static/{name}   its script and style
    GET  /api/items?offset=&limit=  a page of rows: path, label, clip span, preview and media URLs, whether it exists
    GET  /api/neighbours/{row}?k=   the rows nearest row (optional label=, prefix=)
    GET  /api/query?path=&k=        nearest to a video file inside the indexed roots
    POST /api/query?k=              nearest to the uploaded video (the request body)
    GET  /preview/{row}             animated WebP of the row's span, made once with our decoder, cached on disk
    GET  /media/{root}/{path}       the video file, with its content type (HTTP range requests for seeking)

Only files inside the folder's indexed roots (``meta.json`` ``roots``) that are rows of the table are served:
``..``, absolute paths, symbolic links that leave a root and their URL-encoded forms are refused (403). A video
that was deleted or moved since ``embed`` gets a placeholder preview (and no media link).
"""

from __future__ import annotations

import hashlib
import io
import mimetypes
import os
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image, ImageDraw

from .api import check_device
from .data.decode import VideoDecodeError, read_frames
from .data.datasets import try_probe
from .search import Collection, collection_encoder, embed_queries, load_collection, nearest

STATIC = Path(__file__).parent / "static"
PREVIEW_FRAMES, PREVIEW_SIZE = 10, 96  # frames per animated preview, short side in pixels
MAX_UPLOAD = 512 << 20
VIDEO_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".mkv": "video/x-matroska", ".mov": "video/quicktime",
               ".avi": "video/x-msvideo"}


def _starlette():
    try:
        import starlette  # noqa: F401
    except ImportError:
        raise ImportError("`videocontrast serve` needs starlette and uvicorn: pip install 'videocontrast[search]'") \
            from None


def _under(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


class Library:
    """The collection behind the page: rows, allowed files, previews, queries."""

    def __init__(self, folder: str | Path, checkpoint: str | None = None, device: str | None = None,
                 cache: str | Path | None = None) -> None:
        self.col: Collection = load_collection(folder)
        self.roots = [os.path.realpath(r) for r in self.col.meta.get("roots", [])]
        self.cache = Path(cache) if cache else self.col.folder / "previews"
        self.checkpoint, self.device = checkpoint, device
        self._encoder = None
        self._lock = threading.Lock()
        # The files the page may hand out: real paths of the table's rows, each under one of the roots.
        self.allowed: dict[str, int] = {}
        for i, p in enumerate(self.col.table["path"]):
            real = os.path.realpath(str(p))
            if any(_under(real, r) for r in self.roots):
                self.allowed.setdefault(real, i)

    # -- files ------------------------------------------------------------------------------------------
    def media_url(self, row: int) -> str | None:
        """``/media/{root}/{real path relative to it}`` of a row's file, None when it is not servable."""
        real = os.path.realpath(str(self.col.table["path"][row]))
        for i, r in enumerate(self.roots):
            if _under(real, r) and real in self.allowed:
                return f"/media/{i}/{quote(os.path.relpath(real, r))}"
        return None

    def resolve(self, root: int, rel: str) -> str | None:
        """The real path of ``rel`` under root ``root`` if it is an indexed file, else None (refused)."""
        if not 0 <= root < len(self.roots) or "\x00" in rel or rel.startswith(("/", "\\")) or os.path.isabs(rel):
            return None
        if any(part == ".." for part in Path(rel).parts):
            return None
        real = os.path.realpath(os.path.join(self.roots[root], rel))
        return real if _under(real, self.roots[root]) and real in self.allowed else None

    def check_query_path(self, path: str) -> str | None:
        """A query path's real path if it lies inside an indexed root, else None."""
        if "\x00" in path:
            return None
        real = os.path.realpath(path)
        return real if any(_under(real, r) for r in self.roots) else None

    # -- previews ---------------------------------------------------------------------------------------
    def preview(self, row: int) -> tuple[bytes, str]:
        """The row's animated WebP (made once, then read from the cache), or a placeholder PNG when the file is
        gone or unreadable."""
        path = str(self.col.table["path"][row])
        try:
            st = os.stat(path)
        except OSError:
            return placeholder("video missing"), "image/png"
        span = (float(self.col.table["clip_start"][row]), float(self.col.table["clip_end"][row]))
        key = hashlib.sha1(f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}|{span}|{PREVIEW_FRAMES}|"
                           f"{PREVIEW_SIZE}".encode()).hexdigest()[:20]
        cached = self.cache / f"{key}.webp"
        if cached.is_file():
            return cached.read_bytes(), "image/webp"
        try:
            data = animated_preview(path, span)
        except (VideoDecodeError, ValueError, OSError) as e:
            return placeholder(f"unreadable: {getattr(e, 'reason', e)}"[:40]), "image/png"
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
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

    def embed_file(self, path: str) -> np.ndarray:
        with self._lock:  # one encoder, loaded on the first query
            if self._encoder is None:
                self._encoder = collection_encoder(self.col, self.checkpoint, check_device(self.device or "cpu"))
            return embed_queries(self._encoder, [path], self.col.meta.get("clips", 4))[0]


def animated_preview(path: str, span: tuple[float, float], frames: int = PREVIEW_FRAMES,
                     size: int = PREVIEW_SIZE) -> bytes:
    """An animated WebP of ``frames`` evenly spaced frames of ``span`` (seconds), short side ``size``."""
    info = try_probe(path)
    if isinstance(info, VideoDecodeError):
        raise info
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


def create_app(folder: str | Path, checkpoint: str | None = None, device: str | None = None,
               cache: str | Path | None = None):
    """The Starlette app over the embedding ``folder``; see the module docstring for its routes."""
    _starlette()
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    lib = Library(folder, checkpoint, device, cache)

    def _k(request: Request) -> int:
        try:
            k = int(request.query_params.get("k", "8"))
        except ValueError:
            k = 0
        if not 1 <= k <= 1000:
            raise ValueError("k must be a whole number from 1 to 1000")
        return k

    def _error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def page(request: Request):
        return HTMLResponse((STATIC / "serve.html").read_text(encoding="utf-8"))

    async def static(request: Request):
        name = request.path_params["name"]
        if name not in ("serve.js", "serve.css"):
            return _error(404, "not found")
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response((STATIC / name).read_bytes(), media_type=kind)

    def items(request: Request):
        try:
            offset = max(0, int(request.query_params.get("offset", "0")))
            limit = min(1000, max(1, int(request.query_params.get("limit", "200"))))
        except ValueError:
            return _error(400, "offset and limit must be whole numbers")
        rows = range(offset, min(len(lib.col), offset + limit))
        return JSONResponse({"count": len(lib.col), "offset": offset, "per_clip": bool(lib.col.meta.get("per_clip")),
                             "items": [lib.item(i) for i in rows]})

    def neighbours(request: Request):
        row = request.path_params["row"]
        if not 0 <= row < len(lib.col):
            return _error(404, f"row {row} is not in the index ({len(lib.col)} rows)")
        try:
            k = _k(request)
        except ValueError as e:
            return _error(400, str(e))
        q = lib.col.emb[row]
        return JSONResponse({"query": lib.item(row), "neighbours": lib.neighbours(
            q, k, request.query_params.get("label"), request.query_params.get("prefix"), skip=row)})

    async def query(request: Request):
        try:
            k = _k(request)
        except ValueError as e:
            return _error(400, str(e))
        if request.method == "GET":
            raw = request.query_params.get("path", "")
            real = lib.check_query_path(raw) if raw else None
            if real is None:
                return _error(403, "the query path must be a video inside the indexed folders")
            if not os.path.isfile(real):
                return _error(404, f"no such video: {raw}")
            path, tmp = real, None
        else:
            body = await request.body()
            if not body or len(body) > MAX_UPLOAD:
                return _error(400, f"upload a video of 1 byte to {MAX_UPLOAD >> 20} MiB as the request body")
            suffix = Path(request.headers.get("x-filename", "upload.mp4")).suffix[:8] or ".mp4"
            fd, tmp = tempfile.mkstemp(suffix=suffix)
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            path = tmp
        try:
            from starlette.concurrency import run_in_threadpool

            q = await run_in_threadpool(lib.embed_file, path)
        except (ValueError, FileNotFoundError) as e:
            return _error(400, str(e).replace(str(tmp), "the uploaded file") if tmp else str(e))
        finally:
            if tmp:
                os.unlink(tmp)
        return JSONResponse({"query": {"path": raw if tmp is None else "upload"},
                             "neighbours": lib.neighbours(q, k, request.query_params.get("label"),
                                                          request.query_params.get("prefix"))})

    def preview(request: Request):
        row = request.path_params["row"]
        if not 0 <= row < len(lib.col):
            return _error(404, "no such row")
        data, kind = lib.preview(row)
        return Response(data, media_type=kind, headers={"Cache-Control": "max-age=3600"})

    def media(request: Request):
        real = lib.resolve(request.path_params["root"], request.path_params["path"])
        if real is None:
            return _error(403, "not a file of this index")
        if not os.path.isfile(real):
            return _error(404, "the video was deleted or moved")
        kind = VIDEO_TYPES.get(Path(real).suffix.lower()) or mimetypes.guess_type(real)[0] or "application/octet-stream"
        return FileResponse(real, media_type=kind)

    routes = [Route("/", page), Route("/static/{name}", static), Route("/api/items", items),
              Route("/api/neighbours/{row:int}", neighbours), Route("/api/query", query, methods=["GET", "POST"]),
              Route("/preview/{row:int}", preview), Route("/media/{root:int}/{path:path}", media)]
    app = Starlette(routes=routes)
    app.state.library = lib
    return app


def run_server(folder: str | Path, host: str = "127.0.0.1", port: int = 8000, checkpoint: str | None = None,
               device: str | None = None) -> None:
    """Serve ``folder`` until Ctrl-C (127.0.0.1 by default: only this machine can connect)."""
    app = create_app(folder, checkpoint, device)
    import uvicorn

    print(f"serving {folder} ({len(app.state.library.col)} rows) at http://{host}:{port}/  (Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
