"""Migration locks, one module per backend behind the small interface of :mod:`.base`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from entrypoint.db.params import mysql_params, postgres_params
from entrypoint.db.targets import Target, application_name
from entrypoint.errors import ConfigError
from entrypoint.locks.base import Backend, Lost, Session, Waiting, acquire
from entrypoint.locks.mysql import MySQLLock, lock_name, run_marker
from entrypoint.locks.sqlite import FileLock

if TYPE_CHECKING:
    from entrypoint.config import Settings

__all__ = [
    "Backend",
    "Lost",
    "NoLock",
    "Polling",
    "Session",
    "Waiting",
    "acquire",
    "application_name",
    "configured_lock",
    "listener",
    "lock_key",
    "make_lock",
]

SUPPORTED = ("postgresql", "sqlite", "mysql")


def lock_key(name: str) -> int:
    """The PostgreSQL advisory lock key of a lock name (see :mod:`.postgres`)."""
    # psycopg is imported only when a PostgreSQL lock is needed: its import costs a MySQL or
    # SQLite start about a tenth of a second.
    from entrypoint.locks import postgres

    return postgres.lock_key(name)


class NoLock:
    """No lock: ``ENTRYPOINT_LOCK=off``, or a database only this process can see."""

    losable = False

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

    def verify(self) -> None:
        """Nothing to lose."""

    def run_sessions(self, run_id: str, alias: str) -> list[Session]:
        """Without a lock, no session is looked for."""
        return []

    def end_session(self, session: Session) -> str | None:
        """Nothing to end."""
        return None


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
    target: Target, *, mode: str, key_name: str | None, lock_url: str | None, run_id: str
) -> Backend:
    """The lock for one target, as configured."""
    check_supported(target, mode)
    if mode == "off":
        return NoLock(target.display)
    if target.vendor == "sqlite":
        if not target.name or target.name == ":memory:" or "mode=memory" in target.name:
            return NoLock(target.display)
        return FileLock(target.name)
    if target.vendor == "mysql":
        # ENTRYPOINT_LOCK_DATABASE_URL is a PostgreSQL URL; MySQL locks use the alias's settings.
        return MySQLLock(
            mysql_params(target.alias),
            lock_name(target.name, key_name),
            description=f"database {target.alias!r} ({target.display})",
            marker=run_marker(run_id, target.alias, "lock"),
        )
    from entrypoint.locks.postgres import PostgresLock

    params = {"conninfo": lock_url} if lock_url else postgres_params(target.alias)
    return PostgresLock(
        params,
        key_name=key_name or target.name,
        application_name=application_name(run_id),
        description=f"database {target.alias!r} ({target.display})",
    )


def configured_lock(target: Target, settings: Settings, run_id: str) -> Backend:
    """The lock for one target as the run's settings configure it (ENTRYPOINT_LOCK_*)."""
    return make_lock(
        target,
        mode=settings.lock_mode,
        key_name=settings.lock_key,
        lock_url=settings.lock_database_url,
        run_id=run_id,
    )
