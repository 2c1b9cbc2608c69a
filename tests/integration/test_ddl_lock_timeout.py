"""ENTRYPOINT_DDL_LOCK_TIMEOUT and ENTRYPOINT_DDL_RETRIES against a real conflicting lock, on
PostgreSQL and MySQL/MariaDB."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.databases import PgDatabase
from tests.support.mysql import MySQLDatabase
from tests.support.paths import TESTPROJ
from tests.support.processes import Launcher

ORDER_NOTE = (
    "SELECT count(*) FROM django_migrations WHERE app = 'orders' AND name = '0003_order_note'"
)


def one_alter_pending(launcher: Launcher, database: dict[str, Any]) -> dict[str, str]:
    """Migrate everything, then take orders.0003 back so that one ALTER TABLE orders_order is
    pending; the environment of the project on that database."""
    env = launcher.env({"default": database})
    assert launcher.run(["migrate"], env).popen.returncode == 0
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "orders", "0002", "--noinput", "-v0"],
        cwd=TESTPROJ,
        env=env,
        check=True,
        timeout=60,
    )
    return env


@contextmanager
def mariadb_reader(db: MySQLDatabase) -> Iterator[Any]:
    """A transaction that has read orders_order, so it holds a metadata lock on the table until
    it ends; yields its cursor (COMMIT or ROLLBACK through it)."""
    blocker = db.connect()
    try:
        cursor = blocker.cursor()
        cursor.execute("START TRANSACTION")
        cursor.execute("SELECT count(*) FROM orders_order")
        yield cursor
    finally:
        blocker.close()


def test_a_migration_behind_a_long_transaction_times_out_retries_and_succeeds(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """A transaction holds a lock on the table: the migration's ALTER gives up after
    lock_timeout instead of queueing (and freezing the table's traffic), rolls back, is
    retried with back-off, and succeeds once the holder lets go; it is recorded once."""
    env = one_alter_pending(launcher, pg_db.django())
    with pg_db.connect() as blocker:
        blocker.autocommit = False
        blocker.execute("SELECT count(*) FROM orders_order")  # holds ACCESS SHARE until commit
        proc = launcher.start(
            ["migrate"],
            {**env, "ENTRYPOINT_DDL_LOCK_TIMEOUT": "200ms", "ENTRYPOINT_DDL_RETRIES": "20"},
        )
        retry = proc.wait_for_event("migration_retry", timeout=30)
        assert (retry["app"], retry["migration"], retry["attempt"]) == (
            "orders",
            "0003_order_note",
            1,
        )
        blocker.commit()
    assert proc.wait(60) == 0, proc.stderr()
    failed = [e for e in proc.events() if e["event"] == "migration_failed"]
    assert failed
    assert all(e["error"] == "OperationalError" for e in failed)
    assert pg_db.query(ORDER_NOTE) == [(1,)]
    assert pg_db.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders_order' AND column_name = 'note'"
    ) == [("note",)]


def test_without_retries_the_lock_timeout_fails_the_run(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """With no retries, the timed-out migration fails the run with 70 and the database error."""
    env = one_alter_pending(launcher, pg_db.django())
    with pg_db.connect() as blocker:
        blocker.autocommit = False
        blocker.execute("SELECT count(*) FROM orders_order")
        proc = launcher.run(["migrate"], {**env, "ENTRYPOINT_DDL_LOCK_TIMEOUT": "200ms"})
        blocker.rollback()
    assert proc.popen.returncode == 70
    assert proc.error_lines() == [
        "django-entrypoint: error: migration orders.0003_order_note failed on database 'default': "
        "LockNotAvailable: canceling statement due to lock timeout"
    ]


def test_on_mariadb_the_metadata_lock_wait_times_out_and_is_retried(
    launcher: Launcher, mysql_db: MySQLDatabase
) -> None:
    """On MySQL/MariaDB the timeout is lock_wait_timeout, the metadata lock an ALTER waits for
    behind an open transaction: the migration's first ALTER gives up, nothing of it was
    applied, so it is retried (not taken for half-applied) and succeeds once the holder ends."""
    env = one_alter_pending(launcher, mysql_db.django())
    with mariadb_reader(mysql_db) as cursor:
        proc = launcher.start(
            ["migrate"],
            {**env, "ENTRYPOINT_DDL_LOCK_TIMEOUT": "1s", "ENTRYPOINT_DDL_RETRIES": "20"},
        )
        retry = proc.wait_for_event("migration_retry", timeout=30)
        assert (retry["app"], retry["migration"], retry["attempt"]) == (
            "orders",
            "0003_order_note",
            1,
        )
        cursor.execute("COMMIT")
    assert proc.wait(60) == 0, proc.stderr()
    failed = [e for e in proc.events() if e["event"] == "migration_failed"]
    assert failed
    assert all(e["partial"] is False for e in failed)
    assert mysql_db.query(ORDER_NOTE) == [(1,)]


def test_on_mariadb_without_retries_the_timeout_fails_and_the_next_run_goes_on(
    launcher: Launcher, mysql_db: MySQLDatabase
) -> None:
    """Without retries the run fails with 70 and the server's error; since the ALTER that timed
    out changed nothing, the next run simply applies the migration."""
    env = one_alter_pending(launcher, mysql_db.django())
    with mariadb_reader(mysql_db) as cursor:
        proc = launcher.run(["migrate"], {**env, "ENTRYPOINT_DDL_LOCK_TIMEOUT": "1s"})
        cursor.execute("ROLLBACK")
    assert proc.popen.returncode == 70
    assert proc.error_lines() == [
        "django-entrypoint: error: migration orders.0003_order_note failed on database 'default': "
        "OperationalError: (1205, 'Lock wait timeout exceeded; try restarting transaction')"
    ]
    again = launcher.run(["migrate"], env)
    assert again.popen.returncode == 0, again.stderr()
    applied = [e["migration"] for e in again.events() if e["event"] == "migration_applied"]
    assert applied == ["0003_order_note"]
