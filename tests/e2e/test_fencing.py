"""Fencing, with real servers, real processes and real faults: a holder that loses its lock
stops within a second, a new holder ends (or waits out) the sessions of a run left running, and
every fault of the table leaves the database as one clean run would.

Every case asserts the end state from the database itself: each migration recorded once,
``manage.py migrate --check`` clean, no audit row left ``running``, the statuses true.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from tests.support.databases import PgDatabase
from tests.support.paths import TESTPROJ
from tests.support.pgcluster import Cluster, find_bindir, free_port
from tests.support.processes import ERROR_PREFIX, Launcher, Proc

RUNS = "SELECT id, status, error FROM entrypoint_migration_run ORDER BY seq"


def runs(pg: PgDatabase) -> list[tuple[str, str, str | None]]:
    """(id, status, error) of every recorded run, oldest first."""
    return [(i, s, e) for i, s, e in pg.query(RUNS)]


def run_id(proc: Proc) -> str:
    """The run id a process logged."""
    return str(proc.wait_for_event("starting")["run"])


def sessions_of(pg: PgDatabase, run: str, role: str | None = None) -> list[int]:
    """Backend pids whose application_name names ``run`` (and ``role``: migrate)."""
    pattern = f"django-entrypoint run={run} {role + ' ' if role else ''}%"
    rows = pg.query(
        "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s ORDER BY pid", (pattern,)
    )
    return [pid for (pid,) in rows]


def lock_session(pg: PgDatabase, run: str) -> int:
    """The backend of ``run`` that holds the advisory lock."""
    rows = pg.query(
        "SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE %s",
        (f"django-entrypoint run={run} pid=%",),
    )
    assert len(rows) == 1, rows
    return int(rows[0][0])


def wait_for(condition: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something true; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.02)
    msg = f"{what} not met within {timeout}s"
    raise AssertionError(msg)


def assert_clean(launcher: Launcher, pg: PgDatabase, env: dict[str, str]) -> None:
    """The end state of one clean run: every migration recorded once, ``migrate --check``
    clean, no run left ``running``."""
    rows = pg.query("SELECT app, name FROM django_migrations")
    assert len(rows) == len(set(rows)), "a migration was recorded more than once"
    check = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--check", "--noinput"],
        cwd=TESTPROJ,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert [r for r in runs(pg) if r[1] == "running"] == []


def end_session(pg: PgDatabase, pid: int) -> None:
    """``pg_terminate_backend`` from outside, as a DBA's script or a reaper does."""
    assert pg.query("SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]


# -- the holder loses its lock ---------------------------------------------------------------


def test_a_holder_whose_lock_session_is_ended_stops_within_a_second(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """The lock session of a holder inside a slow atomic migration is terminated from outside:
    the holder cancels the statement, rolls the migration back, records its run interrupted
    with the reason and exits 75 within a second; the next replica applies it once."""
    env = launcher.env({"default": pg_db.django()}, TESTPROJ_SLOW_SECONDS="8")
    holder = launcher.start(["migrate"], env)
    run = run_id(holder)
    holder.wait_for_event("migration_started", migration="0003_slow")
    time.sleep(0.3)  # let pg_sleep start on the server
    ended = time.monotonic()
    end_session(pg_db, lock_session(pg_db, run))
    assert holder.wait(10) == 75
    assert time.monotonic() - ended < 1.0
    message = (
        "the migration lock on database 'default' was lost (the lock connection failed: "
        "terminating connection due to administrator command) while applying "
        "inventory.0003_slow; its transaction was rolled back; no further migration was "
        "started, and the next run goes on from there"
    )
    assert holder.error_lines() == [ERROR_PREFIX + message]
    lost = holder.wait_for_event("lock_lost")
    assert lost["level"] == "error"
    assert lost["run"] == run
    assert ("inventory", "0003_slow") not in pg_db.query("SELECT app, name FROM django_migrations")
    assert runs(pg_db) == [(run, "interrupted", message)]
    # Nothing of the cancelled statement is left on the server.
    assert sessions_of(pg_db, run) == []

    follower = launcher.run(["migrate"], launcher.env({"default": pg_db.django()}))
    assert follower.popen.returncode == 0, follower.stderr()
    assert [status for _, status, _ in runs(pg_db)] == ["interrupted", "succeeded"]
    assert_clean(launcher, pg_db, env)


def test_every_connection_of_a_run_names_it(launcher: Launcher, pg_db: PgDatabase) -> None:
    """Both the lock connection and Django's migration connection carry the run id in their
    application_name, which is how a later holder finds them."""
    env = launcher.env({"default": pg_db.django()}, TESTPROJ_SLOW_SECONDS="3")
    holder = launcher.start(["migrate"], env)
    run = run_id(holder)
    holder.wait_for_event("migration_started", migration="0003_slow")
    names = pg_db.query(
        "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE %s "
        "ORDER BY application_name",
        (f"django-entrypoint run={run} %",),
    )
    pid = holder.pid
    words = [name.split(" host=")[0] for (name,) in names]
    assert words == [
        f"django-entrypoint run={run} migrate pid={pid}",
        f"django-entrypoint run={run} pid={pid}",
    ]
    assert holder.wait(30) == 0


# -- a new holder fences an old run ------------------------------------------------------------


def _fake_running_run(pg: PgDatabase, run: str) -> None:
    """An audit row ``running`` for ``run``, as a holder that lost its lock leaves it."""
    pg.query(
        "INSERT INTO entrypoint_migration_run (id, db_alias, seq, kind, status, started_at, "
        "planned, applied, current_migration, current_atomic) "
        "SELECT %s, 'default', COALESCE(MAX(seq), 0) + 1, 'migrate', 'running', now(), '[]', "
        "'[]', 'inventory.0003_slow', 1 FROM entrypoint_migration_run",
        (run,),
    )


@pytest.fixture
def migrated(launcher: Launcher, pg_db: PgDatabase) -> dict[str, str]:
    """The environment of the test project, migrated once (the audit table exists)."""
    env = launcher.env({"default": pg_db.django()})
    assert launcher.run(["migrate"], env).popen.returncode == 0
    return env


def test_a_new_holder_ends_the_sessions_of_a_run_left_running(
    launcher: Launcher, pg_db: PgDatabase, migrated: dict[str, str]
) -> None:
    """A run recorded running still has a session open (idle in a transaction, as a holder
    cut off from its lock would): the next holder terminates it before reaping the row, and
    says so."""
    old = "0ldrun0000ab"
    _fake_running_run(pg_db, old)
    stale = psycopg.connect(**pg_db.info, application_name=f"django-entrypoint run={old} migrate")
    stale.execute("SELECT 1")  # a transaction left open
    follower = launcher.run(["migrate"], migrated)
    assert follower.popen.returncode == 0, follower.stderr()
    ended = follower.wait_for_event("old_run_session_ended")
    assert ended["old_run"] == old
    assert ended["session"].startswith(f"backend pid {stale.info.backend_pid} ")
    with pytest.raises(psycopg.OperationalError):
        stale.execute("SELECT 1")
    reaped = [r for r in runs(pg_db) if r[0] == old]
    assert reaped == [
        (
            old,
            "interrupted",
            f"it lost the migration lock and still had 1 session(s) on the server, ended by "
            f"run {run_id(follower)}",
        )
    ]
    assert_clean(launcher, pg_db, migrated)


@pytest.fixture
def roles(pg_db: PgDatabase) -> Iterator[tuple[str, str]]:
    """Two login roles without superuser: the first owns the test database."""
    made = (f"ep_owner_{uuid.uuid4().hex[:8]}", f"ep_other_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(pg_db.server, autocommit=True) as conn:
        for role in made:
            conn.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER')
        conn.execute(f'ALTER DATABASE "{pg_db.name}" OWNER TO "{made[0]}"')
    yield made
    with pg_db.connect() as conn:
        conn.execute(f'REASSIGN OWNED BY "{made[0]}" TO CURRENT_USER')
        conn.execute(f'DROP OWNED BY "{made[0]}"')
    with psycopg.connect(pg_db.server, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{pg_db.name}" OWNER TO CURRENT_USER')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
            (made[1],),
        )
        for role in made:
            conn.execute(f'DROP ROLE "{role}"')


def test_without_the_privilege_to_end_it_the_new_holder_waits_then_times_out(
    launcher: Launcher, pg_db: PgDatabase, roles: tuple[str, str]
) -> None:
    """The old run's session belongs to another role that this one may not signal: the new
    holder waits, logging the session, and after ENTRYPOINT_LOCK_TIMEOUT exits 75 naming the
    session and the fix; once that session ends, the next run goes on."""
    owner, other = roles
    env = launcher.env({"default": pg_db.django(USER=owner)})
    assert launcher.run(["migrate"], env).popen.returncode == 0
    old = "0ldrun0000cd"
    _fake_running_run(pg_db, old)
    stale = psycopg.connect(
        **{**pg_db.info, "user": other}, application_name=f"django-entrypoint run={old} migrate"
    )
    stale.execute("SELECT 1")
    pid = stale.info.backend_pid
    waiting = launcher.run(["migrate"], {**env, "ENTRYPOINT_LOCK_TIMEOUT": "1.5"})
    assert waiting.popen.returncode == 75
    event = waiting.wait_for_event("old_run_waiting")
    # The server's own words, which differ between versions ("must be a member of the role
    # whose process is being terminated ...", "permission denied to terminate process").
    reason = event["reason"]
    assert "terminat" in reason
    # Without pg_read_all_stats another role's session shows no state.
    assert event["session"] == f"backend pid {pid} 'django-entrypoint run={old} migrate'"
    assert waiting.error_lines() == [
        f"{ERROR_PREFIX}run {old}, recorded as running on database 'default', still has a "
        f"session on the server after 1.5s and it could not be ended ({reason}): backend pid "
        f"{pid} 'django-entrypoint run={old} migrate'; end it with "
        f"SELECT pg_terminate_backend({pid}) as its role or a superuser, or GRANT "
        "pg_signal_backend to the migrating role, or raise ENTRYPOINT_LOCK_TIMEOUT"
    ]
    assert [r[1] for r in runs(pg_db) if r[0] == old] == ["running"]

    going_on = launcher.start(["migrate"], env)
    going_on.wait_for_event("old_run_waiting")
    stale.close()
    assert going_on.wait(30) == 0, going_on.stderr()
    reaped = [r for r in runs(pg_db) if r[0] == old]
    assert reaped[0][1] == "interrupted"
    assert_clean(launcher, pg_db, env)


# -- the fault table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One fault of the table: how it is done to a holder inside a slow migration, and what
    the holder's exit and recorded status then are."""

    name: str
    inflict: Callable[[Proc, PgDatabase, str, Any], None]
    exit_code: int
    status: str


def _terminate_lock(proc: Proc, pg: PgDatabase, run: str, cluster: Any) -> None:
    end_session(pg, lock_session(pg, run))


def _terminate_migration(proc: Proc, pg: PgDatabase, run: str, cluster: Any) -> None:
    [pid] = sessions_of(pg, run, "migrate")
    end_session(pg, pid)


def _sigkill(proc: Proc, pg: PgDatabase, run: str, cluster: Any) -> None:
    os.killpg(proc.pid, signal.SIGKILL)


def _sigterm(proc: Proc, pg: PgDatabase, run: str, cluster: Any) -> None:
    proc.popen.send_signal(signal.SIGTERM)


def _restart(proc: Proc, pg: PgDatabase, run: str, cluster: Any) -> None:
    cluster.restart()


FAULTS = [
    Fault("lock session terminated", _terminate_lock, 75, "interrupted"),
    Fault("migration session terminated", _terminate_migration, 70, "failed"),
    Fault("holder SIGKILLed", _sigkill, -9, "interrupted"),
    Fault("holder SIGTERMed", _sigterm, 143, "interrupted"),
    Fault("server restarted", _restart, 75, "interrupted"),
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A throw-away PostgreSQL cluster of this module's own, which a test may restart."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("needs initdb/pg_ctl (PATH, /usr/lib/postgresql or pgserver)")
    made = Cluster(bindir, free_port())
    made.start()
    try:
        yield made
    finally:
        made.destroy()


def _database(cluster: Cluster) -> PgDatabase:
    name = f"ep_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PgDatabase(cluster.url, name)


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name for fault in FAULTS])
def test_a_fault_inside_a_migration_leaves_one_clean_run(
    launcher: Launcher, cluster: Cluster, fault: Fault
) -> None:
    """A fault inside a slow atomic migration: the holder exits as the table says, its run is
    recorded as the table says (reaped by the next run when the holder could not write it),
    and the next replica leaves the database exactly as one clean run would."""
    pg = _database(cluster)
    env = launcher.env({"default": pg.django()}, TESTPROJ_SLOW_SECONDS="20")
    holder = launcher.start(["migrate"], env)
    run = run_id(holder)
    holder.wait_for_event("migration_started", migration="0003_slow")
    wait_for(
        lambda: pg.query(
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'SELECT pg_sleep%%'"
        ),
        what="the slow statement on the server",
    )
    fault.inflict(holder, pg, run, cluster)
    assert holder.wait(15) == fault.exit_code, holder.stderr()[-2000:]
    follower = launcher.run(["migrate"], launcher.env({"default": pg.django()}))
    assert follower.popen.returncode == 0, follower.stderr()[-2000:]
    recorded = {i: s for i, s, _ in runs(pg)}
    assert recorded[run] == fault.status
    assert recorded[run_id(follower)] == "succeeded"
    assert_clean(launcher, pg, env)


def test_a_holder_sigkilled_while_committing_leaves_one_clean_run(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """SIGKILL while the server runs the COMMIT of a migration (a deferred trigger makes it
    slow): whether that commit lands or not, the next replica leaves one clean run."""
    databases = {"default": pg_db.django()}
    env = launcher.env(databases, TESTPROJ_EXTRA_APPS="slowcommit", TESTPROJ_COMMIT_SECONDS="20")
    holder = launcher.start(["migrate"], env)
    run = run_id(holder)
    holder.wait_for_event("migration_started", migration="0002_commit_slowly")
    wait_for(
        lambda: pg_db.query(
            "SELECT 1 FROM pg_stat_activity WHERE application_name LIKE %s AND query = 'COMMIT' "
            "AND state = 'active'",
            (f"django-entrypoint run={run} migrate %",),
        ),
        what="the COMMIT on the server",
    )
    os.killpg(holder.pid, signal.SIGKILL)
    assert holder.wait(10) == -9
    follower_env = launcher.env(databases, TESTPROJ_EXTRA_APPS="slowcommit")
    follower = launcher.run(["migrate"], follower_env)
    assert follower.popen.returncode == 0, follower.stderr()[-2000:]
    recorded = {i: s for i, s, _ in runs(pg_db)}
    assert recorded[run] == "interrupted"
    assert pg_db.query("SELECT count(*) FROM slowcommit_marker") == [(1,)]
    assert_clean(launcher, pg_db, follower_env)


# -- a network partition -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.netns
@pytest.mark.timeout(300)
def test_a_holder_cut_off_mid_migration_commits_nothing_after_another_took_over(
    launcher: Launcher,
) -> None:
    """The holder runs in a network namespace of its own; its link to the server is cut in the
    middle of a migration. The server frees its lock when keepalives give up, a second replica
    fences the old run's sessions and finishes; when the link comes back the old holder
    commits nothing and exits 75. Every migration is recorded once and the schema is whole."""
    from tests.support.netns import Namespace

    bindir = find_bindir()
    assert bindir is not None, "needs initdb/pg_ctl (PATH, /usr/lib/postgresql or pgserver)"
    with Namespace() as ns:
        server = Cluster(
            bindir, free_port(), listen=f"127.0.0.1,{ns.host_address}", trust=ns.network
        )
        server.start()
        try:
            pg = _database(server)
            far = {"default": pg.django(HOST=ns.host_address)}
            holder = launcher.start(
                ["migrate"], launcher.env(far, TESTPROJ_SLOW_SECONDS="90"), prefix=ns.prefix
            )
            old = run_id(holder)
            holder.wait_for_event("migration_started", migration="0003_slow")
            wait_for(lambda: sessions_of(pg, old, "migrate"), what="the holder's migration")
            ns.cut()
            cut = time.monotonic()
            # The holder's own checks fail within the lock connection's I/O timeout.
            holder.wait_for_event("lock_lost", timeout=30)
            assert time.monotonic() - cut < 15
            follower = launcher.run(
                ["migrate"], launcher.env({"default": pg.django()}), timeout=120
            )
            assert follower.popen.returncode == 0, follower.stderr()[-2000:]
            ended = follower.wait_for_event("old_run_session_ended")
            assert ended["old_run"] == old
            ns.restore()
            assert holder.wait(120) == 75, holder.stderr()[-2000:]
            recorded = {i: s for i, s, _ in runs(pg)}
            assert recorded == {old: "interrupted", run_id(follower): "succeeded"}
            assert_clean(launcher, pg, launcher.env({"default": pg.django()}))
            tables = {t for (t,) in pg.query("SELECT tablename FROM pg_tables")}
            assert {"inventory_product", "inventory_warehouse", "orders_order"} <= tables
        finally:
            server.destroy()


# -- MySQL/MariaDB -----------------------------------------------------------------------------


def _mysql_runs(db: Any) -> dict[str, str]:
    return dict(db.query("SELECT id, status FROM entrypoint_migration_run"))


def _mysql_clean(launcher: Launcher, db: Any, env: dict[str, str]) -> None:
    rows = db.query("SELECT app, name FROM django_migrations")
    assert len(rows) == len(set(rows)), "a migration was recorded more than once"
    check = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--check", "--noinput"],
        cwd=TESTPROJ,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "running" not in _mysql_runs(db).values()


@pytest.mark.parametrize(
    ("connection", "exit_code", "status"),
    [("lock", 75, "interrupted"), ("django", 70, "failed")],
    ids=["lock connection killed", "migration connection killed"],
)
def test_a_killed_connection_on_mariadb_leaves_one_clean_run(
    launcher: Launcher, mysql_db: Any, connection: str, exit_code: int, status: str
) -> None:
    """``KILL`` of the holder's lock connection (it stops, 75, within a second) or of its
    migration connection (the migration fails, 70) inside a slow migration. MariaDB cannot roll
    back DDL, so a run stopped inside a migration makes the next one stop at it (70) until one
    run accepts it; a migration that failed before it changed anything is simply run again.
    Either way the database ends as one clean run leaves it."""
    from entrypoint.locks.mysql import run_marker

    env = launcher.env({"default": mysql_db.django()}, TESTPROJ_SLOW_SECONDS="20")
    holder = launcher.start(["migrate"], env)
    run = run_id(holder)
    holder.wait_for_event("migration_started", migration="0003_slow")
    marker = run_marker(run, "default", connection)
    [(ident,)] = wait_for(lambda: mysql_db.query("SELECT IS_USED_LOCK(%s)", (marker,)))
    wait_for(
        lambda: mysql_db.query(
            "SELECT 1 FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%%'"
        ),
        what="the slow statement",
    )
    killed = time.monotonic()
    mysql_db.query(f"KILL {int(ident)}")
    assert holder.wait(15) == exit_code, holder.stderr()[-2000:]
    if connection == "lock":
        assert time.monotonic() - killed < 1.5
        holder.wait_for_event("lock_lost")
    again = launcher.env({"default": mysql_db.django()})
    if connection == "lock":
        gated = launcher.run(["migrate"], again)
        assert gated.popen.returncode == 70
        assert gated.error_lines()[0].startswith(
            f"{ERROR_PREFIX}run {run} was interrupted while applying inventory.0003_slow"
        )
        again["ENTRYPOINT_ACCEPT_INTERRUPTED"] = "1"
    follower = launcher.run(["migrate"], again)
    assert follower.popen.returncode == 0, follower.stderr()[-2000:]
    recorded = _mysql_runs(mysql_db)
    assert recorded[run] == status
    assert recorded[run_id(follower)] == "succeeded"
    _mysql_clean(launcher, mysql_db, env)


def test_a_new_holder_kills_the_connections_of_a_run_left_running_on_mariadb(
    launcher: Launcher, mysql_db: Any
) -> None:
    """A run recorded running still holds its marker on a live connection: the next holder
    kills that connection before reaping the row."""
    from entrypoint.locks.mysql import run_marker

    env = launcher.env({"default": mysql_db.django()})
    assert launcher.run(["migrate"], env).popen.returncode == 0
    old = "0ldrun0000ef"
    mysql_db.query(
        "INSERT INTO entrypoint_migration_run (id, db_alias, seq, kind, status, started_at, "
        "planned, applied, current_migration, current_atomic) SELECT %s, 'default', "
        "MAX(seq) + 1, 'migrate', 'running', UTC_TIMESTAMP(6), '[]', '[]', "
        "'inventory.0003_slow', 0 FROM entrypoint_migration_run",
        (old,),
    )
    stale = mysql_db.connect()
    cursor = stale.cursor()
    cursor.execute(
        "SELECT GET_LOCK(%s, 0), CONNECTION_ID()", (run_marker(old, "default", "django"),)
    )
    taken, ident = cursor.fetchone()
    assert taken == 1
    follower = launcher.run(["migrate"], {**env, "ENTRYPOINT_ACCEPT_INTERRUPTED": "1"})
    assert follower.popen.returncode == 0, follower.stderr()[-2000:]
    ended = follower.wait_for_event("old_run_session_ended")
    assert ended["session"].startswith(f"connection {ident} ")
    assert mysql_db.query(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s", (ident,)
    ) == [(0,)]
    assert _mysql_runs(mysql_db)[old] == "interrupted"
