"""The one structlog configuration of the entrypoint, and the masking of secrets.

Every event goes to one stream (standard error by default, so that ``plan --format json`` and
``history --format json`` keep standard output for data). Secrets never reach it: values
registered with :func:`register_secret` (database passwords, the lock URL's password) and any
``scheme://user:password@`` or ``password=...`` pattern are replaced by ``***`` in every event
field and in every message the CLI prints.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import IO, Any

import structlog

FORMATS = ("json", "console", "auto")
LEVELS = ("debug", "info", "warning", "error")

_MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]*(?P<at>@)")
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)
# Fields whose whole value is a secret, whatever it looks like.
_SECRET_KEYS = frozenset({"password", "passwd", "dsn", "secret", "conninfo"})

_secrets: set[str] = set()


def register_secret(value: object) -> None:
    """Remember a secret (a password) so that it is masked wherever it would appear."""
    if isinstance(value, str) and len(value) >= 3:
        _secrets.add(value)


def mask(text: str) -> str:
    """Return ``text`` with every known secret and every embedded password replaced."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{_MASK}{m['at']}", text)
    text = _KEYWORD_PASSWORD.sub(lambda m: f"{m['head']}{_MASK}", text)
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


def _mask_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return _MASK if key.lower() in _SECRET_KEYS and value else mask(value)
    if isinstance(value, BaseException):
        return mask(f"{type(value).__name__}: {value}")
    if isinstance(value, dict):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_mask_value(key, v) for v in value)
    return value


def mask_secrets(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secrets in every field of the event."""
    for key, value in list(event_dict.items()):
        event_dict[key] = _mask_value(key, value)
    return event_dict


def resolve_format(fmt: str, stream: IO[str]) -> str:
    """Turn ``auto`` into ``console`` on a terminal and ``json`` elsewhere."""
    if fmt != "auto":
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


def configure(
    fmt: str = "auto",
    level: str = "info",
    stream: IO[str] | None = None,
    context: dict[str, Any] | None = None,
) -> None:
    """Configure structlog once for the process: format, level, output stream, fixed context."""
    out: Any = stream if stream is not None else sys.stderr
    renderer: Any
    if resolve_format(fmt, out) == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_secrets,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    if context:
        structlog.contextvars.bind_contextvars(**context)
    _route_driver_logs()


class _DriverLogs(logging.Handler):
    """Turns the database drivers' own log records (psycopg warns when a cancel fails, for
    one) into events, so that standard error carries only events and the one error line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = "warning" if record.levelno >= logging.WARNING else "debug"
            getattr(get_logger(), level)(
                "driver_log", logger=record.name, message=record.getMessage()
            )
        except Exception:  # noqa: S110 - a log line must never break the run
            pass


def _route_driver_logs() -> None:
    driver = logging.getLogger("psycopg")
    if not any(isinstance(handler, _DriverLogs) for handler in driver.handlers):
        driver.addHandler(_DriverLogs())
    driver.propagate = False


def get_logger(**initial: Any) -> Any:
    """The project's logger; events are dicts, rendered by :func:`configure`'s choice."""
    return structlog.get_logger("entrypoint", **initial)


def flush(streams: Iterable[IO[str]] = ()) -> None:
    """Flush standard output, standard error and any extra stream before an exec or exit."""
    for stream in (*streams, sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
