"""The pure WSGI app of ``/livez``, ``/readyz`` and ``/metrics``: a callable tested with a dict,
served by :mod:`.server`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    from prometheus_client import CollectorRegistry

import json
from collections.abc import Callable, Iterable

from entrypoint.health.state import HealthState, readiness

_REASONS = {
    200: "200 OK",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    503: "503 Service Unavailable",
}


_PATHS = ("/livez", "/readyz", "/metrics")


_ALLOWED = "GET, HEAD"


def make_wsgi_app(
    state: HealthState,
    registry: CollectorRegistry,
    *,
    app_check: Callable[[], bool] | None = None,
) -> WSGIApplication:
    """A WSGI app serving ``/livez``, ``/readyz`` and ``/metrics`` from ``state`` and ``registry``.

    ``app_check`` is consulted only after the exec when an app health URL was handed over; it
    answers whether the app server itself is healthy (see :class:`CachedAppCheck`).
    """
    from prometheus_client.exposition import choose_encoder

    def health_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        headers = [("Cache-Control", "no-store")]
        if path not in _PATHS:
            status, content_type, output = 404, "text/plain; charset=utf-8", b"not found\n"
        elif method not in ("GET", "HEAD"):
            status, content_type, output = 405, "text/plain; charset=utf-8", b"use GET or HEAD\n"
            headers.append(("Allow", _ALLOWED))
        elif path == "/metrics":
            encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
            status, output = 200, encoder(registry)
        else:
            body: dict[str, object] = {"status": "ok"}
            status = 200
            if path != "/livez":
                status, body = readiness(state, app_check)
            content_type = "application/json"
            output = json.dumps(body, separators=(",", ":")).encode() + b"\n"
        headers += [("Content-Type", content_type), ("Content-Length", str(len(output)))]
        start_response(_REASONS[status], headers)
        return [b"" if method == "HEAD" else output]

    return health_app
