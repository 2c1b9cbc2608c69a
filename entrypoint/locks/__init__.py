"""Migration locks, one module per backend behind the small interface of :mod:`.base`.

The backends are imported when a lock is made: the fast path reads a SQLite lock file's state
through :mod:`.sqlite` without paying for the others (nor for :mod:`.base`'s machinery).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from entrypoint.db.advisory import lock_key
from entrypoint.errors import ConfigError
from entrypoint.light import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from entrypoint.config import Settings
    from entrypoint.db.targets import Target
    from entrypoint.locks.base import Backend, Session

__all__ = [
    "NoLock",
    "Polling",
    "Sessionless",
    "configured_lock",
    "listener",
    "lock_key",
    "lock_of_entry",
    "make_lock",
]

SUPPORTED = ("postgresql", "sqlite", "mysql")


class Sessionless:
    """What a lock that no server session holds answers (none, or a lock file): it cannot be
    lost, nothing arrives on it, and there is no session of an earlier run to find or end."""

    def verify(self) -> None:
        """Nothing to lose while this process lives."""

    def quiet(self) -> bool:
        """Nothing can arrive."""
        return True

    def run_sessions(self, run_id: str, alias: str) -> list[Session]:
        """No server, no sessions."""
        return []

    def end_session(self, session: Session) -> str | None:
        """Nothing to end."""
        return None


class NoLock(Sessionless):
    """No lock: ``ENTRYPOINT_LOCK=off``, or a database only this process can see."""

    losable = False
    held = False

    def __init__(self, description: str) -> None:
        self.description = description

    def connect(self) -> None:
        """Nothing to open."""

    def try_acquire(self) -> bool:
        """Always free."""
        return True

    def holder(self) -> str | None:
        """Nobody."""
        return None

    def wait_for_release(self, seconds: float) -> None:
        """Never called: the lock is always free."""

    def announce(self) -> None:
        """Nobody to tell."""

    def release(self) -> None:
        """Nothing to release."""

    def close(self) -> None:
        """Nothing to close."""

    def read(self, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """No connection to read through."""
        return []


class Polling(NoLock):
    """What a run in wait mode listens with where the backend has no notices: it sleeps, and
    polls again when the sleep ends."""

    def wait_for_release(self, seconds: float) -> None:
        """Sleep ``seconds`` (a signal ends it at once)."""
        if seconds > 0:
            time.sleep(seconds)


def listener(target: Target, settings: Settings, run_id: str) -> Backend:
    """What a run in wait mode hears the holder's announcements with; it never takes the lock.

    PostgreSQL: a connection of its own (the lock's direct URL when set, as LISTEN needs a
    session of its own too) that LISTENs for each committed migration and for releases of the
    lock, and tells who holds it. Elsewhere: :class:`Polling`.
    """
    if target.vendor != "postgresql":
        return Polling(target.display)
    from entrypoint.db.params import postgres_params
    from entrypoint.db.targets import application_name
    from entrypoint.locks.postgres import PostgresLock

    url = settings.lock_database_url
    return PostgresLock(
        {"conninfo": url} if url else postgres_params(target.alias),
        key_name=settings.lock_key or target.name,
        application_name=application_name(run_id, "wait"),
        description=f"database {target.alias!r} ({target.display})",
        hear_migrations=True,
    )


def check_supported(target: Target, mode: str) -> None:
    """Refuse a backend without a lock unless the lock is turned off explicitly."""
    if mode == "off" or target.vendor in SUPPORTED:
        return
    msg = (
        f"database {target.alias!r} uses {target.engine}, which has no migration lock here; "
        "use PostgreSQL, MySQL/MariaDB or SQLite, or set ENTRYPOINT_LOCK=off if only one "
        "process migrates"
    )
    raise ConfigError(msg)


def make_lock(
    target: Target,
    *,
    mode: str,
    key_name: str | None,
    lock_url: str | None,
    run_id: str,
    params: dict[str, Any] | None = None,
) -> Backend:
    """The lock for one target, as configured. ``params`` are the driver's connection
    parameters when Django is not set up to give them (:func:`lock_of_entry`)."""
    from entrypoint.db.targets import application_name

    check_supported(target, mode)
    if mode == "off":
        return NoLock(target.display)
    if target.vendor == "sqlite":
        from entrypoint.locks.sqlite import FileLock

        if not target.name or target.name == ":memory:" or "mode=memory" in target.name:
            return NoLock(target.display)
        return FileLock(target.name)
    if target.vendor == "mysql":
        from entrypoint.db.params import mysql_params
        from entrypoint.locks.mysql import MySQLLock, lock_name, run_marker

        # ENTRYPOINT_LOCK_DATABASE_URL is a PostgreSQL URL; MySQL locks use the alias's settings.
        return MySQLLock(
            params if params is not None else mysql_params(target.alias),
            lock_name(target.name, key_name),
            description=f"database {target.alias!r} ({target.display})",
            marker=run_marker(run_id, target.alias, "lock"),
        )
    from entrypoint.locks.postgres import PostgresLock

    if lock_url:
        params = {"conninfo": lock_url}
    elif params is None:
        from entrypoint.db.params import postgres_params

        params = postgres_params(target.alias)
    return PostgresLock(
        params,
        key_name=key_name or target.name,
        application_name=application_name(run_id),
        description=f"database {target.alias!r} ({target.display})",
    )


def lock_of_entry(
    alias: str, entry: Mapping[str, Any], vendor: str, settings: Settings, run_id: str
) -> Backend:
    """The lock :func:`configured_lock` gives the target Django resolves from this
    ``DATABASES`` entry, built without Django (a light waiter's: only its connection opens)."""
    from entrypoint.db.params import mysql_params_of, postgres_params_of
    from entrypoint.db.targets import Target, describe

    target = Target(
        alias=alias,
        vendor=vendor,
        engine=str(entry.get("ENGINE") or ""),
        name=str(entry.get("NAME") or ""),
        display=describe(vendor, dict(entry)),
    )
    params = mysql_params_of(entry) if vendor == "mysql" else postgres_params_of(entry)
    return configured_lock(target, settings, run_id, params=params)


def configured_lock(
    target: Target, settings: Settings, run_id: str, params: dict[str, Any] | None = None
) -> Backend:
    """The lock for one target as the run's settings configure it (ENTRYPOINT_LOCK_*);
    ``params``: its connection's, when known already (else read from Django's settings)."""
    return make_lock(
        target,
        mode=settings.lock_mode,
        key_name=settings.lock_key,
        lock_url=settings.lock_database_url,
        run_id=run_id,
        params=params,
    )
