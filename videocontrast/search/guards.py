"""Keep other sites out of the local server: :class:`TrustedHost` refuses a ``Host`` that is not an address, localhost
or the served name (DNS rebinding), :class:`SameOrigin` refuses what another site's page sends (Sec-Fetch-Site,
Origin, and the page's own header on queries and uploads)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit




PAGE_HEADER = "x-videocontrast"  # the page's script sends it with its requests; another site's page cannot


# GET routes that decode or compute over the whole collection (the neighbour graph, k-means): they need PAGE_HEADER
PAGE_ONLY = ("/api/query", "/api/duplicates", "/api/outliers", "/api/queue")


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
    * a query by path or a curation (GET :data:`PAGE_ONLY`: it decodes, or computes over the whole collection)
      without the page's ``X-Videocontrast: 1`` header, and
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
