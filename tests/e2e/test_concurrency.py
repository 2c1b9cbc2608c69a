"""Replicas racing on one fresh database: exactly one migrates, all succeed.

Exactly-once is asserted from the database itself (``django_migrations``), never from logs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import Launcher, migrations_on_disk, sqlite_databases

REPLICAS = 8
OWN_APPS = ("inventory", "orders")


def assert_exactly_once(rows: list[tuple[str, str]], expected_total: int) -> None:
    """Every migration recorded once, none twice, none missing."""
    assert len(rows) == len(set(rows)), "a migration was recorded more than once"
    assert len(rows) == expected_total
    assert migrations_on_disk(*OWN_APPS) <= set(rows)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(3))
def test_eight_replicas_on_fresh_postgres(launcher: Launcher, pg_factory, trial: int) -> None:  # type: ignore[no-untyped-def]
    """8 replicas start at once on a fresh database: all exit 0, each migration applied once.

    The plan includes a CREATE INDEX CONCURRENTLY, which would wait forever on a replica parked
    in a blocking pg_advisory_lock; here the waiters hold no snapshot, so it completes.
    """
    pg = pg_factory()
    env = launcher.env({"default": pg.django()}, TESTPROJ_SLOW_SECONDS="0.3")
    procs = [launcher.start(["migrate"], env) for _ in range(REPLICAS)]
    codes = [proc.wait(120) for proc in procs]
    assert codes == [0] * REPLICAS, [p.error_lines() for p in procs]
    rows = [(a, n) for a, n in pg.query("SELECT app, name FROM django_migrations")]
    reference = pg_factory()
    single = launcher.run(["migrate"], launcher.env({"default": reference.django()}))
    assert single.popen.returncode == 0
    total = reference.query("SELECT count(*) FROM django_migrations")[0][0]
    assert_exactly_once(rows, total)
    migrators = [p for p in procs if any(e["event"] == "migrated" for e in p.events())]
    assert len(migrators) == 1
    # The index made concurrently is valid (an interrupted build would leave it invalid).
    valid = pg.query(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = 'orders_order_created_idx'"
    )
    assert valid == [(True,)]


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(2))
def test_eight_replicas_on_fresh_sqlite(launcher: Launcher, tmp_path: Path, trial: int) -> None:
    """The same race on SQLite, serialised by the file lock beside the database."""
    databases = sqlite_databases(tmp_path, f"race{trial}.sqlite3")
    env = launcher.env(databases)
    procs = [launcher.start(["migrate"], env) for _ in range(REPLICAS)]
    codes = [proc.wait(120) for proc in procs]
    assert codes == [0] * REPLICAS, [p.error_lines() for p in procs]
    import sqlite3

    with sqlite3.connect(databases["default"]["NAME"]) as conn:
        rows = conn.execute("SELECT app, name FROM django_migrations").fetchall()
    reference = sqlite_databases(tmp_path, f"ref{trial}.sqlite3")
    assert launcher.run(["migrate"], launcher.env(reference)).popen.returncode == 0
    with sqlite3.connect(reference["default"]["NAME"]) as conn:
        total = conn.execute("SELECT count(*) FROM django_migrations").fetchone()[0]
    assert_exactly_once([(a, n) for a, n in rows], total)
