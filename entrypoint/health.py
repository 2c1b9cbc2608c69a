"""Health endpoints: the state they report, the pure WSGI app, the metrics, and the handle on
the small child process that serves them and outlives the exec of the app server.

The entrypoint becomes the app server through ``os.execvp``, so nothing in its own process can
keep answering probes. The health server therefore runs in a child (``entrypoint._healthd``)
started before the database wait and fed over a pipe, one JSON object per line::

    phase               {phase, database}
    db_wait             {database, seconds}
    lock_wait           {database, seconds}
    lock_holder_change  {database}
    lock_lost           {database}
    migration_applied   {database, app, name, seconds}
    migration_failed    {database, app, name}
    held                {database, count}
    run_info            {release, django_version, version}
    ready               {}
    failed              {error}          only the exception class name of ``error`` is kept
    exec                {app_health_url}

Unknown types and malformed lines are ignored. This module must stay importable without Django
and light to import: the child imports it and should stay small for the life of the container.
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import os
import re
import select
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from entrypoint import __version__
from entrypoint.errors import ConfigError, EntrypointError

if TYPE_CHECKING:
    import subprocess
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    # The entrypoint itself only starts and feeds the health child: prometheus_client is
    # imported where metrics are built and served (in the child), not at every start.
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info


class Phase(enum.StrEnum):
    """Where a run is, as ``/readyz`` and the ``entrypoint_phase`` metric report it."""

    WAITING_FOR_DATABASE = "waiting_for_database"
    WAITING_FOR_LOCK = "waiting_for_lock"
    MIGRATING = "migrating"
    FAILED = "failed"
    READY = "ready"


# Seconds; migrations range from milliseconds to a long data migration or index build.
MIGRATION_DURATION_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    math.inf,
)

_UNSAFE_LABEL_CHARS = re.compile(r"[^\w.\-]")
# A dotted exception class name whose last part is CapWords: ``psycopg.errors.UniqueViolation``.
_EXCEPTION_NAME = re.compile(r"(?:[A-Za-z_]\w*\.)*[A-Z]\w*")
_MAX_LABEL = 100


@dataclass
class HealthState:
    """What ``/readyz`` reports; shared by the pipe reader and the request threads."""

    phase: Phase = Phase.WAITING_FOR_DATABASE
    database: str | None = None
    error: str | None = None
    migration: str | None = None
    execed: bool = False
    app_health_url: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


@dataclass(frozen=True)
class HealthMetrics:
    """The entrypoint's metrics, registered in one registry by :func:`build_metrics`."""

    phase: Gauge
    ready: Gauge
    database_wait: Gauge
    lock_wait: Gauge
    migrations_applied: Counter
    migration_duration: Histogram
    migration_failures: Counter
    lock_holder_changes: Counter
    lock_lost: Counter
    migrations_held: Counter
    run_info: Info

    def set_phase(self, phase: Phase) -> None:
        """Mark ``phase`` as the current one (1) and every other phase 0."""
        for each in Phase:
            self.phase.labels(phase=each).set(1 if each is phase else 0)
        self.ready.set(1 if phase is Phase.READY else 0)


def build_metrics(registry: CollectorRegistry) -> HealthMetrics:
    """Register the entrypoint's metrics in ``registry``, starting in the first phase."""
    from prometheus_client import Counter, Gauge, Histogram, Info

    by_db = ("database",)
    metrics = HealthMetrics(
        phase=Gauge(
            "entrypoint_phase",
            "Current phase of the entrypoint run (1 for the current phase).",
            ("phase",),
            registry=registry,
        ),
        ready=Gauge(
            "entrypoint_ready",
            "1 once every database is migrated, else 0.",
            registry=registry,
        ),
        database_wait=Gauge(
            "entrypoint_database_wait_seconds",
            "Seconds spent waiting for the database to accept connections.",
            by_db,
            registry=registry,
        ),
        lock_wait=Gauge(
            "entrypoint_lock_wait_seconds",
            "Seconds spent waiting for the migration lock.",
            by_db,
            registry=registry,
        ),
        migrations_applied=Counter(
            "entrypoint_migrations_applied",
            "Migrations applied by this run.",
            by_db,
            registry=registry,
        ),
        migration_duration=Histogram(
            "entrypoint_migration_duration_seconds",
            "Time taken by each applied migration.",
            by_db,
            buckets=MIGRATION_DURATION_BUCKETS,
            registry=registry,
        ),
        migration_failures=Counter(
            "entrypoint_migration_failures",
            "Migrations that raised.",
            by_db,
            registry=registry,
        ),
        lock_holder_changes=Counter(
            "entrypoint_lock_holder_changes",
            "Times another holder of the migration lock was seen while waiting.",
            by_db,
            registry=registry,
        ),
        lock_lost=Counter(
            "entrypoint_lock_lost",
            "Times this run lost the migration lock while holding it (it then stopped).",
            by_db,
            registry=registry,
        ),
        migrations_held=Counter(
            "entrypoint_migrations_held",
            "Pending migrations held back by the deploy-phase policy.",
            by_db,
            registry=registry,
        ),
        run_info=Info(
            "entrypoint_run",
            "The release, Django version and entrypoint version of this run.",
            registry=registry,
        ),
    )
    metrics.set_phase(Phase.WAITING_FOR_DATABASE)
    metrics.run_info.info({"release": "", "django_version": "", "version": __version__})
    return metrics


def summarize_error(error: str) -> str:
    """The exception class name that starts ``error``; nothing of the message after it.

    Database errors carry DSNs, SQL text and values in their messages, so only a leading
    class name (``OperationalError: ...`` gives ``OperationalError``) ever reaches a probe.
    """
    text = error.strip()
    found = _EXCEPTION_NAME.match(text)
    if found is None or (found.end() < len(text) and text[found.end()] not in ": \t\r\n("):
        return "error"
    return found.group()[:_MAX_LABEL]


def _label(value: object) -> str | None:
    # Aliases and migration names are plain identifiers; anything shaped like a URL is mangled.
    if not isinstance(value, str) or not value:
        return None
    return _UNSAFE_LABEL_CHARS.sub("_", value)[:_MAX_LABEL]


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _http_url(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    scheme = urllib.parse.urlsplit(value).scheme
    return value if scheme in ("http", "https") else None


def apply_message(
    state: HealthState, metrics: HealthMetrics, message: Mapping[str, object]
) -> bool:
    """Apply one protocol message to the state and metrics; False when it was not understood."""
    kind = message.get("type")
    database = _label(message.get("database"))
    if kind == "phase":
        try:
            phase = Phase(str(message.get("phase")))
        except ValueError:
            return False
        with state.lock:
            state.phase = phase
            state.database = database
        metrics.set_phase(phase)
    elif kind in ("db_wait", "lock_wait"):
        seconds = _seconds(message.get("seconds"))
        if database is None or seconds is None:
            return False
        gauge = metrics.database_wait if kind == "db_wait" else metrics.lock_wait
        gauge.labels(database=database).set(seconds)
    elif kind in ("lock_holder_change", "lock_lost"):
        if database is None:
            return False
        counter = metrics.lock_holder_changes if kind == "lock_holder_change" else metrics.lock_lost
        counter.labels(database=database).inc()
    elif kind == "migration_applied":
        seconds = _seconds(message.get("seconds"))
        if database is None or seconds is None:
            return False
        metrics.migrations_applied.labels(database=database).inc()
        metrics.migration_duration.labels(database=database).observe(seconds)
    elif kind == "migration_failed":
        app, name = _label(message.get("app")), _label(message.get("name"))
        if database is None or app is None or name is None:
            return False
        metrics.migration_failures.labels(database=database).inc()
        with state.lock:
            state.database = database
            state.migration = f"{app}.{name}"
    elif kind == "held":
        count = _count(message.get("count"))
        if database is None or count is None:
            return False
        metrics.migrations_held.labels(database=database).inc(count)
    elif kind == "run_info":
        labels = {key: message.get(key) for key in ("release", "django_version", "version")}
        metrics.run_info.info(
            {
                key: value[:_MAX_LABEL] if isinstance(value, str) else ""
                for key, value in labels.items()
            }
        )
    elif kind == "ready":
        with state.lock:
            state.phase = Phase.READY
            state.error = None
        metrics.set_phase(Phase.READY)
    elif kind == "failed":
        error = message.get("error")
        with state.lock:
            state.phase = Phase.FAILED
            state.error = summarize_error(error) if isinstance(error, str) else "error"
            if database is not None:
                state.database = database
        metrics.set_phase(Phase.FAILED)
    elif kind == "exec":
        with state.lock:
            state.execed = True
            state.app_health_url = _http_url(message.get("app_health_url"))
    else:
        return False
    return True


def readiness(
    state: HealthState, app_check: Callable[[], bool] | None = None
) -> tuple[int, dict[str, object]]:
    """The ``/readyz`` status code and JSON body for the current state."""
    with state.lock:
        phase, database, execed = state.phase, state.database, state.execed
        error, migration, app_url = state.error, state.migration, state.app_health_url
    body: dict[str, object] = {"phase": str(phase), "database": database, "exec": execed}
    if phase is Phase.READY:
        if execed and app_url is not None and app_check is not None and not app_check():
            return 503, {"status": "app_not_ready", **body}
        return 200, {"status": "ready", **body}
    if phase is Phase.FAILED:
        return 503, {"status": "failed", **body, "error": error, "migration": migration}
    return 503, {"status": "not_ready", **body}


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


class HealthProcess:
    """The entrypoint's handle on the health child: start it, feed it, hand it over at the exec."""

    def __init__(self, process: subprocess.Popen[bytes], host: str, port: int) -> None:
        self._process = process
        self.host = host
        self.port = port
        self._send_lock = threading.RLock()
        self._handed_off = False
        stdin = process.stdin
        self._pipe: IO[bytes] | None = stdin
        if stdin is not None:
            # A stuck child must never stall a migration: a full pipe drops the message instead.
            os.set_blocking(stdin.fileno(), False)
        # Reaps the child the moment it ends, so it never lingers as a zombie of the entrypoint.
        threading.Thread(target=process.wait, name="entrypoint-health-reaper", daemon=True).start()

    @property
    def pid(self) -> int:
        """The health child's process id."""
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The child's exit status once it has ended, else None."""
        return self._process.returncode

    @classmethod
    def start(cls, addr: str, port: int, *, timeout: float = 5.0) -> HealthProcess:
        """Start the health child on ``addr:port`` and return once it listens.

        Raises :class:`ConfigError` when the address cannot be served (in use, not local,
        unknown host), :class:`EntrypointError` when the child does not come up in ``timeout``.
        """
        import subprocess  # the health child never starts a process: keep it out of its imports

        if not 0 < port < 65536:
            message = f"health port must be between 1 and 65535, got {port}"
            raise ValueError(message)
        # The pipes are close-on-exec on this side, so the app server started by the later
        # exec inherits neither end. -P: a project package in the working directory named like
        # a stdlib module (an app called `email` or `calendar`) must not shadow the child's.
        process = subprocess.Popen(
            [sys.executable, "-P", "-m", "entrypoint._healthd", addr, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_child_environment(),
        )
        line = ""
        if process.stdout is not None:
            try:
                line = _read_line(process.stdout, timeout)
            finally:
                process.stdout.close()
        where = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
        words = line.split(maxsplit=2)
        if words[:1] == ["listening"] and len(words) == 3 and words[2].isdigit():
            return cls(process, words[1], int(words[2]))
        if words[:1] == ["error"]:
            _end(process)  # it exits on its own right after reporting
            reason = line.partition(" ")[2].strip() or "unknown reason"
            message = (
                f"ENTRYPOINT_HEALTH_ADDR/ENTRYPOINT_HEALTH_PORT: cannot serve health on {where} "
                f"({reason}); choose a free local address and port, "
                "or set ENTRYPOINT_HEALTH_PORT=0 to turn the health server off"
            )
            raise ConfigError(message)
        if process.poll() is None:
            process.kill()
            process.wait()
            what = f"did not report listening within {timeout:g} s"
        else:
            what = f"exited with status {process.returncode} before listening"
        message = (
            f"the health server for {where} {what}; see its output above, "
            "or set ENTRYPOINT_HEALTH_PORT=0 to turn the health server off"
        )
        raise EntrypointError(message)

    def send(self, kind: str, **fields: object) -> None:
        """Send one message to the child; never raises and never blocks for long.

        For ``failed``, ``error`` may be the exception itself; only its class name is sent.
        """
        if kind == "failed":
            error = fields.get("error")
            if isinstance(error, BaseException):
                error = type(error).__name__
            fields["error"] = summarize_error(error) if isinstance(error, str) else "error"
        encoded = _encode(kind, fields)
        if len(encoded) > select.PIPE_BUF:
            encoded = _encode(kind, {k: _shorten(v) for k, v in fields.items()})
        # Writes up to PIPE_BUF are atomic: a message arrives whole or not at all.
        if len(encoded) > select.PIPE_BUF:
            return
        with self._send_lock:
            if self._pipe is None:
                return
            with contextlib.suppress(OSError, ValueError):
                os.write(self._pipe.fileno(), encoded)

    def handoff(self, app_health_url: str | None = None) -> None:
        """Just before the exec: tell the child the app server takes over, and let go of it."""
        self.send("exec", app_health_url=app_health_url)
        self._handed_off = True
        self._close_pipe()

    def stop(self, timeout: float = 2.0) -> None:
        """End the child: close its pipe and wait briefly, then terminate it if it lingers."""
        self._close_pipe()
        if self._handed_off:
            # After a hand-off the child no longer ends on EOF; this is an exec that failed.
            self._process.terminate()
        _end(self._process, timeout)

    def __enter__(self) -> HealthProcess:
        """Use as a context manager that stops the child on the way out."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the child."""
        self.stop()

    def _close_pipe(self) -> None:
        with self._send_lock:
            pipe, self._pipe = self._pipe, None
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _encode(kind: str, fields: Mapping[str, object]) -> bytes:
    data = json.dumps({**fields, "type": kind}, default=str, separators=(",", ":"))
    return data.encode() + b"\n"


def _shorten(value: object) -> object:
    return value[:_MAX_LABEL] if isinstance(value, str) else value


def _child_environment() -> dict[str, str] | None:
    # With -P the child no longer sees the working directory; when that is where this package
    # comes from (a source checkout), name it explicitly.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cwd = os.getcwd()
    elsewhere = {os.path.abspath(entry) for entry in sys.path if entry} - {cwd}
    if root in elsewhere:
        return None
    paths = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _end(process: subprocess.Popen[bytes], timeout: float = 2.0) -> None:
    import subprocess

    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(1.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _read_line(stream: IO[bytes], timeout: float) -> str:
    # The first line the child prints, without ever waiting past ``timeout``.
    deadline = time.monotonic() + timeout
    fd = stream.fileno()
    data = b""
    while b"\n" not in data and len(data) < 4096:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.partition(b"\n")[0].decode("utf-8", "replace")
