"""Database errors as one line of text for people, without the drivers' boilerplate."""

from __future__ import annotations

from entrypoint.light import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's text (database errors carry SQL below it)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def connect_error_reason(exc: BaseException) -> str:
    """The cause of a libpq connection error on one line, without its boilerplate.

    libpq says 'connection to server at "h", port 5432 failed: FATAL:  <cause>' and may add a
    hint on a second line; keep the cause.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    if "failed: " in first:
        first = first.rsplit("failed: ", 1)[-1]
    for prefix in ("FATAL:", "ERROR:"):
        first = first.removeprefix(prefix).strip()
    return first.rstrip(".")


def mysql_reason(exc: BaseException) -> str:
    """The text of a MySQL client error on one line, without the (code, text) tuple around it."""
    args: tuple[Any, ...] = exc.args
    text = args[1] if len(args) >= 2 and isinstance(args[1], str) else str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else type(exc).__name__
