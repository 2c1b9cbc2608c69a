"""Faults with real processes and real signals: a killed holder, a stopped waiter, a stopped
migration, and a database that starts late."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.support.databases import PgDatabase
from tests.support.pgcluster import Cluster, find_bindir, free_port, port_answers
from tests.support.processes import Launcher, migrations_on_disk


def own_rows(pg: PgDatabase) -> list[tuple[str, str]]:
    """django_migrations rows of the project's apps."""
    rows = pg.query("SELECT app, name FROM django_migrations WHERE app IN ('inventory', 'orders')")
    return [(a, n) for a, n in rows]


def test_sigkill_of_the_holder_lets_the_next_replica_finish(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """The holder dies by SIGKILL inside a migration: its session lock dies with it, the waiting
    replica takes over and applies everything exactly once."""
    slow = launcher.env({"default": pg_db.django()}, TESTPROJ_SLOW_SECONDS="60")
    holder = launcher.start(["migrate"], slow)
    holder.wait_for_event("migration_started", migration="0003_slow")
    waiter = launcher.start(["migrate"], launcher.env({"default": pg_db.django()}))
    waiter.wait_for_event("lock_waiting")
    os.killpg(holder.pid, signal.SIGKILL)
    assert waiter.wait(60) == 0, waiter.stderr()
    rows = own_rows(pg_db)
    assert len(rows) == len(set(rows))
    assert set(rows) == migrations_on_disk("inventory", "orders")


def test_sigterm_of_a_waiting_replica_exits_143_at_once(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """A replica waiting for the lock ends within a second of SIGTERM, with 143."""
    holder = launcher.start(
        ["migrate"], launcher.env({"default": pg_db.django()}, TESTPROJ_SLOW_SECONDS="60")
    )
    holder.wait_for_event("migration_started", migration="0003_slow")
    waiter = launcher.start(["migrate"], launcher.env({"default": pg_db.django()}))
    waiter.wait_for_event("lock_waiting")
    sent = time.monotonic()
    waiter.popen.send_signal(signal.SIGTERM)
    assert waiter.wait(5) == 143
    assert time.monotonic() - sent < 1.0
    assert (
        waiter.error_lines()[-1]
        == "django-entrypoint: error: stopped by SIGTERM before the app server started"
    )


def test_sigterm_during_a_migration_rolls_it_back_and_frees_the_lock(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """SIGTERM while a statement runs: it is cancelled, the atomic migration rolls back whole,
    the run exits 143 naming it, and the lock is free for the next replica at once."""
    env = launcher.env({"default": pg_db.django()}, TESTPROJ_SLOW_SECONDS="60")
    holder = launcher.start(["migrate"], env)
    holder.wait_for_event("migration_started", migration="0003_slow")
    time.sleep(0.3)  # let pg_sleep start on the server
    sent = time.monotonic()
    holder.popen.send_signal(signal.SIGTERM)
    assert holder.wait(5) == 143
    assert time.monotonic() - sent < 1.0
    assert holder.error_lines()[-1] == (
        "django-entrypoint: error: stopped by SIGTERM while applying inventory.0003_slow on "
        "'default'; its transaction was rolled back"
    )
    assert ("inventory", "0003_slow") not in own_rows(pg_db)
    # Nothing of the cancelled statement is left running on the server (in this database: the
    # tests of other files, on the other worker, sleep in theirs).
    active = pg_db.query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND state = 'active' AND query LIKE 'SELECT pg_sleep%%'"
    )
    assert active == [(0,)]
    follower = launcher.run(["migrate"], launcher.env({"default": pg_db.django()}))
    assert follower.popen.returncode == 0
    acquired = follower.wait_for_event("lock_acquired")
    assert acquired["waited"] < 0.5
    assert set(own_rows(pg_db)) == migrations_on_disk("inventory", "orders")


@pytest.mark.skipif(
    find_bindir() is None, reason="needs initdb/pg_ctl (PATH, /usr/lib/postgresql or pgserver)"
)
def test_a_database_started_late_is_seen_within_a_second(launcher: Launcher) -> None:
    """The entrypoint starts before the server; it proceeds within a second of the server
    accepting connections."""
    bindir = find_bindir()
    assert bindir is not None
    port = free_port()
    cluster = Cluster(bindir, port)
    try:
        entry = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "postgres",
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": str(port),
        }
        proc = launcher.start(
            ["wait"], launcher.env({"default": entry}, ENTRYPOINT_WAIT_TIMEOUT="60")
        )
        proc.wait_for_event("database_unavailable")
        cluster.start(wait=False)
        deadline = time.monotonic() + 30
        while not port_answers("127.0.0.1", port, timeout=0.05) and time.monotonic() < deadline:
            time.sleep(0.01)
        accepting = time.monotonic()
        assert proc.wait(30) == 0, proc.stderr()
        assert time.monotonic() - accepting < 1.0
    finally:
        cluster.destroy()
