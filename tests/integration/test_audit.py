"""The audit trail, read straight from the database: one row per run with honest counts,
durations and statuses across success, nothing pending, failure, SIGTERM and SIGKILL; the gate
in front of an interrupted non-atomic migration; and the ``history`` command."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.databases import PgDatabase
from tests.support.processes import Launcher

PREFIX = "django-entrypoint: error: "
RUN_FIELDS = {
    "id",
    "kind",
    "database",
    "status",
    "release",
    "phase",
    "host",
    "pid",
    "started_at",
    "finished_at",
    "lock_wait_ms",
    "total_ms",
    "planned",
    "applied",
    "current_migration",
    "current_atomic",
    "error",
    "rollback_of",
    "resolved_by",
}


@dataclass
class Db:
    """One database under test, PostgreSQL or SQLite, read from its own catalog."""

    vendor: str
    pg: PgDatabase | None = None
    path: Path | None = None

    def databases(self) -> dict[str, Any]:
        """The project's DATABASES for this database."""
        if self.pg is not None:
            return {"default": self.pg.django()}
        return {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(self.path)}}

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one query (``%s`` placeholders on both vendors)."""
        if self.pg is not None:
            return self.pg.query(sql, params)
        assert self.path is not None
        with sqlite3.connect(self.path) as conn:
            return conn.execute(sql.replace("%s", "?"), params).fetchall()

    def tables(self) -> list[str]:
        """Every table of the database, sorted."""
        if self.pg is not None:
            rows = self.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        else:
            rows = self.query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%%'"
            )
        return sorted(name for (name,) in rows)

    def columns(self) -> list[tuple[str, str]]:
        """(table, column) of every table, sorted: the schema, beyond the table list."""
        if self.pg is not None:
            rows = self.query(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'public'"
            )
            return sorted((t, c) for t, c in rows)
        found = []
        for table in self.tables():
            found += [(table, row[1]) for row in self.query(f'PRAGMA table_info("{table}")')]
        return sorted(found)

    def migrations(self) -> list[tuple[str, str]]:
        """django_migrations rows in the order they were recorded."""
        return [
            (a, n) for a, n in self.query("SELECT app, name FROM django_migrations ORDER BY id")
        ]

    def runs(self) -> list[dict[str, Any]]:
        """Audit rows, oldest first, with the JSON columns decoded."""
        cols = (
            "id, kind, status, release_label, phase, host, pid, started_at, finished_at, "
            "lock_wait_ms, total_ms, planned, applied, current_migration, current_atomic, "
            "error, rollback_of, resolved_by"
        )
        rows = self.query(f"SELECT {cols} FROM entrypoint_migration_run ORDER BY seq")
        names = [c.strip() for c in cols.split(",")]
        decoded = []
        for row in rows:
            item = dict(zip(names, row, strict=True))
            item["planned"] = [(p["app"], p["name"]) for p in json.loads(item["planned"])]
            item["steps"] = json.loads(item["applied"])
            item["applied"] = [(s["app"], s["name"]) for s in item["steps"]]
            decoded.append(item)
        return decoded


def make_db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    """A fresh database of the vendor a parametrized fixture asks for."""
    if request.param == "postgresql":
        return Db("postgresql", pg=request.getfixturevalue("pg_db"))
    return Db("sqlite", path=tmp_path / "db.sqlite3")


@pytest.fixture(params=["postgresql", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    """A fresh database of each vendor the audit trail is tested on."""
    return make_db(request, tmp_path)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Db:
    """A fresh SQLite database file."""
    return Db("sqlite", path=tmp_path / "db.sqlite3")


def run_id_of(proc: Any) -> str:
    """The run id a process logged with every event."""
    return str(proc.events()[0]["run"])


def error_of(proc: Any) -> str:
    """The one error line, without its prefix."""
    lines = proc.error_lines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(PREFIX)
    return str(lines[0][len(PREFIX) :])


def test_a_run_is_one_row_with_its_plan_durations_and_outcome(launcher: Launcher, db: Db) -> None:
    """A successful run is one `succeeded` row whose planned and applied lists match
    django_migrations in order, with a duration per migration, the release, host, pid and the
    run id of the logs; the next start takes the fast path and writes nothing, and a later run
    on the full path with nothing pending (no manifest recorded for it) is one more row that
    applied nothing."""
    env = launcher.env(db.databases(), ENTRYPOINT_RELEASE="v1.2.3")
    first = launcher.run(["migrate"], env)
    assert first.popen.returncode == 0, first.stderr()
    fast = launcher.run(["migrate"], env)
    assert [e.get("fast_path") for e in fast.events() if e["event"] == "ready"] == [True]
    assert len(db.runs()) == 1
    db.query("DELETE FROM entrypoint_manifest")
    second = launcher.run(["migrate"], env)
    assert second.popen.returncode == 0, second.stderr()

    runs = db.runs()
    assert [r["id"] for r in runs] == [run_id_of(first), run_id_of(second)]
    done, noop = runs
    recorded = db.migrations()
    assert done["applied"] == recorded
    assert done["planned"] == recorded
    assert all(isinstance(s["duration_ms"], int) and s["duration_ms"] >= 0 for s in done["steps"])
    assert (done["kind"], done["status"], done["release_label"], done["phase"]) == (
        "migrate",
        "succeeded",
        "v1.2.3",
        "all",
    )
    assert (done["pid"], done["host"]) == (first.pid, socket.gethostname())
    assert (done["current_migration"], done["error"]) == (None, None)
    assert done["finished_at"] is not None
    assert done["total_ms"] >= done["lock_wait_ms"] >= 0
    assert (noop["status"], noop["planned"], noop["applied"]) == ("succeeded", [], [])
    assert noop["finished_at"] is not None


def test_a_failed_migration_is_recorded_with_what_ran_before_it(
    launcher: Launcher, sqlite_db: Db
) -> None:
    """A failing migration leaves a `failed` row naming it as the one in progress, with the
    migrations applied before it and the same error the run printed."""
    assert launcher.run(["migrate"], launcher.env(sqlite_db.databases())).popen.returncode == 0
    proc = launcher.run(
        ["migrate"], launcher.env(sqlite_db.databases(), TESTPROJ_EXTRA_APPS="broken")
    )
    assert proc.popen.returncode == 70
    failed = sqlite_db.runs()[-1]
    assert failed["status"] == "failed"
    assert failed["planned"] == [("broken", "0001_initial"), ("broken", "0002_fails")]
    assert failed["applied"] == [("broken", "0001_initial")]
    assert (failed["current_migration"], failed["current_atomic"]) == ("broken.0002_fails", 1)
    assert failed["error"] == error_of(proc)
    assert ("broken", "0001_initial") in sqlite_db.migrations()


def test_sigkill_mid_run_is_marked_interrupted_by_the_next_run(launcher: Launcher, db: Db) -> None:
    """While a migration runs, the row says `running` and names it; after a SIGKILL the next
    run marks that row `interrupted` (naming the migration), then applies the rest: between
    them every migration is applied exactly once."""
    slow = launcher.env(db.databases(), TESTPROJ_SLOW_SECONDS="60")
    holder = launcher.start(["migrate"], slow)
    holder.wait_for_event("migration_started", migration="0003_slow")
    running = db.runs()[-1]
    assert (running["status"], running["current_migration"]) == ("running", "inventory.0003_slow")
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait(10)

    follower = launcher.run(["migrate"], launcher.env(db.databases()))
    assert follower.popen.returncode == 0, follower.stderr()
    killed, resumed = db.runs()
    assert killed["id"] == run_id_of(holder)
    assert killed["status"] == "interrupted"
    assert (killed["current_migration"], killed["current_atomic"]) == ("inventory.0003_slow", 1)
    assert killed["finished_at"] is None
    assert resumed["status"] == "succeeded"
    assert resumed["applied"][0] == ("inventory", "0003_slow")
    assert killed["applied"] + resumed["applied"] == db.migrations()
    reported = follower.wait_for_event("interrupted_run")
    assert (reported["interrupted_run"], reported["migration"]) == (
        killed["id"],
        "inventory.0003_slow",
    )


def _wait_until(check: Any, timeout: float, what: str) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.05)


def test_sigterm_mid_run_records_interrupted_with_the_migration(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """SIGTERM during a migration: the run itself finishes its row as `interrupted`, naming the
    migration whose transaction was rolled back, with the message it printed."""
    db = Db("postgresql", pg=pg_db)
    proc = launcher.start(["migrate"], launcher.env(db.databases(), TESTPROJ_SLOW_SECONDS="60"))
    proc.wait_for_event("migration_started", migration="0003_slow")
    # The signal lands while the migration's statement runs on the server.
    sleeping = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep%%'"
    )
    _wait_until(lambda: pg_db.query(sleeping)[0][0] == 1, 20, "pg_sleep starting")
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 143
    row = db.runs()[-1]
    assert (row["status"], row["current_migration"]) == ("interrupted", "inventory.0003_slow")
    assert row["error"] == error_of(proc)
    assert row["finished_at"] is not None
    assert ("inventory", "0003_slow") not in db.migrations()


def test_an_interrupted_non_atomic_migration_stops_the_next_runs_until_accepted(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """SIGKILL inside CREATE INDEX CONCURRENTLY leaves an invalid index. Every next run stops
    with exit 70 and the statement that drops it, instead of re-running the migration blindly;
    once the index is dropped, one run with ENTRYPOINT_ACCEPT_INTERRUPTED=1 applies it again,
    and later runs need no flag."""
    db = Db("postgresql", pg=pg_db)
    env = launcher.env(db.databases())
    # An open snapshot makes CREATE INDEX CONCURRENTLY wait, after it created the index entry.
    with pg_db.connect() as snapshot:
        snapshot.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        snapshot.execute("SELECT 1")
        holder = launcher.start(["migrate"], env)
        holder.wait_for_event("migration_started", migration="0002_index_concurrently")
        building = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'CREATE INDEX CONCURRENTLY%%'"
        )
        _wait_until(
            lambda: pg_db.query(building + " AND wait_event_type = 'Lock'")[0][0] == 1,
            20,
            "the index build waiting",
        )
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(10)
        # The server notices the vanished client (client_connection_check_interval).
        _wait_until(lambda: pg_db.query(building)[0][0] == 0, 20, "the build ending")
        snapshot.execute("ROLLBACK")
    invalid = (
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_order_created_idx'::regclass"
    )
    assert pg_db.query(invalid) == [(False,)]

    refused = launcher.run(["migrate"], env)
    assert refused.popen.returncode == 70
    killed = db.runs()[0]
    assert killed["status"] == "interrupted"
    assert (killed["current_migration"], killed["current_atomic"]) == (
        "orders.0002_index_concurrently",
        0,
    )
    assert error_of(refused) == (
        f"run {killed['id']} was interrupted while applying orders.0002_index_concurrently on "
        "database 'default'; that migration is not atomic and may be partly applied; invalid "
        'indexes are left behind, drop each first: DROP INDEX CONCURRENTLY "public".'
        '"orders_order_created_idx"; check the database, then rerun once with '
        "ENTRYPOINT_ACCEPT_INTERRUPTED=1 (or --accept-interrupted) to apply it again"
    )
    again = launcher.run(["migrate"], env)
    assert again.popen.returncode == 70
    assert error_of(again) == error_of(refused)
    assert ("orders", "0002_index_concurrently") not in db.migrations()

    pg_db.query('DROP INDEX CONCURRENTLY "public"."orders_order_created_idx"')
    accepted = launcher.run(
        ["migrate"], launcher.env(db.databases(), ENTRYPOINT_ACCEPT_INTERRUPTED="1")
    )
    assert accepted.popen.returncode == 0, accepted.stderr()
    assert pg_db.query(invalid) == [(True,)]
    runs = db.runs()
    assert runs[0]["resolved_by"] == run_id_of(accepted)
    assert [r["status"] for r in runs] == ["interrupted", "failed", "failed", "succeeded"]
    assert runs[0]["applied"] + runs[3]["applied"] == db.migrations()
    later = launcher.run(["migrate"], env)
    assert later.popen.returncode == 0, later.stderr()


def test_history_prints_the_runs_newest_first(launcher: Launcher, sqlite_db: Db) -> None:
    """`history` needs no lock and no table (empty history, nothing created); afterwards JSON on
    standard output is a list of run objects newest first with every field of the table, and
    text shows one line per run followed by its migrations and error."""
    env = launcher.env(sqlite_db.databases())
    empty = launcher.run(["history", "--format", "json"], env)
    assert empty.popen.returncode == 0, empty.stderr()
    assert json.loads(empty.stdout()) == []
    assert "entrypoint_migration_run" not in sqlite_db.tables()
    assert launcher.run(["history"], env).stdout() == "no runs recorded yet\n"

    ok = launcher.run(["migrate"], launcher.env(sqlite_db.databases(), ENTRYPOINT_RELEASE="r1"))
    broken = launcher.env(sqlite_db.databases(), TESTPROJ_EXTRA_APPS="broken")
    failed = launcher.run(["migrate"], broken)
    assert (ok.popen.returncode, failed.popen.returncode) == (0, 70)

    listed = json.loads(launcher.run(["history", "--format", "json"], env).stdout())
    assert [run["id"] for run in listed] == [run_id_of(failed), run_id_of(ok)]
    assert all(set(run) == RUN_FIELDS for run in listed)
    newest, oldest = listed
    assert newest["applied"][0].keys() == {"app", "name", "duration_ms"}
    assert (newest["status"], newest["current_migration"]) == ("failed", "broken.0002_fails")
    assert (oldest["status"], oldest["release"], oldest["database"]) == (
        "succeeded",
        "r1",
        "default",
    )
    assert len(oldest["applied"]) == len(oldest["planned"]) == len(sqlite_db.migrations()) - 1
    limited = json.loads(
        launcher.run(["history", "--format", "json", "--limit", "1"], env).stdout()
    )
    assert [run["id"] for run in limited] == [newest["id"]]

    text = launcher.run(["history"], env).stdout().splitlines()
    assert text[0].split() == [
        "RUN",
        "KIND",
        "STATUS",
        "DATABASE",
        "RELEASE",
        "STARTED",
        "(UTC)",
        "TOOK",
        "SUMMARY",
    ]
    heads = [line.split()[:5] for line in text[1:] if not line.startswith(" ")]
    assert heads == [
        [newest["id"], "migrate", "failed", "default", "-"],
        [oldest["id"], "migrate", "succeeded", "default", "r1"],
    ]
    assert "    + broken.0001_initial (" in "\n".join(text)
    assert f"    error: {error_of(failed)}" in text
