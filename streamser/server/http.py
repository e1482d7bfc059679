"""Plain HTTP GET on the WebSocket port: the browser page, ``/healthz`` and ``/metrics``.

websockets calls :func:`route` (its ``process_request`` hook) for every request before the
WebSocket handshake; returning a response answers the request as plain HTTP, returning None
lets the handshake go on (only at the stream path).

A browser page of any other site could open a WebSocket to a server on this machine (browsers
send cookies-free but cross-origin WebSocket requests): a request whose ``Origin`` is not this
server's own is refused, so only this server's page (or a non-browser client, which sends no
``Origin``) may stream.
"""

from __future__ import annotations

import email.utils
import http
import json
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from streamser.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from streamser.server.protocol import STREAM_PATH

STATIC_FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/worklet.js": ("worklet.js", "text/javascript; charset=utf-8"),
}
"""The browser page's files, under ``streamser/server/static/`` (package data)."""


def static_file(name: str) -> bytes:
    return resources.files("streamser.server").joinpath("static", name).read_bytes()


def response(status: int, body: bytes, content_type: str) -> Response:
    code = http.HTTPStatus(status)
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        ]
    )
    return Response(code.value, code.phrase, headers, body)


def text_response(status: int, text: str) -> Response:
    return response(status, text.encode(), "text/plain; charset=utf-8")


class Router:
    """The ``process_request`` hook: static files, health, metrics; the stream path passes."""

    def __init__(self, health: Callable[[], dict[str, Any]], metrics: Callable[[], bytes]) -> None:
        self.health = health
        self.metrics = metrics
        self._files = {
            path: (static_file(name), ctype) for path, (name, ctype) in STATIC_FILES.items()
        }

    def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == STREAM_PATH:
            if not same_origin(request.headers):
                return text_response(
                    403, "cross-origin WebSocket refused: use this server's page\n"
                )
            return None
        if path == "/healthz":
            body = json.dumps(self.health()).encode()
            return response(200, body, "application/json")
        if path == "/metrics":
            return response(200, self.metrics(), METRICS_CONTENT_TYPE)
        if path in self._files:
            body, ctype = self._files[path]
            return response(200, body, ctype)
        return text_response(404, f"not found: {path} (the stream is at {STREAM_PATH})\n")


def same_origin(headers: Headers) -> bool:
    """No ``Origin`` (not a browser), or the origin of the page this server served."""
    origin = headers.get("Origin")
    if origin is None:
        return True
    host = headers.get("Host")
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()
