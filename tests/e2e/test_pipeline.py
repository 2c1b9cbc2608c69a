"""The core pipeline end to end, as real processes: wait, lock, migrate, exec."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.support.databases import PgDatabase
from tests.support.processes import Launcher, migrations_on_disk, sqlite_databases

APPS = ("inventory", "orders")


def recorded(pg: PgDatabase) -> list[tuple[str, str]]:
    """django_migrations rows of the project's own apps."""
    rows = pg.query("SELECT app, name FROM django_migrations WHERE app IN ('inventory', 'orders')")
    return [(app, name) for app, name in rows]


def test_migrate_applies_everything_on_a_fresh_postgres(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """A fresh database ends with every migration recorded once and post_migrate's work done."""
    proc = launcher.run(["migrate"], launcher.env({"default": pg_db.django()}))
    assert proc.popen.returncode == 0, proc.stderr()
    assert sorted(recorded(pg_db)) == sorted(migrations_on_disk(*APPS))
    # post_migrate ran exactly as manage.py migrate runs it: content types and permissions exist.
    assert (
        pg_db.query("SELECT count(*) FROM django_content_type WHERE app_label = 'inventory'")[0][0]
        == 2
    )
    assert (
        pg_db.query("SELECT count(*) FROM auth_permission WHERE codename = 'add_product'")[0][0]
        == 1
    )
    applied = [e for e in proc.events() if e["event"] == "migration_applied"]
    assert len(applied) == len(pg_db.query("SELECT 1 FROM django_migrations"))
    assert all(e["seconds"] >= 0 for e in applied)


def test_nothing_pending_skips_djangos_migrate(launcher: Launcher, pg_db: PgDatabase) -> None:
    """With nothing pending, Django's migrate (and its post_migrate work) does not run at all."""
    env = launcher.env({"default": pg_db.django()})
    assert launcher.run(["migrate"], env).popen.returncode == 0
    # post_migrate would recreate this permission; a skipped migrate leaves it deleted.
    pg_db.query("DELETE FROM auth_permission WHERE codename = 'add_product'")
    proc = launcher.run(["migrate"], env)
    assert proc.popen.returncode == 0, proc.stderr()
    assert [e["event"] for e in proc.events() if e["event"] == "nothing_to_migrate"] == [
        "nothing_to_migrate"
    ]
    assert (
        pg_db.query("SELECT count(*) FROM auth_permission WHERE codename = 'add_product'")[0][0]
        == 0
    )


def test_an_inconsistent_history_stops_the_run_even_with_nothing_pending(
    launcher: Launcher, tmp_path: Path
) -> None:
    """A migration recorded without its dependency adds nothing to Django's plan, but Django's
    migrate refuses such a history: so does the run, with exit 70, instead of reporting ready."""
    databases = sqlite_databases(tmp_path)
    env = launcher.env(databases)
    assert launcher.run(["migrate"], env).popen.returncode == 0
    with sqlite3.connect(databases["default"]["NAME"]) as conn:
        conn.execute(
            "DELETE FROM django_migrations WHERE app = 'inventory' AND name = '0002_seed_products'"
        )
    proc = launcher.run(["migrate"], env)
    assert proc.popen.returncode == 70
    assert proc.error_lines() == [
        "django-entrypoint: error: inconsistent migration history on database 'default': "
        "Migration inventory.0003_slow is applied before its dependency "
        "inventory.0002_seed_products; repair the django_migrations table before migrating"
    ]


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_post_migrate_work_cut_short_is_done_by_the_next_run(
    launcher: Launcher, pg_db: PgDatabase, tmp_path: Path, signum: int
) -> None:
    """A run stopped in Django's post-migrate work, after its last migration, leaves content
    types and permissions missing with nothing pending: the next run sees the previous run did
    not finish and runs Django's migrate anyway, as manage.py migrate would; the run after that
    has nothing to do again."""
    mark = tmp_path / "post_migrate"
    env = launcher.env({"default": pg_db.django()})
    proc = launcher.start(["migrate"], {**env, "TESTPROJ_POST_MIGRATE_MARK": str(mark)})
    deadline = time.monotonic() + 30
    while not mark.exists():
        assert proc.popen.poll() is None, proc.stderr()
        assert time.monotonic() < deadline, proc.stderr()
        time.sleep(0.02)
    os.killpg(proc.pid, signum)
    # SIGKILL ends the process at once (-9); SIGTERM is handled: exit 143, run interrupted.
    assert proc.wait(10) == (-signum if signum == signal.SIGKILL else 128 + signum)
    assert sorted(recorded(pg_db)) == sorted(migrations_on_disk(*APPS))
    permission = "SELECT count(*) FROM auth_permission WHERE codename = 'add_order'"
    assert pg_db.query(permission) == [(0,)]
    again = launcher.run(["migrate"], env)
    assert again.popen.returncode == 0, again.stderr()
    [finishing] = [e for e in again.events() if e["event"] == "finishing_previous_run"]
    assert finishing["previous_status"] == "interrupted"
    assert pg_db.query(permission) == [(1,)]
    assert pg_db.query("SELECT count(*) FROM django_content_type WHERE app_label = 'orders'") == [
        (1,)
    ]
    third = launcher.run(["migrate"], env)
    assert [e["event"] for e in third.events() if e["event"] == "finishing_previous_run"] == []


def test_run_execs_the_command_with_the_same_pid(launcher: Launcher, tmp_path: Path) -> None:
    """`run -- CMD` replaces the entrypoint: the command has the entrypoint's pid."""
    script = "import os; print('pid', os.getpid())"
    proc = launcher.run(
        ["run", "--", "python", "-c", script], launcher.env(sqlite_databases(tmp_path))
    )
    assert proc.popen.returncode == 0, proc.stderr()
    assert proc.stdout().split() == ["pid", str(proc.pid)]


@pytest.mark.parametrize("status", [0, 3, 42])
def test_run_passes_the_exit_status_through(
    launcher: Launcher, tmp_path: Path, status: int
) -> None:
    """The app server's exit status is the container's exit status."""
    env = launcher.env(sqlite_databases(tmp_path))
    proc = launcher.run(["run", "--", "sh", "-c", f"exit {status}"], env)
    assert proc.popen.returncode == status


def test_the_app_server_gets_signals_directly_after_exec(
    launcher: Launcher, tmp_path: Path
) -> None:
    """After the exec, SIGTERM reaches the app server's own handler, with default dispositions."""
    app = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
        "print('up', flush=True)\n"
        "time.sleep(30)\n"
    )
    proc = launcher.start(
        ["run", "--", "python", "-c", app], launcher.env(sqlite_databases(tmp_path))
    )
    deadline = time.monotonic() + 30
    while "up" not in proc.stdout() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 7


def test_the_exec_restores_default_dispositions(launcher: Launcher, tmp_path: Path) -> None:
    """Python ignores SIGPIPE and SIGXFSZ for itself; the exec'd program gets neither ignored,
    and no signal blocked, exactly as if it were started directly."""
    # grep is exec'd directly and reads its own status: no shell that forks in between.
    argv = ["run", "--", "grep", "-E", "^(SigIgn|SigBlk)", "/proc/self/status"]
    proc = launcher.run(argv, launcher.env(sqlite_databases(tmp_path)))
    fields = dict(line.split(":\t") for line in proc.stdout().splitlines())
    ignored, blocked = int(fields["SigIgn"], 16), int(fields["SigBlk"], 16)
    assert ignored & (1 << (signal.SIGPIPE - 1)) == 0
    assert ignored & (1 << (signal.SIGXFSZ - 1)) == 0
    assert blocked == 0


def test_sqlite_fresh_and_noop(launcher: Launcher, tmp_path: Path) -> None:
    """SQLite, the embedded default: migrates a fresh file, then finds nothing to do."""
    env = launcher.env(sqlite_databases(tmp_path))
    first = launcher.run(["migrate"], env)
    assert first.popen.returncode == 0, first.stderr()
    assert any(e["event"] == "migrated" for e in first.events())
    second = launcher.run(["migrate"], env)
    assert second.popen.returncode == 0
    assert any(e["event"] == "nothing_to_migrate" for e in second.events())
    assert (tmp_path / "db.sqlite3.entrypoint.lock").exists()


def test_several_aliases_in_order_each_with_its_router(launcher: Launcher, pg_factory) -> None:  # type: ignore[no-untyped-def]
    """`--database default --database other`: both migrated in order, routers honoured."""
    default, other = pg_factory(), pg_factory()
    env = launcher.env(
        {"default": default.django(), "other": other.django()}, TESTPROJ_EXTRA_APPS="analytics"
    )
    proc = launcher.run(["--database", "default", "--database", "other", "migrate"], env)
    assert proc.popen.returncode == 0, proc.stderr()
    acquired = [e["database"] for e in proc.events() if e["event"] == "lock_acquired"]
    assert acquired == ["default", "other"]
    tables = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
    assert ("analytics_event",) in other.query(tables)
    assert ("analytics_event",) not in default.query(tables)
    assert ("inventory_product",) not in other.query(tables)


def test_wait_command_only_waits(launcher: Launcher, pg_db: PgDatabase) -> None:
    """`wait` returns 0 once the database answers and applies nothing."""
    proc = launcher.run(["wait"], launcher.env({"default": pg_db.django()}))
    assert proc.popen.returncode == 0, proc.stderr()
    assert pg_db.query("SELECT to_regclass('django_migrations')") == [(None,)]


def test_read_only_commands_leave_no_sqlite_file_behind(launcher: Launcher, tmp_path: Path) -> None:
    """plan, check and history on a SQLite database that does not exist yet answer (everything
    pending, no history) without leaving an empty database file behind."""
    databases = sqlite_databases(tmp_path)
    env = launcher.env(databases)
    path = Path(databases["default"]["NAME"])
    plan = launcher.run(["plan", "--format", "json"], env)
    assert plan.popen.returncode == 0, plan.stderr()
    rows = json.loads(plan.stdout())
    assert {(row["app"], row["name"]) for row in rows} >= migrations_on_disk(*APPS)
    assert launcher.run(["check"], env).popen.returncode == 1
    history = launcher.run(["history", "--format", "json"], env)
    assert (history.popen.returncode, history.stdout().strip()) == (0, "[]")
    assert not path.exists()
