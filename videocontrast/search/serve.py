"""``videocontrast serve``: a local web page over an embedding folder (Starlette + uvicorn).

The page (``static/serve.html``) shows the collection as a grid of animated previews; clicking one lists its
nearest neighbours with their cosine similarity, each playable (the video file itself, or its animated preview
where the browser cannot play the format, e.g. AVI). A query can also be an uploaded video or a path. Its tabs
Duplicates, Outliers and Queue show, with the same previews, what ``videocontrast curate`` finds: near-duplicate
groups (each row's similarity to its group's first), rows ranked by outlier score, and the labelling queue
numbered in order (``serve --queue FILE``'s, or computed on the page); a click on any tile lists its neighbours.

Routes::

    GET  /                          the page;            GET /static/{name}   its script and style
    GET  /api/items?offset=&limit=  a page of rows: path, label, clip span, preview and media URLs, whether it exists
    GET  /api/neighbours/{row}?k=   the rows nearest row (optional label=, prefix=)
    GET  /api/query?path=&k=        nearest to an indexed video file (optional label=, prefix=; X-Videocontrast: 1)
    POST /api/query?k=              nearest to the uploaded video (the request body; header X-Videocontrast: 1)
    GET  /api/duplicates?threshold= near-duplicate groups, largest first (no threshold: Otsu's), offset=, limit=
    GET  /api/outliers?top=         rows most outlying first with their score (1 - mean cosine similarity to the
                                    k nearest), offset=
    GET  /api/queue                 the labelling queue in order: serve --queue FILE's rows (missing: its paths
                                    not in the collection), else computed: budget=, strategy=, seed= (source=
                                    computed asks for that one also when a file was given); offset=, limit=
                                    (these three, as /api/query: header X-Videocontrast: 1)
    GET  /preview/{row}             animated WebP of the row's span, made once with our decoder, cached on disk
    GET  /media/{root}/{path}       the video file, with its content type (HTTP range requests for seeking)

Only files inside the folder's indexed roots (``meta.json`` ``roots``) that are rows of the table are served, and
every route that touches a file goes through one check (:meth:`Library.open`): the file is opened once, without
following a link on its last component, and the open descriptor itself must be a regular file at an indexed
path of the same size as when indexed; what is sent or decoded is that descriptor, so a link swapped in after the
check is never followed. ``..``, absolute paths, links out of a root and their URL-encoded forms are refused
(403); a query path that is not an indexed file gets that same 403 whether it exists or not, and is never opened.
A video that was deleted or moved since ``embed`` gets a placeholder preview (and no media link).

The duplicates, outliers and queue routes are ``videocontrast curate``'s on the loaded collection
(:mod:`.serve_curate`): the neighbour graph is computed once, on the first such request, and each answer is
cached per parameter set; their rows carry the same preview and media URLs as ``/api/items``.

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
import ipaddress
import mimetypes
import os
import re
import socket
import sys
import tempfile
from pathlib import Path
from typing import Callable

from .guards import SameOrigin, TrustedHost, trusted_hosts
from .library import NOT_INDEXED, VIDEO_TYPES, Library, Limits, Refusal
from .serve_curate import Curation, map_queue, read_queue

STATIC = Path(__file__).parent / "static"
MAX_TEXT = 4096  # characters in a text query parameter (a path prefix, a label)


def _starlette():
    try:
        import starlette  # noqa: F401
    except ImportError:
        raise ImportError("`videocontrast serve` needs starlette and uvicorn: pip install 'videocontrast[search]'") \
            from None


# ----------------------------------------------------------------------------------------- other sites


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


def _threshold_param(request) -> float | None:
    """``threshold``: a cosine similarity in [-1, 1]; left out (or ``auto``): None, chosen by Otsu's method."""
    raw = request.query_params.get("threshold")
    if raw is None or raw.strip().lower() in ("", "auto"):
        return None
    try:
        value = float(raw) if len(raw) <= 40 else None
    except ValueError:
        value = None
    if value is None or not -1.0 <= value <= 1.0:  # NaN fails the comparison too
        raise Refusal(400, f"threshold must be a cosine similarity from -1 to 1 (or left out: chosen by Otsu's "
                           f"method), got {raw[:40]!r}")
    return value


def _curated(make: Callable[[], dict]) -> dict:
    """A curation answer; its ValueError (under 2 rows, similarities all equal for Otsu's) is a 400 line."""
    try:
        return make()
    except ValueError as e:
        raise Refusal(400, str(e).replace("--auto", "an automatic threshold").replace("give --threshold",
                                                                                     "give ?threshold=")) from None


def create_app(folder: str | Path, checkpoint: str | None = None, device: str | None = None,
               cache: str | Path | None = None, host: str = "127.0.0.1", limits: Limits | None = None,
               queue: str | Path | None = None):
    """The Starlette app over the embedding ``folder``; see the module docstring for its routes. ``host``: the
    address it is served on (its ``Host`` name is trusted besides the loopback names); ``limits``: what a query
    may cost; ``queue``: a list file or ``queue.csv`` (``curate select``) that ``/api/queue`` shows (ValueError
    with one line when it cannot be read)."""
    _starlette()
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.middleware import Middleware
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    lib = Library(folder, checkpoint, device, cache, limits)
    lim = lib.limits
    cur = Curation(lib.col, lib.item, map_queue(queue, lib.col.real_paths()) if queue is not None else None)

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

    def duplicates(request: Request):
        threshold = _threshold_param(request)
        offset, limit = _int_param(request, "offset", 0, 0, 10**12), _int_param(request, "limit", 50, 1, 1000)
        return JSONResponse(_curated(lambda: cur.duplicates(threshold, offset, limit)))

    def outliers(request: Request):
        top = _int_param(request, "top", 20, 1, 10000)
        offset = _int_param(request, "offset", 0, 0, 10**12)
        return JSONResponse(_curated(lambda: cur.outliers(top, offset)))

    def labelling_queue(request: Request):
        source = request.query_params.get("source", "file" if cur.queue is not None else "computed")
        offset, limit = _int_param(request, "offset", 0, 0, 10**12), _int_param(request, "limit", 500, 1, 10000)
        if source == "file":
            if cur.queue is None:
                raise Refusal(400, "no queue file: start serve with --queue FILE (the queue.txt of curate select)")
            return JSONResponse(cur.queue_from_file(offset, limit))
        if source != "computed":
            raise Refusal(400, f"source must be file or computed, got {source[:40]!r}")
        n = len(lib.col)
        budget = _int_param(request, "budget", min(20, n), 1, n)
        strategy = _text_param(request, "strategy") or "diverse"
        seed = _int_param(request, "seed", 0, 0, 2**32 - 1)
        return JSONResponse(_curated(lambda: cur.computed_queue(budget, strategy, seed, offset, limit)))

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
              Route("/api/duplicates", duplicates), Route("/api/outliers", outliers),
              Route("/api/queue", labelling_queue), Route("/preview/{row:int}", preview),
              Route("/media/{root:int}/{path:path}", media)]
    middleware = [Middleware(TrustedHost, names=trusted_hosts(host)), Middleware(SameOrigin)]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={Refusal: refused})
    app.state.library, app.state.curation = lib, cur
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
               device: str | None = None, limits: Limits | None = None, queue: str | Path | None = None) -> None:
    """Serve ``folder`` until Ctrl-C (127.0.0.1 by default: only this machine can connect); ``queue``: the
    list file the Queue view shows (read before the port is bound: a bad one is one line, nothing served)."""
    limits = limits or Limits()
    if queue is not None:
        read_queue(queue)
    sock = listen(host, port)
    try:
        app = create_app(folder, checkpoint, device, host=host, limits=limits, queue=queue)
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
