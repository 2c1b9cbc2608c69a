"""HTTP clients of health: the ``probe`` command's check of ``/readyz``, and the cached check of
the exec'd app server's own health URL.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable

from entrypoint import __version__
from entrypoint.health.state import HealthState


def http_status(url: str, timeout: float) -> int | None:
    """The status of a GET on ``url``, or None when no HTTP answer came within ``timeout``."""
    import http.client  # only probes need it; it costs the entrypoint's start ~30 ms

    connection: http.client.HTTPConnection | None = None
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.hostname is None:
            return None
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout)
        elif parts.scheme == "http":
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        else:
            return None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request(
            "GET", target, headers={"User-Agent": f"django-entrypoint/{__version__}"}
        )
        return connection.getresponse().status
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        if connection is not None:
            connection.close()


def probe(url: str, timeout: float = 2.0) -> bool:
    """True when a GET on ``url`` answers 200; False on anything else, never an exception.

    ``timeout`` bounds each step (connect, send, each read), which is what a probe needs.
    """
    return http_status(url, timeout) == 200


def why_not_ready(url: str, timeout: float = 2.0) -> str | None:
    """None when a GET on ``url`` answers 200; else why not, in a few words: refused, timed
    out, or the status with the phase ``/readyz`` reports."""
    import http.client
    import json

    connection: http.client.HTTPConnection | None = None
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.hostname is None:
            return f"{url} is not an http(s) URL"
        kind = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = kind(parts.hostname, parts.port, timeout=timeout)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request(
            "GET", target, headers={"User-Agent": f"django-entrypoint/{__version__}"}
        )
        answer = connection.getresponse()
        if answer.status == 200:
            return None
        body = answer.read(65536)
        try:
            phase = json.loads(body).get("phase")
        except (ValueError, AttributeError):
            phase = None
        return f"it answered {answer.status}" + (f", phase {phase}" if phase else "")
    except ConnectionRefusedError:
        return "the connection was refused: nothing listens there"
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return f"it failed: {type(exc).__name__}: {exc}"
    finally:
        if connection is not None:
            connection.close()


class CachedAppCheck:
    """Whether the exec'd app server answers its health URL with 2xx/3xx, asked at most once a ttl.

    Probes arrive from several threads at once; one of them asks the app and the others reuse the
    answer, so a burst of probes never becomes a burst against the app server.
    """

    def __init__(
        self,
        state: HealthState,
        *,
        timeout: float = 1.0,
        ttl: float = 1.0,
        status: Callable[[str, float], int | None] = http_status,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state = state
        self._timeout = timeout
        self._ttl = ttl
        self._status = status
        self._clock = clock
        self._lock = threading.Lock()
        self._answer: tuple[str, float, bool] | None = None

    def __call__(self) -> bool:
        """Ask the app server (or reuse a fresh answer); True when no URL was handed over."""
        with self._state.lock:
            url = self._state.app_health_url
        if url is None:
            return True
        with self._lock:
            if self._answer is not None:
                answered_url, at, ok = self._answer
                if answered_url == url and self._clock() - at < self._ttl:
                    return ok
            code = self._status(url, self._timeout)
            ok = code is not None and 200 <= code < 400
            self._answer = (url, self._clock(), ok)
            return ok


def local_url(addr: str, port: int, path: str) -> str:
    """The URL this host reaches the health server on: a wildcard bind (``0.0.0.0``, ``::``)
    is reached on loopback of the same family."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(addr, addr)  # noqa: S104 - a wildcard bind is probed on loopback
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"
