"""The one log of the entrypoint, and the masking of secrets.

Every event goes to one stream (standard error by default, so that ``plan --format json`` and
``history --format json`` keep standard output for data), one line each, flushed at once. An
event is a dict: its fields, then ``event`` (its name), the fixed context (the run id, the
release), ``level`` and ``timestamp`` (ISO 8601, UTC), exactly as a structlog pipeline of
``merge_contextvars``, ``add_log_level`` and ``TimeStamper(fmt="iso", utc=True)`` lays it out.
JSON lines are written here: the log costs no import on the no-op fast path, where the whole
start is a few tens of milliseconds. The console format (``ENTRYPOINT_LOG_FORMAT=console``, or
``auto`` on a terminal) is structlog's ``ConsoleRenderer``, imported only then.

Secrets never reach the stream: values registered with :func:`register_secret` (database
passwords, the lock URL's password) and any ``scheme://user:password@`` or ``password=...``
pattern are replaced by ``***`` in every event field and in every message the CLI prints.
"""

from __future__ import annotations

import re
import sys
from _thread import allocate_lock
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager

from entrypoint.light import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import IO, Any

FORMATS = ("json", "console", "auto")
LEVELS = ("debug", "info", "warning", "error")

_MASK = "***"
# Compiled (and cached) by ``re`` when a text first has a URL or the word in it.
_CREDENTIALS_IN_URL = r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]*(?P<at>@)"
_CREDENTIALS_KEYWORD = r"(?P<head>\bpassword\s*=\s*)('[^']*'|\S+)"
# Fields whose whole value is a secret, whatever it looks like.
_SECRET_KEYS = frozenset({"password", "passwd", "dsn", "secret", "conninfo"})

_secrets: set[str] = set()


def register_secret(value: object) -> None:
    """Remember a secret (a password) so that it is masked wherever it would appear."""
    if isinstance(value, str) and len(value) >= 3:
        _secrets.add(value)


def mask(text: str) -> str:
    """Return ``text`` with every known secret and every embedded password replaced."""
    if "://" in text:
        text = re.sub(_CREDENTIALS_IN_URL, lambda m: f"{m['head']}{_MASK}{m['at']}", text)
    if "password" in text.lower():
        text = re.sub(
            _CREDENTIALS_KEYWORD, lambda m: f"{m['head']}{_MASK}", text, flags=re.IGNORECASE
        )
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
    """Mask secrets in every field of an event (a structlog processor's signature)."""
    for key, value in list(event_dict.items()):
        event_dict[key] = _mask_value(key, value)
    return event_dict


def resolve_format(fmt: str, stream: IO[str]) -> str:
    """Turn ``auto`` into ``console`` on a terminal and ``json`` elsewhere."""
    if fmt != "auto":
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


_RANKS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class _Config:
    """Where events go and how they look; set by :func:`configure`."""

    def __init__(self) -> None:
        self.stream: IO[str] | None = None  # None: sys.stderr as it is when an event is written
        self.threshold = _RANKS["info"]
        self.context: dict[str, Any] = {}
        self.console: Any = None  # structlog's ConsoleRenderer when the format is console
        self.captured: list[dict[str, Any]] | None = None
        self.lock = allocate_lock()


_config = _Config()


def configure(
    fmt: str = "auto",
    level: str = "info",
    stream: IO[str] | None = None,
    context: dict[str, Any] | None = None,
) -> None:
    """Configure the log once for the process: format, level, output stream, fixed context."""
    out: IO[str] = stream if stream is not None else sys.stderr
    _config.stream = stream
    _config.threshold = _RANKS.get(level, _RANKS["info"])
    _config.context = dict(context or {})
    _config.console = None
    if resolve_format(fmt, out) == "console":
        import structlog

        _config.console = structlog.dev.ConsoleRenderer(colors=False)


def route_driver_logs() -> None:
    """Turn the database drivers' own log records (psycopg warns when a cancel fails, for one)
    into events, so that standard error carries only events and the one error line. Called
    where psycopg is first used: the logging machinery is not worth importing before."""
    import logging

    class DriverLogs(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                level = "warning" if record.levelno >= logging.WARNING else "debug"
                getattr(get_logger(), level)(
                    "driver_log", logger=record.name, message=record.getMessage()
                )
            except Exception:  # noqa: S110 - a log line must never break the run
                pass

    driver = logging.getLogger("psycopg")
    if not any(type(handler).__name__ == "DriverLogs" for handler in driver.handlers):
        driver.addHandler(DriverLogs())
    driver.propagate = False


class Logger:
    """The project's logger: ``logger.info("event_name", field=value, ...)``."""

    def debug(self, event: str, **fields: Any) -> None:
        """Log at level debug."""
        _emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log at level info."""
        _emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log at level warning."""
        _emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        """Log at level error."""
        _emit("error", event, fields)


_LOGGER = Logger()


def get_logger() -> Logger:
    """The project's logger; events are dicts, rendered as :func:`configure` chose."""
    return _LOGGER


def _emit(level: str, event: str, fields: dict[str, Any]) -> None:
    if fields.pop("exc_info", False):
        import traceback

        fields["exception"] = traceback.format_exc()
    captured = _config.captured
    if captured is not None:
        captured.append({"event": event, "log_level": level, **fields})
        return
    if _RANKS[level] < _config.threshold:
        return
    event_dict: dict[str, Any] = {**fields, "event": event}
    for key, value in _config.context.items():
        event_dict.setdefault(key, value)
    event_dict["level"] = level
    event_dict["timestamp"] = _now()
    mask_secrets(None, level, event_dict)
    if _config.console is not None:
        line = _config.console(None, level, event_dict)
    else:
        import json

        line = json.dumps(event_dict, default=repr)
    stream = _config.stream if _config.stream is not None else sys.stderr
    with _config.lock:
        stream.write(line + "\n")
        stream.flush()


def _now() -> str:
    """Now as ``datetime.now(UTC).isoformat()`` writes it, with ``Z``: microseconds shown
    unless they are zero (written with :mod:`time`: ``datetime`` is not imported for this)."""
    import time

    nanoseconds = time.time_ns()
    seconds, rest = divmod(nanoseconds, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    micro = rest // 1000
    return f"{stamp}.{micro:06d}Z" if micro else f"{stamp}Z"


@contextmanager
def capture_events() -> Iterator[list[dict[str, Any]]]:
    """Inside the block, events are collected as dicts (their fields, ``event`` and
    ``log_level``) instead of written; for tests."""
    previous = _config.captured
    _config.captured = []
    try:
        yield _config.captured
    finally:
        _config.captured = previous


def flush(streams: Iterable[IO[str]] = ()) -> None:
    """Flush standard output, standard error and any extra stream before an exec or exit."""
    for stream in (*streams, sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
