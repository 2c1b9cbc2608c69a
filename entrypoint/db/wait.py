"""Waiting for databases: retry transient failures with capped exponential back-off (tenacity),
fail at once on permanent ones (wrong password, unknown host, missing database)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from entrypoint.db.params import mysql_params, postgres_params
from entrypoint.db.reasons import connect_error_reason, first_line, mysql_reason
from entrypoint.db.targets import Target
from entrypoint.errors import DatabaseUnavailable

if TYPE_CHECKING:
    import tenacity

# The back-off starts small so that a database that comes up is seen within a fraction of a
# second, and is capped at half a second: an attempt against a refused port costs nothing.
INITIAL_DELAY = 0.05
MAX_DELAY = 0.5
CONNECT_TIMEOUT = 5.0

_PERMANENT_POSTGRES = (
    ("password authentication failed", "check USER and PASSWORD"),
    ("no password supplied", "set PASSWORD"),
    ("no pg_hba.conf entry", "allow this client in pg_hba.conf or fix HOST and USER"),
    ("does not exist", "create it, or fix NAME and USER"),
    ("Name or service not known", "fix HOST"),
    ("nodename nor servname", "fix HOST"),
    ("No address associated with hostname", "fix HOST"),
    ("invalid connection option", "fix OPTIONS"),
    ("invalid sslmode", "fix OPTIONS"),
    ("permission denied for database", "grant CONNECT or fix USER"),
)
# MySQL client error codes that no amount of waiting fixes.
_PERMANENT_MYSQL = {
    1044: "fix USER or grant access to the database",
    1045: "check USER and PASSWORD",
    1049: "create it, or fix NAME",
    1130: "allow this client's host for USER on the server, or fix HOST",
    1698: "check USER and PASSWORD",
    2005: "fix HOST",
    2059: "install the server's authentication plugin on this client, or change USER's plugin",
}


class TransientError(Exception):
    """The database is not there yet; waiting may help."""


class PermanentError(Exception):
    """The database answered in a way that waiting cannot fix."""


@dataclass(frozen=True)
class Attempt:
    """One failed attempt, reported to the caller for logging."""

    alias: str
    number: int
    error: str
    elapsed: float


def probe(target: Target, timeout: float) -> None:
    """Connect to the target once; raise TransientError or PermanentError when that fails."""
    if target.vendor == "postgresql":
        _probe_postgres(target, timeout)
    elif target.vendor == "sqlite":
        _probe_sqlite(target)
    elif target.vendor == "mysql":
        _probe_mysql(target, timeout)
    else:
        _probe_django(target)


def _probe_postgres(target: Target, timeout: float) -> None:
    import psycopg

    params = postgres_params(target.alias)
    params["connect_timeout"] = max(2, int(min(timeout, CONNECT_TIMEOUT) + 0.999))
    try:
        psycopg.connect(**params, autocommit=True).close()
    except psycopg.OperationalError as exc:
        reason = connect_error_reason(exc)
        for needle, fix in _PERMANENT_POSTGRES:
            if needle in reason:
                raise PermanentError(f"{reason}; {fix} in {target.settings_hint}") from exc
        raise TransientError(reason) from exc


def _probe_mysql(target: Target, timeout: float) -> None:
    import MySQLdb

    from entrypoint.locks.mysql import connect

    params = mysql_params(target.alias)
    # Without it a host that drops packets holds one attempt for minutes, past the deadline.
    params["connect_timeout"] = max(1, int(min(timeout, CONNECT_TIMEOUT) + 0.999))
    try:
        connect(params).close()
    except MySQLdb.Error as exc:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        reason = mysql_reason(exc)
        if code in _PERMANENT_MYSQL:
            msg = f"{reason}; {_PERMANENT_MYSQL[code]} in {target.settings_hint}"
            raise PermanentError(msg) from exc
        raise TransientError(reason) from exc


def _probe_sqlite(target: Target) -> None:
    name = target.name
    if name == ":memory:" or name.startswith("file:") or not name:
        return
    directory = os.path.dirname(os.path.abspath(name))
    if not os.path.isdir(directory):
        msg = (
            f"the directory {directory} of the SQLite file does not exist; "
            f"create it or fix NAME in {target.settings_hint}"
        )
        raise PermanentError(msg)
    _probe_django(target)


def _probe_django(target: Target) -> None:
    from django.db import connections

    connection = connections[target.alias]
    try:
        connection.ensure_connection()
    except Exception as exc:
        cause = exc.__cause__ or exc
        code = cause.args[0] if cause.args and isinstance(cause.args[0], int) else None
        if target.vendor == "mysql" and code in _PERMANENT_MYSQL:
            msg = f"{first_line(cause)}; {_PERMANENT_MYSQL[code]} in {target.settings_hint}"
            raise PermanentError(msg) from exc
        if target.vendor == "sqlite":
            msg = f"{first_line(cause)}; fix NAME in {target.settings_hint}"
            raise PermanentError(msg) from exc
        raise TransientError(first_line(cause)) from exc
    finally:
        connection.close()


def wait_for(
    targets: list[Target],
    timeout: float,
    *,
    check: Callable[[Target, float], None] = probe,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[Attempt], None] | None = None,
) -> dict[str, float]:
    """Wait until every target accepts a connection; return seconds waited per alias.

    One deadline covers all targets. Raises DatabaseUnavailable (exit 69) on a permanent error
    or when the deadline passes.
    """
    import tenacity  # here: a start whose databases answered already does not pay for it

    start = clock()
    waited: dict[str, float] = {}
    for target in targets:
        began = clock()
        attempts = 0

        def attempt(target: Target = target) -> None:
            nonlocal attempts
            attempts += 1
            remaining = max(0.1, timeout - (clock() - start))
            check(target, remaining)

        def report(
            state: tenacity.RetryCallState, target: Target = target, began: float = began
        ) -> None:
            if on_retry is not None and state.outcome is not None:
                exc = state.outcome.exception()
                on_retry(Attempt(target.alias, state.attempt_number, str(exc), clock() - began))

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientError),
            stop=_stop_at(start + timeout, clock),
            wait=tenacity.wait_exponential(multiplier=INITIAL_DELAY, max=MAX_DELAY),
            sleep=sleep,
            before_sleep=report,
            reraise=True,
        )
        try:
            retrying(attempt)
        except PermanentError as exc:
            msg = f"database {target.alias!r} ({target.display}): {exc}"
            raise DatabaseUnavailable(msg) from exc
        except TransientError as exc:
            msg = (
                f"database {target.alias!r} ({target.display}) was not reachable within "
                f"{timeout:g}s ({attempts} attempts): {exc}; check that the server runs and "
                f"HOST/PORT in {target.settings_hint}, or raise ENTRYPOINT_WAIT_TIMEOUT"
            )
            raise DatabaseUnavailable(msg) from exc
        waited[target.alias] = clock() - began
    return waited


def _stop_at(deadline: float, clock: Callable[[], float]) -> tenacity.stop.stop_base:
    """Stop retrying when the next attempt would begin after the deadline."""
    import tenacity

    class _Deadline(tenacity.stop.stop_base):
        def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
            upcoming = retry_state.upcoming_sleep or 0.0
            return clock() + upcoming >= deadline

    return _Deadline()
