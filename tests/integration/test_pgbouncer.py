"""Behind a transaction pooler, with a real PgBouncer (transaction mode, a pool of one server
connection): nothing the migration sets reaches the application's pooled sessions, the direct
route takes the whole run around the pooler, and a pooled migration connection is said once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.integration.test_ddl_lock_timeout import one_alter_pending
from tests.support.databases import PgDatabase
from tests.support.pgbouncer import Bouncer
from tests.support.processes import Launcher

pytestmark = pytest.mark.pgbouncer


@pytest.fixture
def bouncer(pg_db: PgDatabase) -> Iterator[Bouncer]:
    """A PgBouncer in front of the test database's server."""
    info = pg_db.info
    with Bouncer(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432)) as made:
        yield made


def pooled(pg_db: PgDatabase, bouncer: Bouncer) -> dict[str, Any]:
    """The test database as a Django project behind a transaction pooler configures it."""
    return pg_db.django(
        HOST="127.0.0.1",
        PORT=str(bouncer.port),
        DISABLE_SERVER_SIDE_CURSORS=True,
        OPTIONS={"prepare_threshold": None},
    )


def direct_url(pg_db: PgDatabase) -> str:
    """A direct URL of the test database."""
    info = pg_db.info
    return f"postgresql://{info.get('user', 'postgres')}@{info.get('host')}:{info.get('port')}/{pg_db.name}"


def server_defaults(bouncer: Bouncer, database: str) -> tuple[str, str]:
    """lock_timeout and client_connection_check_interval as a pooled client sees them."""
    with bouncer.connect(database) as conn:
        lock = conn.execute("SHOW lock_timeout").fetchone()
        check = conn.execute("SHOW client_connection_check_interval").fetchone()
    assert lock is not None
    assert check is not None
    return str(lock[0]), str(check[0])


def test_nothing_the_migration_sets_reaches_the_pooled_sessions(
    launcher: Launcher, pg_db: PgDatabase, bouncer: Bouncer
) -> None:
    """migrate through the pooler with a DDL lock timeout (the lock on a direct URL): the run
    succeeds, says once that its migration connection is pooled, and afterwards a pooled client
    sees the server's defaults, not the migration's settings."""
    env = launcher.env(
        {"default": pooled(pg_db, bouncer)},
        ENTRYPOINT_LOCK_DATABASE_URL=direct_url(pg_db),
        ENTRYPOINT_DDL_LOCK_TIMEOUT="200ms",
    )
    proc = launcher.run(["migrate"], env)
    assert proc.popen.returncode == 0, proc.stderr()[-2000:]
    warnings = [e for e in proc.events() if e["event"] == "pooler_detected"]
    assert len(warnings) == 1
    assert warnings[0]["level"] == "warning"
    assert warnings[0]["reason"].startswith("the server sees it come from port ")
    assert "ENTRYPOINT_DIRECT_DATABASE_URL" in warnings[0]["fix"]
    assert server_defaults(bouncer, pg_db.name) == ("0", "0")


def test_the_direct_route_takes_the_whole_run_around_the_pooler(
    launcher: Launcher, pg_db: PgDatabase, bouncer: Bouncer
) -> None:
    """With ENTRYPOINT_DIRECT_DATABASE_URL the lock, the migrations and the audit trail run on
    direct backends: the pooler never sees a session of the run, nothing is said about a
    pooler, and the pooled sessions keep the server's defaults."""
    env = launcher.env(
        {"default": pooled(pg_db, bouncer)},
        ENTRYPOINT_DIRECT_DATABASE_URL=direct_url(pg_db),
        ENTRYPOINT_DDL_LOCK_TIMEOUT="200ms",
        TESTPROJ_SLOW_SECONDS="2",
    )
    proc = launcher.start(["migrate"], env)
    run = str(proc.wait_for_event("starting")["run"])
    proc.wait_for_event("migration_started", migration="0003_slow")
    seen = pg_db.query(
        "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE %s",
        (f"django-entrypoint run={run} %",),
    )
    assert len(seen) == 2  # the lock's session and the migration's, both on the server
    clients = [c.get("application_name", "") for c in bouncer.admin("SHOW CLIENTS")]
    assert not [name for name in clients if name.startswith(f"django-entrypoint run={run}")]
    assert proc.wait(60) == 0, proc.stderr()[-2000:]
    assert [e for e in proc.events() if e["event"] == "pooler_detected"] == []
    assert server_defaults(bouncer, pg_db.name) == ("0", "0")
    recorded = pg_db.query("SELECT status FROM entrypoint_migration_run WHERE id = %s", (run,))
    assert recorded == [("succeeded",)]


def test_on_the_direct_route_the_ddl_lock_timeout_still_applies(
    launcher: Launcher, pg_db: PgDatabase, bouncer: Bouncer
) -> None:
    """A transaction holds a lock on the table the pending ALTER needs: on the direct route the
    migration's statement gives up after lock_timeout (exit 70 naming it) instead of waiting."""
    one_alter_pending(launcher, pg_db.django())
    env = launcher.env(
        {"default": pooled(pg_db, bouncer)},
        ENTRYPOINT_DIRECT_DATABASE_URL=direct_url(pg_db),
        ENTRYPOINT_DDL_LOCK_TIMEOUT="200ms",
    )
    with psycopg.connect(**pg_db.info) as blocker:
        blocker.execute("SELECT count(*) FROM orders_order")  # holds ACCESS SHARE until commit
        started = time.monotonic()
        proc = launcher.run(["migrate"], env)
        blocker.rollback()
    assert proc.popen.returncode == 70
    assert time.monotonic() - started < 20
    [line] = proc.error_lines()
    assert "orders.0003_order_note failed on database 'default'" in line
    assert "lock timeout" in line


def test_a_direct_route_for_several_postgresql_aliases_is_refused(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """One URL names one database: with two PostgreSQL aliases selected the run stops before
    connecting, exit 64, saying how to go on."""
    env = launcher.env(
        {"default": pg_db.django(), "other": pg_db.django()},
        ENTRYPOINT_DATABASES="default,other",
        ENTRYPOINT_DIRECT_DATABASE_URL=direct_url(pg_db),
    )
    proc = launcher.run(["migrate"], env)
    assert proc.popen.returncode == 64
    assert proc.error_lines() == [
        "django-entrypoint: error: ENTRYPOINT_DIRECT_DATABASE_URL names one PostgreSQL database, "
        "and this run acts on 2 PostgreSQL aliases (default, other); run one alias at a time "
        "with --database ALIAS"
    ]
