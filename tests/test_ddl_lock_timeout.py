"""ENTRYPOINT_DDL_LOCK_TIMEOUT and ENTRYPOINT_DDL_RETRIES against a real conflicting lock."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import TESTPROJ, Launcher, PgDatabase


def test_a_migration_behind_a_long_transaction_times_out_retries_and_succeeds(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """A transaction holds a lock on the table: the migration's ALTER gives up after
    lock_timeout instead of queueing (and freezing the table's traffic), rolls back, is
    retried with back-off, and succeeds once the holder lets go; it is recorded once."""
    env = launcher.env({"default": pg_db.django()})
    assert launcher.run(["migrate"], env).popen.returncode == 0
    # Take orders.0003 back so that one ALTER TABLE orders_order is pending.
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "orders", "0002", "--noinput", "-v0"],
        cwd=TESTPROJ, env=env, check=True, timeout=60,
    )  # fmt: skip
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
    rows = pg_db.query(
        "SELECT count(*) FROM django_migrations WHERE app = 'orders' AND name = '0003_order_note'"
    )
    assert rows == [(1,)]
    assert pg_db.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders_order' AND column_name = 'note'"
    ) == [("note",)]


def test_without_retries_the_lock_timeout_fails_the_run(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """With no retries, the timed-out migration fails the run with 70 and the database error."""
    env = launcher.env({"default": pg_db.django()})
    assert launcher.run(["migrate"], env).popen.returncode == 0
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "orders", "0002", "--noinput", "-v0"],
        cwd=TESTPROJ, env=env, check=True, timeout=60,
    )  # fmt: skip
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
