"""``ENTRYPOINT_MIGRATE=wait`` and ``wait-migrated`` (pods that never migrate, woken by the
migrating run's notice) and ``ENTRYPOINT_MIGRATE=off``, as real processes on real databases."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
import urllib.request
from pathlib import Path

from tests.e2e.test_run_health import health_env, wait_for_readyz
from tests.support.databases import PgDatabase
from tests.support.pgcluster import free_port
from tests.support.processes import Launcher, migrations_on_disk, sqlite_databases

PREFIX = "django-entrypoint: error: "
# What the waiting runs exec: it prints the moment it started and how many products the
# migrated schema holds, read through Django (a table that only a migration creates).
REPORT = (
    "import time, django; django.setup(); from inventory.models import Product; "
    "print('started', time.time(), Product.objects.count(), flush=True)"
)


def tables(pg: PgDatabase) -> set[str]:
    """The tables of the public schema."""
    return {
        name for (name,) in pg.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }


def metrics(port: int) -> str:
    """The health server's Prometheus text."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
        return str(answer.read().decode())


def test_a_waiting_run_execs_once_the_migrating_run_committed(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """`run --migrate=wait` on a fresh database takes no lock, runs no DDL and writes nothing:
    /readyz shows waiting_for_migrations with the missing count in the metrics. Once a
    `migrate` run (the Job) has applied everything, the waiting run is woken by its notice,
    becomes ready and execs its command, which finds the migrated schema; the audit trail holds
    only the migrating run."""
    databases = {"default": pg_db.django()}
    port = free_port()
    waiter = launcher.start(
        ["--migrate=wait", "run", "--", sys.executable, "-c", REPORT],
        health_env(launcher, databases, port),
    )
    body = wait_for_readyz(port, waiter, phase="waiting_for_migrations")
    assert (body["http"], body["status"], body["database"]) == (503, "not_ready", "default")
    text = metrics(port)
    assert 'entrypoint_phase{phase="waiting_for_migrations"} 1.0' in text
    shown = re.search(r'entrypoint_migrations_missing\{database="default"\} (\d+)', text)
    assert shown is not None, text
    waiting = waiter.wait_for_event("migrations_waiting")
    total = waiting["missing"]
    assert int(shown.group(1)) == total
    assert waiting["holder"] is None
    # Nothing was created while it waited: no table, no audit row, no lock taken.
    assert tables(pg_db) == set()
    assert "lock_acquired" not in [e["event"] for e in waiter.events()]

    job = launcher.run(["migrate"], launcher.env(databases))
    assert job.popen.returncode == 0, job.stderr()
    assert waiter.wait(30) == 0, waiter.stderr()
    present = waiter.wait_for_event("migrations_present")
    assert present["needed"] == total
    assert waiter.stdout().split()[0::3] == ["started"]
    assert waiter.stdout().split()[2] == "3"  # inventory.0002 seeds three products
    # Not before the last migration began (its commit, which wakes the waiter, may come before
    # the holder logs `migration_applied`).
    last_started = [e for e in job.events() if e["event"] == "migration_started"][-1]
    assert present["at"] >= _epoch(last_started["timestamp"])
    assert len(pg_db.query("SELECT 1 FROM django_migrations")) == total
    runs = pg_db.query("SELECT id, status FROM entrypoint_migration_run")
    assert runs == [(job.events()[0]["run"], "succeeded")]


def test_wait_migrated_gives_up_at_its_deadline_naming_what_is_missing(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """wait-migrated with nobody migrating exits 75 once ENTRYPOINT_MIGRATE_WAIT_TIMEOUT passes,
    in one line naming how many migrations are missing, the first of them, that no migration
    is running, and the fix; it leaves the database untouched."""
    env = launcher.env({"default": pg_db.django()}, ENTRYPOINT_MIGRATE_WAIT_TIMEOUT="1s")
    started = time.monotonic()
    proc = launcher.run(["wait-migrated"], env)
    took = time.monotonic() - started
    assert proc.popen.returncode == 75, proc.stderr()
    assert took < 20
    missing = proc.wait_for_event("migrations_waiting")["missing"]
    assert missing > len(migrations_on_disk("inventory", "orders"))
    assert proc.error_lines() == [
        f"{PREFIX}the migrations this code needs were not on database 'default' within 1s: "
        f"{missing} still missing (contenttypes.0001_initial, "
        "contenttypes.0002_remove_content_type_name, auth.0001_initial, "
        "auth.0002_alter_permission_name_max_length, auth.0003_alter_user_email_max_length "
        f"and {missing - 5} more); nobody holds the migration lock, so no migration is running; "
        "run this release's migrations (django-entrypoint migrate, with the schema owner's role), "
        "or raise ENTRYPOINT_MIGRATE_WAIT_TIMEOUT"
    ]
    assert tables(pg_db) == set()


def test_a_waiting_run_names_the_holder_while_a_migration_runs(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """While the migrating run sits in a slow migration, the waiting run's report names the
    lock's holder; the waiting run does not wait for the lock itself and goes on as soon as the
    last migration it needs is recorded."""
    databases = {"default": pg_db.django()}
    job = launcher.start(["migrate"], launcher.env(databases, TESTPROJ_SLOW_SECONDS="3"))
    job.wait_for_event("migration_started", migration="0003_slow")
    waiter = launcher.start(["wait-migrated"], launcher.env(databases))
    report = waiter.wait_for_event("migrations_waiting")
    assert "django-entrypoint run=" in report["holder"]
    assert waiter.wait(30) == 0, waiter.stderr()
    assert job.wait(30) == 0, job.stderr()


def test_pre_deploy_waiting_needs_only_the_pre_deploy_part(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """With ENTRYPOINT_PHASE=pre-deploy a waiting run needs only what the pre-deploy Job
    applies: it goes on once that Job ran, although a post-deploy migration is still pending;
    with the phase `all` it would still wait."""
    from tests.integration.test_deploy_phases import migrate_to, phase_env, start

    env = phase_env(launcher, pg_db, "shop", ENTRYPOINT_MIGRATE_WAIT_TIMEOUT="30s")
    migrate_to(env, "shop", "0001_initial")
    from tests.support.paths import PHASEPROJ

    pre = launcher.start(
        ["wait-migrated"], {**env, "ENTRYPOINT_PHASE": "pre-deploy"}, cwd=PHASEPROJ
    )
    every = launcher.start(
        ["wait-migrated"], {**env, "ENTRYPOINT_MIGRATE_WAIT_TIMEOUT": "2s"}, cwd=PHASEPROJ
    )
    pre.wait_for_event("migrations_waiting")
    job = start(launcher, ["migrate"], {**env, "ENTRYPOINT_PHASE": "pre-deploy"})
    assert job.popen.returncode == 0, job.stderr()
    assert pre.wait(30) == 0, pre.stderr()
    assert pre.wait_for_event("migrations_present")["needed"] == 1
    assert every.wait(30) == 75
    assert "shop.0003_remove_product_legacy_code" in every.error_lines()[0]


def test_sigterm_while_waiting_for_migrations_ends_the_run_at_once(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """SIGTERM while the run waits for migrations ends it within a second with 143."""
    proc = launcher.start(["wait-migrated"], launcher.env({"default": pg_db.django()}))
    proc.wait_for_event("migrations_waiting")
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(10) == 143
    assert time.monotonic() - sent < 1.5
    assert proc.error_lines() == [f"{PREFIX}stopped by SIGTERM before the app server started"]


def test_on_sqlite_a_waiting_run_polls_until_the_migrations_are_there(
    launcher: Launcher, tmp_path: Path
) -> None:
    """Without notices (SQLite) the waiting run polls with its back-off and still goes on once
    another process migrated, within about a second."""
    databases = sqlite_databases(tmp_path)
    launcher.run(["wait"], launcher.env(databases))  # the file exists, the schema does not
    waiter = launcher.start(["wait-migrated"], launcher.env(databases))
    waiter.wait_for_event("migrations_waiting")
    job = launcher.run(["migrate"], launcher.env(databases))
    assert job.popen.returncode == 0, job.stderr()
    done = time.monotonic()
    assert waiter.wait(30) == 0, waiter.stderr()
    assert time.monotonic() - done < 3


def test_the_manifest_vouches_for_a_waiting_run_without_django(
    launcher: Launcher, pg_db: PgDatabase, tmp_path: Path
) -> None:
    """With the manifest, a waiting run on a migrated database is ready through the fast path
    (no Django set-up), even while another run holds the migration lock, which would send a
    migrating run down the full path."""
    import psycopg

    from entrypoint.locks import lock_key

    databases = {"default": pg_db.django()}
    manifest = tmp_path / "manifest.json"
    assert (
        launcher.run(
            ["freeze", "--output", str(manifest)], launcher.env(databases)
        ).popen.returncode
        == 0
    )
    assert launcher.run(["migrate"], launcher.env(databases)).popen.returncode == 0
    env = launcher.env(databases, ENTRYPOINT_MANIFEST=str(manifest))
    with psycopg.connect(**pg_db.info, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(pg_db.name),))
        waiter = launcher.run(["--migrate=wait", "run", "--", "true"], env)
        migrating = launcher.start(["run", "--", "true"], env)
        skipped = migrating.wait_for_event("fast_path_skipped")
        migrating.popen.kill()
    assert waiter.popen.returncode == 0, waiter.stderr()
    present = waiter.wait_for_event("migrations_present")
    assert present["fast_path"] is True
    assert "another replica holds the migration lock" in skipped["reason"]


def test_off_never_migrates_and_says_so_at_the_start(launcher: Launcher, pg_db: PgDatabase) -> None:
    """ENTRYPOINT_MIGRATE=off waits for the database, serves health and execs without touching
    the schema; its first events say that this run never migrates."""
    port = free_port()
    env = health_env(launcher, {"default": pg_db.django()}, port, ENTRYPOINT_MIGRATE="off")
    proc = launcher.start(["run", "--", sys.executable, "-c", "import time; time.sleep(3)"], env)
    body = wait_for_readyz(port, proc, phase="ready")
    assert body["http"] == 200
    assert proc.wait(30) == 0, proc.stderr()
    events = [e["event"] for e in proc.events()]
    assert events[:2] == ["starting", "migrations_off"]
    assert proc.events()[0]["migrate"] == "off"
    assert "ENTRYPOINT_MIGRATE=off" in proc.events()[1]["reason"]
    assert "exec" in events
    assert tables(pg_db) == set()


def test_a_bad_migrate_mode_is_one_line_and_exit_64(launcher: Launcher, tmp_path: Path) -> None:
    """ENTRYPOINT_MIGRATE accepts auto, wait or off; anything else exits 64 naming the value."""
    proc = launcher.run(
        ["migrate"], launcher.env(sqlite_databases(tmp_path), ENTRYPOINT_MIGRATE="later")
    )
    assert proc.popen.returncode == 64
    assert proc.error_lines() == [
        f"{PREFIX}ENTRYPOINT_MIGRATE='later' is not accepted; use one of auto, wait, off"
    ]


def _epoch(timestamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
