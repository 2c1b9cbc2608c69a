"""MySQL/MariaDB as a first-class backend, on a real server: the lock, the race of replicas,
faults with real signals, and bad inputs with their exact lines.

Exactly-once is asserted from ``django_migrations``, never from log text alone.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from entrypoint.locks.mysql import MAX_NAME, SLICE, MySQLLock, lock_name
from tests.support.mysql import MySQLDatabase, ThrowAwayMariaDB, find_mariadbd
from tests.support.pgcluster import free_port
from tests.support.processes import ERROR_PREFIX, SECRET, Launcher, migrations_on_disk, run_bad

APPS = ("inventory", "orders")


def own_rows(db: MySQLDatabase) -> list[tuple[str, str]]:
    """django_migrations rows of the project's own apps."""
    rows = db.query("SELECT app, name FROM django_migrations WHERE app IN ('inventory', 'orders')")
    return [(app, name) for app, name in rows]


def lock_params(db: MySQLDatabase) -> dict[str, Any]:
    """mysqlclient parameters of the test database, for a lock opened in this process."""
    params: dict[str, Any] = {
        "host": db.server.host,
        "port": db.server.port,
        "user": db.server.user,
        "database": db.name,
    }
    if db.server.password:
        params["password"] = db.server.password
    return params


# -- the lock name --------------------------------------------------------------------------------


def test_lock_name_is_readable_when_it_fits() -> None:
    """The lock is named after the database, and after ENTRYPOINT_LOCK_KEY too when set."""
    assert lock_name("shop") == "django-entrypoint:shop"
    assert lock_name("shop", "billing") == "django-entrypoint:shop:billing"


def test_lock_name_longer_than_64_characters_is_hashed() -> None:
    """A name past the server's 64-character limit becomes the prefix and a SHA-256 prefix."""
    name = lock_name("d" * 40, "k" * 40)
    assert len(name) == MAX_NAME
    assert name.startswith("django-entrypoint:")
    assert name != lock_name("d" * 40, "k" * 41)
    assert len(lock_name("x" * (MAX_NAME - len("django-entrypoint:")))) == MAX_NAME


# -- the lock on a real server --------------------------------------------------------------------


def test_lock_connection_has_keepalives_and_no_idle_timeout(mysql_db: MySQLDatabase) -> None:
    """The lock's session may idle through a long migration (wait_timeout at its maximum), and
    its TCP socket sends keepalives after 10 s of silence."""
    lock = MySQLLock(lock_params(mysql_db), lock_name(mysql_db.name), "test database")
    lock.connect()
    try:
        assert lock._query("SELECT @@session.wait_timeout") == (31536000,)
        sock = socket.socket(fileno=os.dup(lock.conn.fileno()))
        with sock:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 6
    finally:
        lock.close()


def test_a_slice_that_takes_the_lock_is_remembered(mysql_db: MySQLDatabase) -> None:
    """A waiter whose GET_LOCK slice takes the lock reports it at the next try, holds it once
    (one RELEASE_LOCK frees it) and names the holder meanwhile."""
    name = lock_name(mysql_db.name)
    first = MySQLLock(lock_params(mysql_db), name, "first")
    second = MySQLLock(lock_params(mysql_db), name, "second")
    first.connect()
    second.connect()
    try:
        assert first.try_acquire()
        assert not second.try_acquire()
        holder = second.holder()
        assert holder is not None
        assert holder.startswith(f"connection {first.conn.thread_id()} {mysql_db.server.user}@")
        threading.Timer(0.3, first.release).start()
        began = time.monotonic()
        second.wait_for_release(5)
        assert second.held
        assert time.monotonic() - began < 1.0  # taken at the release, not after the 5 s
        assert second.try_acquire()
        second.release()
        assert mysql_db.query("SELECT IS_FREE_LOCK(%s)", (name,)) == [(1,)]
    finally:
        first.close()
        second.close()


# -- the pipeline ---------------------------------------------------------------------------------


def test_migrate_on_a_fresh_mariadb_then_nothing_pending(
    launcher: Launcher, mysql_db: MySQLDatabase
) -> None:
    """A fresh database ends with every migration recorded once and post_migrate's work done;
    the next run finds nothing pending and skips Django's migrate."""
    env = launcher.env({"default": mysql_db.django()})
    proc = launcher.run(["migrate"], env)
    assert proc.popen.returncode == 0, proc.stderr()
    assert sorted(own_rows(mysql_db)) == sorted(migrations_on_disk(*APPS))
    assert mysql_db.query(
        "SELECT count(*) FROM auth_permission WHERE codename = 'add_product'"
    ) == [(1,)]
    index = mysql_db.query(
        "SELECT count(*) FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = %s AND INDEX_NAME = 'orders_order_created_idx'",
        (mysql_db.name,),
    )
    assert index == [(1,)]
    again = launcher.run(["migrate"], env)
    assert again.popen.returncode == 0, again.stderr()
    assert [e["event"] for e in again.events() if e["event"] == "nothing_to_migrate"] == [
        "nothing_to_migrate"
    ]


@pytest.mark.slow
def test_eight_replicas_on_a_fresh_mariadb(launcher: Launcher, mysql_factory: Any) -> None:
    """8 replicas start at once on a fresh database: all exit 0, each migration applied once,
    by exactly one of them."""
    db = mysql_factory()
    env = launcher.env({"default": db.django()}, TESTPROJ_SLOW_SECONDS="0.3")
    procs = [launcher.start(["migrate"], env) for _ in range(8)]
    codes = [proc.wait(120) for proc in procs]
    assert codes == [0] * 8, [p.error_lines() for p in procs]
    rows = [(app, name) for app, name in db.query("SELECT app, name FROM django_migrations")]
    reference = mysql_factory()
    assert (
        launcher.run(["migrate"], launcher.env({"default": reference.django()})).popen.returncode
        == 0
    )
    total = reference.query("SELECT count(*) FROM django_migrations")[0][0]
    assert len(rows) == len(set(rows)), "a migration was recorded more than once"
    assert len(rows) == total
    assert migrations_on_disk(*APPS) <= set(rows)
    migrators = [p for p in procs if any(e["event"] == "migrated" for e in p.events())]
    assert len(migrators) == 1


# -- faults ---------------------------------------------------------------------------------------


def test_sigkill_of_the_holder_frees_the_lock_and_the_next_run_stops_at_its_migration(
    launcher: Launcher, mysql_db: MySQLDatabase
) -> None:
    """The holder dies by SIGKILL inside a migration: the server frees its named lock with the
    session and the waiting replica takes it. MySQL cannot roll back DDL, so that replica finds
    the run interrupted in a migration that may be partly applied and stops with 70 saying so,
    instead of re-running it blindly; one run that accepts it then applies the rest, each
    migration exactly once."""
    env = launcher.env({"default": mysql_db.django()})
    holder = launcher.start(["migrate"], {**env, "TESTPROJ_SLOW_SECONDS": "60"})
    holder.wait_for_event("migration_started", migration="0003_slow")
    waiter = launcher.start(["migrate"], env)
    waiting = waiter.wait_for_event("lock_waiting")
    assert waiting["holder"].startswith("connection ")
    os.killpg(holder.pid, signal.SIGKILL)
    assert waiter.wait(60) == 70, waiter.stderr()
    killed = str(holder.events()[0]["run"])
    assert waiter.error_lines() == [
        f"{ERROR_PREFIX}run {killed} was interrupted while applying inventory.0003_slow on database "
        "'default'; that migration is not atomic and may be partly applied; check the database, "
        "then rerun once with ENTRYPOINT_ACCEPT_INTERRUPTED=1 (or --accept-interrupted) to apply "
        "it again"
    ]
    assert mysql_db.query(
        "SELECT status, current_migration, current_atomic FROM entrypoint_migration_run "
        "WHERE id = %s",
        (killed,),
    ) == [("interrupted", "inventory.0003_slow", 0)]
    accepted = launcher.run(["migrate", "--accept-interrupted"], env)
    assert accepted.popen.returncode == 0, accepted.stderr()
    rows = own_rows(mysql_db)
    assert len(rows) == len(set(rows))
    assert set(rows) == migrations_on_disk(*APPS)


def test_sigterm_of_a_waiting_replica_exits_143_at_once(
    launcher: Launcher, mysql_db: MySQLDatabase
) -> None:
    """A replica waiting for the lock (inside a GET_LOCK slice) ends within a second of SIGTERM,
    with 143, and leaves nothing held."""
    holder = launcher.start(
        ["migrate"], launcher.env({"default": mysql_db.django()}, TESTPROJ_SLOW_SECONDS="60")
    )
    holder.wait_for_event("migration_started", migration="0003_slow")
    waiter = launcher.start(["migrate"], launcher.env({"default": mysql_db.django()}))
    waiter.wait_for_event("lock_waiting")
    time.sleep(SLICE)  # well inside the waiting loop
    sent = time.monotonic()
    waiter.popen.send_signal(signal.SIGTERM)
    assert waiter.wait(5) == 143
    assert time.monotonic() - sent < 1.0
    assert waiter.error_lines()[-1] == (
        ERROR_PREFIX + "stopped by SIGTERM before the app server started"
    )


def test_sigterm_during_a_statement_cancels_it_within_a_second(
    launcher: Launcher, mysql_db: MySQLDatabase
) -> None:
    """SIGTERM while the migration connection waits inside the C client: the statement is
    cancelled on the server (KILL QUERY), the run exits 143 within a second naming the
    migration, records itself interrupted, and the lock is free for the next replica at once."""
    env = launcher.env({"default": mysql_db.django()})
    holder = launcher.start(["migrate"], {**env, "TESTPROJ_SLOW_SECONDS": "60"})
    holder.wait_for_event("migration_started", migration="0003_slow")
    sleeping = (
        "SELECT count(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%%'"
    )
    deadline = time.monotonic() + 10
    while mysql_db.query(sleeping) != [(1,)]:
        assert time.monotonic() < deadline, "SELECT SLEEP never started"
        time.sleep(0.02)
    sent = time.monotonic()
    holder.popen.send_signal(signal.SIGTERM)
    assert holder.wait(70) == 143
    assert time.monotonic() - sent < 1.0
    message = (
        "stopped by SIGTERM while applying inventory.0003_slow on 'default'; it is not atomic "
        "and may be partly applied"
    )
    assert holder.error_lines() == [ERROR_PREFIX + message]
    assert mysql_db.query(sleeping) == [(0,)]
    run = str(holder.events()[0]["run"])
    assert mysql_db.query(
        "SELECT status, current_migration, error FROM entrypoint_migration_run WHERE id = %s",
        (run,),
    ) == [("interrupted", "inventory.0003_slow", message)]
    follower = launcher.run(["migrate"], env)
    assert follower.wait_for_event("lock_acquired")["waited"] < 0.5
    assert ("inventory", "0003_slow") not in own_rows(mysql_db)


@pytest.mark.mysql
def test_sigterm_while_connecting_to_a_silent_host_exits_at_once(launcher: Launcher) -> None:
    """SIGTERM while the C client waits on a host that drops packets (up to its connect
    timeout): the run still ends within a second with 143."""
    # 10.255.255.1 is unroutable: the connection attempt hangs until its timeout where packets
    # are dropped, and fails at once where the network answers; both are a wait for the database.
    entry = {
        "ENGINE": "django.db.backends.mysql",
        "NAME": "app",
        "USER": "app",
        "HOST": "10.255.255.1",
        "PORT": "3306",
    }
    proc = launcher.start(["wait"], launcher.env({"default": entry}, ENTRYPOINT_WAIT_TIMEOUT="60"))
    proc.wait_for_event("databases")
    time.sleep(0.5)
    sent = time.monotonic()
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 143
    assert time.monotonic() - sent < 1.0
    assert proc.error_lines() == [ERROR_PREFIX + "stopped by SIGTERM before the app server started"]


@pytest.mark.mysql
@pytest.mark.skipif(find_mariadbd() is None, reason="needs mariadbd and mariadb-install-db")
def test_a_database_started_late_is_seen_within_a_second(launcher: Launcher) -> None:
    """The entrypoint starts before the server: refused connections are retried, and it
    proceeds within a second of the server accepting connections."""
    port = free_port()
    server = ThrowAwayMariaDB(port)
    try:
        entry = {
            "ENGINE": "django.db.backends.mysql",
            "NAME": "mysql",
            "USER": "root",
            "HOST": "127.0.0.1",
            "PORT": str(port),
        }
        proc = launcher.start(
            ["wait"], launcher.env({"default": entry}, ENTRYPOINT_WAIT_TIMEOUT="60")
        )
        proc.wait_for_event("database_unavailable")
        server.start()
        accepting = server.wait_accepting()
        assert proc.wait(30) == 0, proc.stderr()
        assert time.monotonic() - accepting < 1.0
    finally:
        server.destroy()


# -- bad inputs -----------------------------------------------------------------------------------


def test_wrong_password_fails_at_once(launcher: Launcher, mysql_db: MySQLDatabase) -> None:
    """A wrong password is permanent: 69 at once, the fix named, the password never shown."""
    entry = mysql_db.django(PASSWORD=SECRET)
    code, line = run_bad(launcher, ["migrate"], launcher.env({"default": entry}))
    server = mysql_db.server
    assert (code, line) == (
        69,
        f"database 'default' (mysql://{server.user}@{server.host}:{server.port}/{mysql_db.name}): "
        f"Access denied for user '{server.user}'@'{server.host}' (using password: YES); check "
        "USER and PASSWORD in settings.DATABASES['default']",
    )


def test_unknown_database_fails_at_once(launcher: Launcher, mysql_db: MySQLDatabase) -> None:
    """A database that does not exist is permanent: 69 with the fix."""
    entry = mysql_db.django(NAME="no_such_database")
    code, line = run_bad(launcher, ["migrate"], launcher.env({"default": entry}))
    server = mysql_db.server
    assert (code, line) == (
        69,
        f"database 'default' (mysql://{server.user}@{server.host}:{server.port}/no_such_database): "
        "Unknown database 'no_such_database'; create it, or fix NAME in "
        "settings.DATABASES['default']",
    )


@pytest.mark.mysql
def test_unknown_host_fails_at_once(launcher: Launcher) -> None:
    """An unknown host name is permanent: 69 at once with the fix."""
    entry = {
        "ENGINE": "django.db.backends.mysql",
        "NAME": "app",
        "USER": "app",
        "PASSWORD": SECRET,
        "HOST": "no-such-host.invalid",
        "PORT": "3306",
    }
    env = launcher.env({"default": entry}, ENTRYPOINT_WAIT_TIMEOUT="30")
    code, line = run_bad(launcher, ["migrate"], env)
    assert (code, line) == (
        69,
        "database 'default' (mysql://app@no-such-host.invalid:3306/app): Unknown server host "
        "'no-such-host.invalid' (-2); fix HOST in settings.DATABASES['default']",
    )


@pytest.mark.mysql
def test_refused_connection_is_retried_until_the_deadline(launcher: Launcher) -> None:
    """Nothing listens: connection refused is transient, retried, and ends at the deadline
    with 69."""
    port = free_port()
    entry = {
        "ENGINE": "django.db.backends.mysql",
        "NAME": "app",
        "USER": "app",
        "PASSWORD": SECRET,
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    env = launcher.env({"default": entry}, ENTRYPOINT_WAIT_TIMEOUT="1")
    proc = launcher.run(["migrate"], env)
    assert proc.popen.returncode == 69
    line = proc.error_lines()[-1]
    assert line.startswith(
        f"{ERROR_PREFIX}database 'default' (mysql://app@127.0.0.1:{port}/app) was not reachable within 1s ("
    )
    # The client library words the refusal ("Can't connect to server on '127.0.0.1' (115)" from
    # MariaDB Connector/C, "... MySQL server on '127.0.0.1:PORT' (111)" from libmysqlclient).
    assert "Can't connect to " in line
    assert line.endswith(
        "; check that the server runs and HOST/PORT in settings.DATABASES['default'], or raise "
        "ENTRYPOINT_WAIT_TIMEOUT"
    )
    retries = [e for e in proc.events() if e["event"] == "database_unavailable"]
    assert retries


@pytest.mark.mysql
def test_a_server_that_drops_connections_is_waited_for(launcher: Launcher) -> None:
    """A server that accepts and at once drops connections (as one shutting down or starting
    does) is transient: retried until the deadline, then 69 naming the lost connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def drop_all() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=drop_all, daemon=True).start()
    try:
        entry = {
            "ENGINE": "django.db.backends.mysql",
            "NAME": "app",
            "USER": "app",
            "PASSWORD": SECRET,
            "HOST": "127.0.0.1",
            "PORT": str(port),
        }
        env = launcher.env({"default": entry}, ENTRYPOINT_WAIT_TIMEOUT="1")
        proc = launcher.run(["wait"], env)
    finally:
        listener.close()
    assert proc.popen.returncode == 69
    line = proc.error_lines()[-1]
    assert line.startswith(
        f"{ERROR_PREFIX}database 'default' (mysql://app@127.0.0.1:{port}/app) was not reachable within 1s"
    )
    assert "Lost connection to " in line
    attempts = int(line.split("within 1s (", 1)[1].split(" attempts)", 1)[0])
    assert attempts > 1  # retried, not given up on at the first refusal


def test_missing_driver_names_the_extra(
    launcher: Launcher, mysql_db: MySQLDatabase, tmp_path: Path
) -> None:
    """Without mysqlclient the run stops before connecting: 64 and the extra to install."""
    shim = tmp_path / "shim" / "MySQLdb"
    shim.mkdir(parents=True)
    # Stands in for an environment without the driver: this interpreter has it installed.
    (shim / "__init__.py").write_text("raise ImportError('No module named MySQLdb')\n")
    env = launcher.env({"default": mysql_db.django()})
    env["PYTHONPATH"] = os.pathsep.join([str(shim.parent), env["PYTHONPATH"]])
    assert run_bad(launcher, ["migrate"], env) == (
        64,
        "settings.DATABASES['default'] uses django.db.backends.mysql, but its driver mysqlclient "
        "is not installed; install it with pip install 'django-entrypoint[mysql]'",
    )


def test_a_waiter_whose_lock_session_is_killed_exits_69(
    launcher: Launcher, mysql_db: MySQLDatabase
) -> None:
    """The server ends a waiting replica's lock session (KILL, a restart): the replica stops with
    69 and says it lost the lock connection, instead of an internal error."""
    conn = mysql_db.connect()
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT GET_LOCK(%s, 0)", (lock_name(mysql_db.name),))
        env = launcher.env({"default": mysql_db.django()})
        waiter = launcher.start(["migrate"], env)
        waiter.wait_for_event("lock_waiting")
        found = None
        deadline = time.monotonic() + 10
        while found is None and time.monotonic() < deadline:  # between two slices: ask again
            cursor.execute(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
                "AND DB = %s AND INFO LIKE 'SELECT GET_LOCK%%'",
                (mysql_db.name,),
            )
            found = cursor.fetchone()
        assert found is not None
        (session,) = found
        cursor.execute(f"KILL {int(session)}")
        assert waiter.wait(10) == 69
    finally:
        conn.close()
    server = mysql_db.server
    assert waiter.error_lines() == [
        f"{ERROR_PREFIX}lost the lock connection to database 'default' (mysql://{server.user}@"
        f"{server.host}:{server.port}/{mysql_db.name}) while waiting for the migration lock: "
        "Lost connection to server during query; check that the server runs, then start again"
    ]


def test_lock_timeout_exits_75_naming_the_holder(
    launcher: Launcher, mysql_db: MySQLDatabase
) -> None:
    """Another session holds the named lock past ENTRYPOINT_LOCK_TIMEOUT: 75, naming that
    session by its connection id and client address."""
    conn = mysql_db.connect()
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT GET_LOCK(%s, 0)", (lock_name(mysql_db.name),))
        assert cursor.fetchone() == (1,)
        env = launcher.env({"default": mysql_db.django()}, ENTRYPOINT_LOCK_TIMEOUT="1")
        code, line = run_bad(launcher, ["migrate"], env)
        ident = conn.thread_id()
        port = conn.get_host_info()
    finally:
        conn.close()
    assert code == 75, line
    server = mysql_db.server
    assert line.startswith(
        f"the migration lock on database 'default' (mysql://{server.user}@{server.host}:"
        f"{server.port}/{mysql_db.name}) is still held by connection {ident} {server.user}@"
    ), port
    assert line.endswith("; let that run finish, or raise ENTRYPOINT_LOCK_TIMEOUT")


# -- audit trail, history and rollback ------------------------------------------------------------


def runs(db: MySQLDatabase) -> list[dict[str, Any]]:
    """Audit rows, oldest first, with the JSON columns decoded."""
    names = (
        "id",
        "kind",
        "status",
        "release_label",
        "started_at",
        "finished_at",
        "applied",
        "current_migration",
        "current_atomic",
        "error",
        "rollback_of",
        "resolved_by",
    )
    rows = db.query(f"SELECT {', '.join(names)} FROM entrypoint_migration_run ORDER BY seq")
    decoded = []
    for row in rows:
        item = dict(zip(names, row, strict=True))
        item["applied"] = [(s["app"], s["name"]) for s in json.loads(item["applied"])]
        decoded.append(item)
    return decoded


def schema(db: MySQLDatabase) -> list[tuple[str, str]]:
    """(table, column) of every table of the database, sorted."""
    rows = db.query(
        "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s",
        (db.name,),
    )
    return sorted((table, column) for table, column in rows)


def recorded(db: MySQLDatabase) -> list[tuple[str, str]]:
    """django_migrations rows in the order they were recorded."""
    return [(a, n) for a, n in db.query("SELECT app, name FROM django_migrations ORDER BY id")]


def test_audit_rows_and_history_on_mariadb(launcher: Launcher, mysql_db: MySQLDatabase) -> None:
    """The audit table is created on MariaDB: a run is one `succeeded` row whose applied list
    matches django_migrations, a run on the full path with nothing pending (no manifest recorded
    for the fast path) one more row; `history --format json` lists them newest first with UTC
    times."""
    env = launcher.env({"default": mysql_db.django()}, ENTRYPOINT_RELEASE="v7")
    first = launcher.run(["migrate"], env)
    mysql_db.query("DELETE FROM entrypoint_manifest")
    second = launcher.run(["migrate"], env)
    assert (first.popen.returncode, second.popen.returncode) == (0, 0), first.stderr()
    done, noop = runs(mysql_db)
    assert (done["id"], noop["id"]) == (first.events()[0]["run"], second.events()[0]["run"])
    assert (done["status"], done["release_label"]) == ("succeeded", "v7")
    assert done["applied"] == recorded(mysql_db)
    assert (noop["status"], noop["applied"]) == ("succeeded", [])
    assert done["finished_at"] >= done["started_at"]
    listed = json.loads(launcher.run(["history", "--format", "json"], env).stdout())
    assert [run["id"] for run in listed] == [noop["id"], done["id"]]
    assert listed[1]["started_at"].endswith(("Z", "+00:00"))


def test_rollback_last_restores_the_schema_on_mariadb(
    launcher: Launcher, mysql_db: MySQLDatabase
) -> None:
    """`rollback --last` unapplies what the last release applied, newest first: the columns and
    django_migrations are as before it, and the release's run becomes `rolled_back`."""
    env = launcher.env({"default": mysql_db.django()})
    assert launcher.run(["migrate"], env).popen.returncode == 0
    before = (schema(mysql_db), recorded(mysql_db))
    books = {**env, "TESTPROJ_EXTRA_APPS": "catalog,reviews"}
    release = launcher.run(["migrate"], books)
    assert release.popen.returncode == 0, release.stderr()
    assert recorded(mysql_db) != before[1]
    undo = launcher.run(["rollback", "--last"], books)
    assert undo.popen.returncode == 0, undo.stderr()
    assert (schema(mysql_db), recorded(mysql_db)) == before
    _, undone, rollback = runs(mysql_db)
    assert (undone["status"], undone["resolved_by"]) == ("rolled_back", undo.events()[0]["run"])
    assert (rollback["kind"], rollback["rollback_of"]) == ("rollback", undone["id"])


def test_a_migration_failing_before_any_change_is_rolled_back_on_failure(
    launcher: Launcher, mysql_db: MySQLDatabase
) -> None:
    """A migration whose only statement fails changed nothing, even without transactional DDL:
    the row marks it safe to run again, and ENTRYPOINT_ROLLBACK_ON_FAILURE unapplies what the
    run applied before it, leaving the schema as the run found it."""
    env = launcher.env({"default": mysql_db.django()})
    assert launcher.run(["migrate"], env).popen.returncode == 0
    before = (schema(mysql_db), recorded(mysql_db))
    broken = {**env, "TESTPROJ_EXTRA_APPS": "broken", "ENTRYPOINT_ROLLBACK_ON_FAILURE": "1"}
    code, line = run_bad(launcher, ["migrate"], broken)
    assert code == 70
    assert line.startswith("migration broken.0002_fails failed on database 'default': ")
    assert line.endswith("; rolled back broken.0001_initial, so the schema is as this run found it")
    assert (schema(mysql_db), recorded(mysql_db)) == before
    failed = runs(mysql_db)[-1]
    assert (failed["status"], failed["current_migration"], failed["current_atomic"]) == (
        "rolled_back",
        "broken.0002_fails",
        1,
    )
    again = launcher.run(["migrate"], {**env, "TESTPROJ_EXTRA_APPS": "broken"})
    assert again.popen.returncode == 70
    assert again.error_lines()[-1].startswith(
        f"{ERROR_PREFIX}migration broken.0002_fails failed on database 'default': "
    )  # run again, not stopped by a gate


def test_a_migration_failing_half_way_stops_the_next_runs_until_accepted(
    launcher: Launcher, mysql_db: MySQLDatabase
) -> None:
    """A migration that fails after its first operation committed DDL: the run says what stays
    applied and what may be partly applied, and does not roll back on failure; the next run
    stops with 70 instead of re-running it into a duplicate column; once the column is dropped
    by hand, one run with ENTRYPOINT_ACCEPT_INTERRUPTED=1 applies it."""
    env = launcher.env({"default": mysql_db.django()}, TESTPROJ_EXTRA_APPS="halfway")
    failing = {**env, "TESTPROJ_HALFWAY_FAIL": "1", "ENTRYPOINT_ROLLBACK_ON_FAILURE": "1"}
    code, line = run_bad(launcher, ["migrate"], failing)
    assert (code, line) == (
        70,
        "migration halfway.0002_colour failed on database 'default': RuntimeError: halfway "
        "failure asked for by TESTPROJ_HALFWAY_FAIL=1; this database cannot roll back DDL, so "
        "operation 1 stays applied and operation 2 of 2 (Raw Python operation) may be partly "
        "applied; not rolled back: halfway.0002_colour is not atomic and may be partly applied, "
        "check it by hand first",
    )
    assert ("halfway_gadget", "colour") in schema(mysql_db)
    assert ("halfway", "0002_colour") not in recorded(mysql_db)
    failed = runs(mysql_db)[-1]
    assert (failed["status"], failed["current_migration"], failed["current_atomic"]) == (
        "failed",
        "halfway.0002_colour",
        0,
    )

    gated = (
        f"run {failed['id']} failed while applying halfway.0002_colour on database 'default'; "
        "that migration is not atomic and may be partly applied; check the database, then rerun "
        "once with ENTRYPOINT_ACCEPT_INTERRUPTED=1 (or --accept-interrupted) to apply it again"
    )
    assert run_bad(launcher, ["migrate"], env) == (70, gated)
    assert run_bad(launcher, ["migrate"], env) == (70, gated)
    mysql_db.query("ALTER TABLE halfway_gadget DROP COLUMN colour")
    accepted = launcher.run(["migrate"], {**env, "ENTRYPOINT_ACCEPT_INTERRUPTED": "1"})
    assert accepted.popen.returncode == 0, accepted.stderr()
    assert recorded(mysql_db).count(("halfway", "0002_colour")) == 1
    assert runs(mysql_db)[0]["resolved_by"] == accepted.events()[0]["run"]
    assert launcher.run(["migrate"], env).popen.returncode == 0


def test_plan_and_check_on_mariadb(launcher: Launcher, mysql_db: MySQLDatabase) -> None:
    """`plan` lists every pending migration with its phase, as non-atomic (MySQL commits each DDL
    statement); `check` fails on unapplied migrations and passes once migrated, taking no lock
    and writing nothing."""
    env = launcher.env({"default": mysql_db.django()})
    plan = launcher.run(["plan", "--format", "json"], env)
    assert plan.popen.returncode == 0, plan.stderr()
    rows = json.loads(plan.stdout())
    assert {(row["app"], row["name"]) for row in rows} >= migrations_on_disk(*APPS)
    assert {row["atomic"] for row in rows} == {False}
    assert {row["phase"] for row in rows} <= {"pre-deploy", "post-deploy"}
    check = launcher.run(["check"], env)
    assert check.popen.returncode == 1
    assert mysql_db.query("SHOW TABLES") == []
    assert launcher.run(["migrate"], env).popen.returncode == 0
    assert launcher.run(["check"], env).popen.returncode == 0
    assert launcher.run(["plan"], env).stdout() == "nothing to migrate\n"
