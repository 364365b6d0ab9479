"""The browser side of the scorer: the tracker it serves, and which pages may call it.

``GET /sdk/microtune.js``: the browser tracker, served by the scorer.

The file (``serving/sdk/microtune.js``, dependency-free) is read once, when
the app is made, and compressed once: every answer is bytes already made.
It is cacheable (``Cache-Control: public, max-age=3600`` and an ``ETag`` of
its content, answered ``304`` on ``If-None-Match``), gzip-compressed for a
client that accepts it, and names its version in ``X-SDK-Version``.
``docs/sdk.md`` says how a page uses it.

:func:`storefront`: the demo shop at ``/demo/`` (``serving/storefront/``,
static files), a product list, product pages with zooming photos and a size
guide, a cart and a checkout, instrumented with the SDK and showing its
decisions. ``MICROTUNE_SERVE__STOREFRONT=false`` turns it off.

:class:`OriginGuard`: CORS only hides an answer from a page; a browser still
sends a simple request (a ``text/plain`` POST, as beacons are) from any
origin. So a ``POST`` that a browser marks with an ``Origin`` other than the
scorer's own and those of ``MICROTUNE_SERVE__CORS_ORIGINS`` is refused with
403 before it reaches a route. Clients that send no ``Origin`` (servers,
``curl``) are not concerned.

>>> sdk = Sdk.load()
>>> sdk.version, len(sdk.gzipped) < 5 * 1024 < len(sdk.plain)
('0.2.0', True)
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

SOURCE = Path(__file__).parent / "sdk" / "microtune.js"
SHOP = Path(__file__).parent / "storefront"
_VERSION = re.compile(rb'VERSION = "([0-9.]+)"')


@dataclass(frozen=True)
class Sdk:
    plain: bytes
    gzipped: bytes
    etag: str
    version: str

    @classmethod
    def load(cls, path: Path = SOURCE) -> Sdk:
        plain = path.read_bytes()
        found = _VERSION.search(plain)
        version = found.group(1).decode() if found else "unknown"
        etag = '"' + hashlib.sha256(plain).hexdigest()[:16] + '"'
        return cls(plain, gzip.compress(plain, compresslevel=9, mtime=0), etag, version)


def router(sdk: Sdk) -> APIRouter:
    """The route, answering from ``sdk``."""
    r = APIRouter()

    @r.get("/sdk/microtune.js", tags=["browser"], response_class=Response)
    async def script(request: Request) -> Response:
        """The browser SDK: tracker and decision applier (JavaScript, about 4 KB compressed)."""
        headers = {
            "Cache-Control": "public, max-age=3600",
            "ETag": sdk.etag,
            "X-SDK-Version": sdk.version,
            "Vary": "Accept-Encoding",
        }
        if sdk.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        media = "text/javascript; charset=utf-8"
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(sdk.gzipped, media_type=media, headers=headers)
        return Response(sdk.plain, media_type=media, headers=headers)

    return r


def storefront(directory: Path = SHOP) -> StaticFiles:
    """The demo shop's pages, to mount at ``/demo`` (``/demo/`` answers ``index.html``)."""
    return StaticFiles(directory=directory, html=True)


class OriginGuard:
    """403 for a browser's ``POST`` from an origin that is neither allowed nor this server's."""

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app, self.allowed = app, frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = dict(scope["headers"])
            origin = headers.get(b"origin", b"").decode("latin-1")
            own = f"{scope.get('scheme', 'http')}://{headers.get(b'host', b'').decode('latin-1')}"
            if origin and origin != "null" and origin not in self.allowed and origin != own:
                refusal = JSONResponse(
                    {
                        "detail": f"origin {origin} may not call this API: add it to "
                        "MICROTUNE_SERVE__CORS_ORIGINS"
                    },
                    status_code=403,
                )
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)
