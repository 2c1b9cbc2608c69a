"""What ``/readyz`` reports: the phase of the run, applied from the messages the entrypoint sends
the health child (see :mod:`.process`), and the readiness answer built from it.
"""

from __future__ import annotations

import math
import re
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from entrypoint.health.phases import RunPhase

if TYPE_CHECKING:
    from entrypoint.health.metrics import HealthMetrics


#: Seconds the health child gives its push to the Pushgateway.
PUSH_TIMEOUT = 5.0


_UNSAFE_LABEL_CHARS = re.compile(r"[^\w.\-]")


# A dotted exception class name whose last part is CapWords: ``psycopg.errors.UniqueViolation``.
_EXCEPTION_NAME = re.compile(r"(?:[A-Za-z_]\w*\.)*[A-Z]\w*")


MAX_LABEL = 100


@dataclass
class HealthState:
    """What ``/readyz`` reports; shared by the pipe reader and the request threads."""

    phase: RunPhase = RunPhase.WAITING_FOR_DATABASE
    database: str | None = None
    error: str | None = None
    migration: str | None = None
    execed: bool = False
    app_health_url: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


def summarize_error(error: str) -> str:
    """The exception class name that starts ``error``; nothing of the message after it.

    Database errors carry DSNs, SQL text and values in their messages, so only a leading
    class name (``OperationalError: ...`` gives ``OperationalError``) ever reaches a probe.
    """
    text = error.strip()
    found = _EXCEPTION_NAME.match(text)
    if found is None or (found.end() < len(text) and text[found.end()] not in ": \t\r\n("):
        return "error"
    return found.group()[:MAX_LABEL]


def _label(value: object) -> str | None:
    # Aliases and migration names are plain identifiers; anything shaped like a URL is mangled.
    if not isinstance(value, str) or not value:
        return None
    return _UNSAFE_LABEL_CHARS.sub("_", value)[:MAX_LABEL]


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
            phase = RunPhase(str(message.get("phase")))
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
    elif kind == "migrations_missing":
        count = _count(message.get("count"))
        if database is None or count is None:
            return False
        metrics.migrations_missing.labels(database=database).set(count)
    elif kind == "migrations_wait":
        seconds = _seconds(message.get("seconds"))
        if database is None or seconds is None:
            return False
        metrics.migrations_wait.labels(database=database).set(seconds)
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
                key: value[:MAX_LABEL] if isinstance(value, str) else ""
                for key, value in labels.items()
            }
        )
    elif kind == "ready":
        with state.lock:
            state.phase = RunPhase.READY
            state.error = None
        metrics.set_phase(RunPhase.READY)
    elif kind == "failed":
        error = message.get("error")
        with state.lock:
            state.phase = RunPhase.FAILED
            state.error = summarize_error(error) if isinstance(error, str) else "error"
            if database is not None:
                state.database = database
        metrics.set_phase(RunPhase.FAILED)
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
    if phase is RunPhase.READY:
        if execed and app_url is not None and app_check is not None and not app_check():
            return 503, {"status": "app_not_ready", **body}
        return 200, {"status": "ready", **body}
    if phase is RunPhase.FAILED:
        return 503, {"status": "failed", **body, "error": error, "migration": migration}
    return 503, {"status": "not_ready", **body}
