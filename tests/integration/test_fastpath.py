"""The no-op fast path: ``freeze`` writes the manifest, and ``run``/``migrate`` trust it only when
the files, the settings and ``django_migrations`` agree, exactly as Django's own plan would."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entrypoint.fastpath import check as fastcheck
from entrypoint.fastpath import files as fastfiles
from entrypoint.fastpath import manifest
from entrypoint.fastpath.verdict import Doubt, Verdict
from entrypoint.locks import lock_key
from entrypoint.locks.mysql import lock_name as mysql_lock_name
from tests.support.databases import PgDatabase
from tests.support.mysql import MySQLDatabase
from tests.support.oracle import Oracle
from tests.support.paths import REPO, TESTS
from tests.support.pgcluster import free_port
from tests.support.processes import Launcher

SQUASHPROJ = TESTS / "projects" / "squashproj"
SECRET = "hunter2-Secret"
PREFIX = "django-entrypoint: error: "
Node = tuple[str, str]

LEDGER_SQUASH = ("ledger", "0001_squashed_0003_account_flag")
LEDGER_REPLACED = [
    ("ledger", "0001_initial"),
    ("ledger", "0002_account_note"),
    ("ledger", "0003_account_flag"),
]
ARCHIVE_SQUASH = ("archive", "0001_squashed_0002_box_label")
ARCHIVE_REPLACED = [("archive", "0001_initial"), ("archive", "0002_box_label")]
SQUASHES = {LEDGER_SQUASH: LEDGER_REPLACED, ARCHIVE_SQUASH: ARCHIVE_REPLACED}
# Every row a complete `migrate` of squashproj records (replaced nodes and squashes alike).
COMPLETE: list[Node] = [
    *LEDGER_REPLACED,
    LEDGER_SQUASH,
    ("ledger", "0004_entry"),
    *ARCHIVE_REPLACED,
    ARCHIVE_SQUASH,
    ("archive", "0003_box_size"),
    ("shelf", "0001_initial"),
    ("shelf", "0002_shelf_rank"),
]
# Rows Django ignores: an app that is not installed, and nodes with no file.
EXTRA: list[Node] = [("ghost", "0001_initial"), ("ledger", "0099_gone"), ("shelf", "0003_later")]


def squash_env(
    launcher: Launcher, project: Path, databases: dict[str, Any], **extra: str
) -> dict[str, str]:
    """The environment of an entrypoint process on (a copy of) the squash project."""
    return launcher.env(
        PYTHONPATH=os.pathsep.join([str(project), str(REPO)]),
        DJANGO_SETTINGS_MODULE="squashproj.settings",
        SQUASHPROJ_DATABASES=json.dumps(databases),
        **extra,
    )


def run_in(launcher: Launcher, project: Path, args: list[str], env: dict[str, str]) -> Any:
    """Run the entrypoint in ``project`` and wait for it."""
    proc = launcher.start(args, env, cwd=project)
    proc.wait(60)
    return proc


def events_named(proc: Any, name: str) -> list[dict[str, Any]]:
    """The log events of one name."""
    return [e for e in proc.events() if e.get("event") == name]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A private copy of the squash project, free to edit."""
    copy = tmp_path / "squashproj"
    shutil.copytree(SQUASHPROJ, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.fixture
def frozen(launcher: Launcher, project: Path, pg_db: PgDatabase, tmp_path: Path) -> dict[str, Any]:
    """The project migrated on a fresh database and frozen: environment with the manifest set."""
    env = squash_env(launcher, project, {"default": pg_db.django(PASSWORD=SECRET)})
    assert run_in(launcher, project, ["migrate"], env).popen.returncode == 0
    path = tmp_path / "manifest.json"
    proc = run_in(launcher, project, ["freeze", "--output", str(path)], env)
    assert proc.popen.returncode == 0, proc.stderr()
    return {**env, "ENTRYPOINT_MANIFEST": str(path)}


# --- freeze ------------------------------------------------------------------------------------


def test_freeze_records_every_node_its_file_and_no_secret(
    frozen: dict[str, str], project: Path
) -> None:
    """The manifest lists every migration on disk with its file's hash, the squashes' replaces
    and the settings that decide the graph, and never the password."""
    text = Path(frozen["ENTRYPOINT_MANIFEST"]).read_text()
    assert SECRET not in text
    data = json.loads(text)
    assert data["format"] == "django-entrypoint-manifest"
    assert data["settings"] == {
        "INSTALLED_APPS": ["ledger", "archive", "shelf"],
        "MIGRATION_MODULES": {},
        "swappable": {},
    }
    entry = data["databases"]["default"]
    assert set(entry) == {"ENGINE", "vendor", "NAME", "HOST", "PORT"}
    on_disk = {(path.parent.parent.name, path.stem) for path in project.glob("*/migrations/0*.py")}
    assert {(m["app"], m["name"]) for m in data["migrations"]} == on_disk
    for m in data["migrations"]:
        assert m["file"]["sha256"] == fastfiles.sha256_of(m["file"]["path"])
    replaces = {(m["app"], m["name"]): m.get("replaces") for m in data["migrations"]}
    assert replaces[LEDGER_SQUASH] == [list(n) for n in LEDGER_REPLACED]
    assert replaces[ARCHIVE_SQUASH] == [list(n) for n in ARCHIVE_REPLACED]


def test_freeze_refuses_an_unwritable_output(launcher: Launcher, tmp_path: Path) -> None:
    """A manifest path that cannot be written: one line naming it and the fix, exit 64."""
    env = launcher.env()
    target = tmp_path / "missing" / "manifest.json"
    proc = launcher.run(["freeze", "--output", str(target)], env)
    assert proc.popen.returncode == 64
    assert proc.error_lines() == [
        f"{PREFIX}cannot write the manifest to {target}: No such file or directory; choose a "
        "writable path with --output or ENTRYPOINT_MANIFEST"
    ]


def test_freeze_refuses_conflicting_migrations(launcher: Launcher) -> None:
    """Two leaf nodes in one app are refused at build time, with the command that fixes them."""
    proc = launcher.run(["freeze"], launcher.env(TESTPROJ_EXTRA_APPS="conflicted"))
    assert proc.popen.returncode == 64
    assert proc.error_lines() == [
        f"{PREFIX}conflicting migrations: several leaf nodes in the migration graph "
        "(0002_left, 0002_right in conflicted); run 'python manage.py makemigrations --merge' "
        "and commit the merge migration"
    ]
    assert proc.stdout() == ""


# --- the fast path, as real processes ------------------------------------------------------------


def test_migrate_with_nothing_to_do_never_imports_django(
    launcher: Launcher, project: Path, frozen: dict[str, str]
) -> None:
    """Everything applied: migrate exits 0 on the fast path, and Django is never imported."""
    proc = run_in(launcher, project, ["migrate"], {**frozen, "PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.popen.returncode == 0, proc.stderr()
    assert events_named(proc, "nothing_to_migrate") == [
        {**events_named(proc, "nothing_to_migrate")[0], "database": "default", "fast_path": True}
    ]
    assert events_named(proc, "ready")[0]["fast_path"] is True
    imported = [
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr().splitlines()
        if line.startswith("import time:") and "|" in line
    ]
    # The query goes through the fast path's own protocol client: no psycopg either.
    assert "psycopg" not in imported
    assert [name for name in imported if name == "django" or name.startswith("django.")] == []


def test_run_execs_at_once_and_readiness_turns_ready(
    launcher: Launcher, project: Path, frozen: dict[str, str]
) -> None:
    """`run` on the fast path execs the command (same pid) and /readyz answers 200 after it."""
    port = free_port()
    app = (
        "import os, time, urllib.request\n"
        "for _ in range(200):\n"
        "    try:\n"
        f"        answer = urllib.request.urlopen('http://127.0.0.1:{port}/readyz', timeout=2)\n"
        "        break\n"
        "    except OSError:\n"
        "        time.sleep(0.05)\n"
        "print(os.getpid(), answer.status, answer.read().decode(), flush=True)\n"
    )
    env = {**frozen, "ENTRYPOINT_HEALTH_PORT": str(port), "ENTRYPOINT_HEALTH_ADDR": "127.0.0.1"}
    proc = run_in(launcher, project, ["run", "--", sys.executable, "-c", app], env)
    assert proc.popen.returncode == 0, proc.stderr()
    pid, status, body = proc.stdout().split(" ", 2)
    assert (int(pid), int(status)) == (proc.pid, 200)
    assert json.loads(body)["status"] == "ready"
    assert events_named(proc, "ready")[0]["fast_path"] is True
    assert events_named(proc, "migration_applied") == []


def test_sidecar_is_ready_on_the_fast_path_and_serves_until_sigterm(
    launcher: Launcher, project: Path, frozen: dict[str, str]
) -> None:
    """`sidecar` with nothing to migrate turns ready on the fast path, then serves health until
    SIGTERM ends it with 0."""
    port = free_port()
    env = {**frozen, "ENTRYPOINT_HEALTH_PORT": str(port), "ENTRYPOINT_HEALTH_ADDR": "127.0.0.1"}
    proc = launcher.start(["sidecar"], env, cwd=project)
    proc.wait_for_event("serving_health")
    assert events_named(proc, "ready")[0]["fast_path"] is True
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
        assert answer.status == 200
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_pending_migrations_take_the_full_path(
    launcher: Launcher, project: Path, frozen: dict[str, str], pg_factory: Any
) -> None:
    """A database with work to do: the reason is logged once (info) and the full path migrates."""
    fresh = pg_factory()
    env = {**frozen, "SQUASHPROJ_DATABASES": json.dumps({"default": fresh.django()})}
    proc = run_in(launcher, project, ["migrate"], env)
    assert proc.popen.returncode == 0, proc.stderr()
    [skipped] = events_named(proc, "fast_path_skipped")
    assert skipped["level"] == "info"
    assert skipped["reason"] == "there is no django_migrations table yet"
    assert len(events_named(proc, "migration_applied")) == 6  # the squashes stand in
    again = run_in(launcher, project, ["migrate"], env)
    assert events_named(again, "ready")[0].get("fast_path") is True


@pytest.mark.parametrize(
    ("change", "fast"),
    [
        pytest.param("touch", True, id="mtime-only"),
        pytest.param("edit", False, id="content"),
        pytest.param("add", False, id="new-file"),
        pytest.param("damage", False, id="damaged-manifest"),
        pytest.param("apps", False, id="installed-apps"),
    ],
)
def test_a_stale_manifest_falls_back_with_the_reason(
    launcher: Launcher, project: Path, frozen: dict[str, str], change: str, fast: bool
) -> None:
    """A moved modification time alone is checked by hash and trusted; changed content, a new
    file, a damaged manifest or other INSTALLED_APPS send the start down the full path, logged
    once as a warning naming the cause."""
    migration = project / "shelf" / "migrations" / "0002_shelf_rank.py"
    env = dict(frozen)
    if change == "touch":
        os.utime(migration, ns=(time.time_ns(), time.time_ns()))
    elif change == "edit":
        migration.write_text(migration.read_text() + "# edited\n")
    elif change == "add":
        (project / "shelf" / "migrations" / "0003_later.py").write_text(
            "from django.db import migrations\n\n\nclass Migration(migrations.Migration):\n"
            "    dependencies = [('shelf', '0002_shelf_rank')]\n"
        )
    elif change == "damage":
        Path(env["ENTRYPOINT_MANIFEST"]).write_text('{"format": "django-entrypoint-manifest"')
    elif change == "apps":
        settings_file = project / "squashproj" / "settings.py"
        settings_file.write_text(
            settings_file.read_text() + "INSTALLED_APPS += ['django.contrib.contenttypes']\n"
        )
    proc = run_in(launcher, project, ["migrate"], env)
    assert proc.popen.returncode == 0, proc.stderr()
    if fast:
        assert events_named(proc, "fast_path_skipped") == []
        assert events_named(proc, "ready")[0]["fast_path"] is True
        return
    [skipped] = events_named(proc, "fast_path_skipped")
    assert skipped["level"] == "warning"
    expected = {
        "edit": f"{migration} changed since the manifest was written",
        "add": f"migration files changed in {migration.parent} since the manifest: 0003_later.py added",
        "damage": f"the manifest {env['ENTRYPOINT_MANIFEST']} is not valid JSON at line 1; "
        "write it again with freeze",
        "apps": "INSTALLED_APPS differs from the manifest's",
    }[change]
    assert skipped["reason"] == expected
    assert "fast_path" not in events_named(proc, "ready")[0]


def test_a_held_lock_sends_the_start_to_the_full_path(
    launcher: Launcher, project: Path, frozen: dict[str, str], pg_db: PgDatabase
) -> None:
    """While another session holds the migration lock (a replica still migrating), all rows may be
    there before its post-migrate work is done: the start waits on the full path instead."""
    with pg_db.connect() as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(pg_db.name),))
        proc = run_in(launcher, project, ["migrate"], {**frozen, "ENTRYPOINT_LOCK_TIMEOUT": "0.5"})
    assert proc.popen.returncode == 75
    [skipped] = events_named(proc, "fast_path_skipped")
    assert skipped["reason"] == "another replica holds the migration lock on 'default'"


@pytest.mark.parametrize(
    ("status", "ended"),
    [("interrupted", "interrupted"), ("failed", "failed"), ("running", "without finishing")],
)
def test_a_run_that_did_not_finish_sends_the_next_start_to_the_full_path(
    launcher: Launcher,
    project: Path,
    frozen: dict[str, str],
    pg_db: PgDatabase,
    status: str,
    ended: str,
) -> None:
    """All rows are there, but the last run ended before its post-migrate work (interrupted,
    failed, or still "running" with nobody holding the lock: a SIGKILLed holder): the start
    takes the full path, which runs Django's migrate once; the next start is fast again."""
    pg_db.query(
        "UPDATE entrypoint_migration_run SET status = %s "
        "WHERE seq = (SELECT max(seq) FROM entrypoint_migration_run)",
        (status,),
    )
    proc = run_in(launcher, project, ["migrate"], frozen)
    assert proc.popen.returncode == 0, proc.stderr()
    [skipped] = events_named(proc, "fast_path_skipped")
    assert (skipped["level"], skipped["reason"]) == (
        "info",
        f"the last run on 'default' ended {ended}",
    )
    # A dead holder's "running" row is reaped as interrupted first.
    assert [e["previous_status"] for e in events_named(proc, "finishing_previous_run")] == [
        "interrupted" if status == "running" else status
    ]
    again = run_in(launcher, project, ["migrate"], frozen)
    assert events_named(again, "ready")[0].get("fast_path") is True


def test_a_squash_over_applied_migrations_is_recorded_before_the_fast_path_trusts_it(
    launcher: Launcher, project: Path, frozen: dict[str, str], pg_db: PgDatabase
) -> None:
    """A squash deployed onto a database that ran the migrations it replaces has nothing to
    apply, but Django's migrate records it, so that deleting the replaced files later does not
    run it again: the fast path leaves that to the full path, which records it."""
    squash_row = "SELECT count(*) FROM django_migrations WHERE app = %s AND name = %s"
    pg_db.query("DELETE FROM django_migrations WHERE app = %s AND name = %s", LEDGER_SQUASH)
    proc = run_in(launcher, project, ["migrate"], frozen)
    assert proc.popen.returncode == 0, proc.stderr()
    [skipped] = events_named(proc, "fast_path_skipped")
    assert skipped["reason"] == (
        "the squashed migration ledger.0001_squashed_0003_account_flag is not recorded on "
        "'default' yet"
    )
    [recorded] = events_named(proc, "squashes_recorded")
    assert recorded["migrations"] == ["ledger.0001_squashed_0003_account_flag"]
    assert pg_db.query(squash_row, LEDGER_SQUASH) == [(1,)]
    assert events_named(proc, "migration_applied") == []
    again = run_in(launcher, project, ["migrate"], frozen)
    assert events_named(again, "ready")[0].get("fast_path") is True


def test_a_database_migrated_without_the_entrypoint_takes_the_full_path_once(
    launcher: Launcher, project: Path, frozen: dict[str, str], pg_db: PgDatabase
) -> None:
    """Without the audit table (the database was migrated by manage.py alone) the fast path
    cannot tell how the last run ended: the full path runs once and creates the table."""
    pg_db.query("DROP TABLE entrypoint_migration_run")
    proc = run_in(launcher, project, ["migrate"], frozen)
    assert proc.popen.returncode == 0, proc.stderr()
    [skipped] = events_named(proc, "fast_path_skipped")
    assert skipped["reason"] == (
        "there is no audit table yet (the database was migrated without the entrypoint)"
    )
    again = run_in(launcher, project, ["migrate"], frozen)
    assert events_named(again, "ready")[0].get("fast_path") is True


def test_the_fast_path_counts_the_same_runs_as_unfinished_as_the_audit_trail() -> None:
    """The fast path takes the statuses that leave post-migrate work undone from the audit
    trail's one definition (its typed rows, which import no Django)."""
    from entrypoint.audit import rows

    assert fastcheck.UNFINISHED is rows.UNFINISHED


def test_a_database_that_is_not_up_yet_is_left_to_the_wait(
    launcher: Launcher, project: Path, frozen: dict[str, str], pg_db: PgDatabase
) -> None:
    """No server answers: the fast path gives way at once and the full path's wait decides."""
    down = pg_db.django(PASSWORD=SECRET, PORT=str(free_port()))
    env = {
        **frozen,
        "SQUASHPROJ_DATABASES": json.dumps({"default": down}),
        "ENTRYPOINT_WAIT_TIMEOUT": "0.5",
    }
    proc = run_in(launcher, project, ["migrate"], env)
    assert proc.popen.returncode == 69
    [skipped] = events_named(proc, "fast_path_skipped")
    assert skipped["reason"].startswith("the query failed (")
    assert SECRET not in proc.stderr()


def test_sqlite_takes_the_fast_path_too(launcher: Launcher, project: Path, tmp_path: Path) -> None:
    """SQLite: one read-only query on the file, then ready on the fast path."""
    databases = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
    }
    path = tmp_path / "sqlite-manifest.json"
    env = squash_env(launcher, project, databases, ENTRYPOINT_MANIFEST=str(path))
    assert run_in(launcher, project, ["freeze"], env).popen.returncode == 0
    first = run_in(launcher, project, ["migrate"], env)
    assert events_named(first, "fast_path_skipped")[0]["reason"] == (
        "the SQLite file does not exist yet"
    )
    second = run_in(launcher, project, ["migrate"], env)
    assert second.popen.returncode == 0, second.stderr()
    assert events_named(second, "ready")[0]["fast_path"] is True


def test_mariadb_takes_the_fast_path_and_sees_its_lock(
    launcher: Launcher, project: Path, tmp_path: Path, mysql_db: MySQLDatabase
) -> None:
    """MySQL/MariaDB: one query through mysqlclient, ready on the fast path; while another
    session holds the GET_LOCK lock the start waits on the full path instead."""
    path = tmp_path / "mysql-manifest.json"
    env = squash_env(
        launcher, project, {"default": mysql_db.django()}, ENTRYPOINT_MANIFEST=str(path)
    )
    assert run_in(launcher, project, ["migrate"], env).popen.returncode == 0
    assert run_in(launcher, project, ["freeze"], env).popen.returncode == 0
    fast = run_in(launcher, project, ["migrate"], env)
    assert fast.popen.returncode == 0, fast.stderr()
    assert events_named(fast, "ready")[0]["fast_path"] is True
    holder = mysql_db.connect()
    try:
        cursor = holder.cursor()
        cursor.execute("SELECT GET_LOCK(%s, 0)", (mysql_lock_name(mysql_db.name),))
        held = run_in(launcher, project, ["migrate"], {**env, "ENTRYPOINT_LOCK_TIMEOUT": "0.5"})
    finally:
        holder.close()
    assert held.popen.returncode == 75
    [skipped] = events_named(held, "fast_path_skipped")
    assert skipped["reason"] == "another replica holds the migration lock on 'default'"


# --- the property: the fast path agrees with Django's own plan ------------------------------------


@pytest.fixture(scope="module")
def agreement(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A database, the squash project's manifest, Django's plan on demand and a row writer."""
    name = f"ep_manifest_{os.getpid()}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    pg = PgDatabase(pg_server, name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENTRYPOINT_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(SQUASHPROJ), str(REPO)]),
        DJANGO_SETTINGS_MODULE="squashproj.settings",
        SQUASHPROJ_DATABASES=json.dumps({"default": pg.django()}),
    )
    path = tmp_path_factory.mktemp("manifest") / "manifest.json"
    # A run of the entrypoint creates the audit table (one run in it, succeeded) and records the
    # manifest in the database; freeze writes the same manifest to a file.
    for args in (["migrate"], ["freeze", "--output", str(path)]):
        subprocess.run(
            [sys.executable, "-m", "entrypoint", *args],
            env={**env, "ENTRYPOINT_HEALTH_PORT": "0"},
            cwd=SQUASHPROJ,
            check=True,
            capture_output=True,
            timeout=60,
        )
    oracle = Oracle(env, SQUASHPROJ)
    conn = pg.connect()

    class Agreement:
        frozen = manifest.load(str(path))
        values = {
            "INSTALLED_APPS": ["ledger", "archive", "shelf"],
            "DATABASES": {"default": pg.django()},
        }

        def answers(self, rows: set[Node]) -> tuple[list[Node], bool, Verdict]:
            """Record exactly ``rows``, then ask Django (plan, history consistent) and the fast
            path, which says the same with the manifest ``freeze`` wrote and with the one a run
            recorded in the database."""
            with conn.transaction():
                conn.execute("DELETE FROM django_migrations")
                with conn.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, now())",
                        sorted(rows),
                    )
            verdict = fastcheck.verify(self.frozen, self.values, ("default",))
            stored = fastcheck.verify_stored("squashproj.settings", self.values, ("default",))
            assert (stored.nothing_to_do, stored.reason, stored.doubt) == (
                verdict.nothing_to_do,
                verdict.reason,
                verdict.doubt,
            )
            assert stored.source == ("database" if stored.nothing_to_do else "file")
            plan, consistent = oracle.plan()
            return plan, consistent, verdict

    yield Agreement()
    conn.close()
    oracle.close()
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def partly_applied(rows: set[Node]) -> bool:
    """Some but not all nodes of a squash are recorded (Django then falls back to them)."""
    return any(0 < len(rows & set(replaced)) < len(replaced) for replaced in SQUASHES.values())


def squash_to_record(rows: set[Node]) -> bool:
    """A squash whose replaced nodes are all recorded but not itself: Django's migrate records
    it even with nothing to apply, so the start has that to do."""
    return any(
        set(replaced) <= rows and squash not in rows for squash, replaced in SQUASHES.items()
    )


UNIVERSE = sorted({*COMPLETE, *EXTRA})
states = st.one_of(
    st.sets(st.sampled_from(UNIVERSE)),
    # Near the end of a deploy: everything but a few rows, maybe with stray ones.
    st.builds(
        lambda drop, extra: (set(COMPLETE) - drop) | extra,
        st.sets(st.sampled_from(COMPLETE), max_size=2),
        st.sets(st.sampled_from(EXTRA)),
    ),
    # Histories from before the squashes existed, or that never recorded them.
    st.builds(
        lambda extra: (set(COMPLETE) - set(SQUASHES)) | extra, st.sets(st.sampled_from(EXTRA))
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=states)
def test_nothing_to_do_exactly_when_djangos_plan_is_empty(agreement: Any, rows: set[Node]) -> None:
    """Over nothing, partial, all, squashed and replaced, extra and unknown rows: the fast path
    says "nothing to do" exactly when Django's plan on leaf nodes is empty, Django would take the
    history as consistent and no squash is left for migrate to record, and otherwise counts the
    same pending migrations. A partly applied squash is a doubt, never "nothing to do"."""
    plan, consistent, verdict = agreement.answers(rows)
    if partly_applied(rows):
        assert not verdict.nothing_to_do
        assert verdict.doubt
        assert verdict.reason.startswith("the squashed migration ")
        assert verdict.reason.endswith(" is partly applied")
        return
    assert verdict.nothing_to_do == (plan == [] and consistent and not squash_to_record(rows))
    if plan:
        assert not verdict.doubt
        assert verdict.reason.startswith(f"{len(plan)} migration(s) pending on 'default': ")
    elif not consistent:
        assert not verdict.doubt
        assert verdict.reason.startswith("the migration history of 'default' is inconsistent: ")
    elif squash_to_record(rows):
        assert not verdict.doubt
        assert verdict.reason.startswith("the squashed migration ")
        assert verdict.reason.endswith(" is not recorded on 'default' yet")


def test_the_states_that_matter_are_all_covered(agreement: Any) -> None:
    """The named states of the property, checked every time whatever hypothesis draws:
    nothing, all, all with stray rows, all without the squash rows (which migrate then records), a
    squash row alone, a partly applied squash, and histories Django's plan passes over (an
    applied leaf whose ancestor is not applied adds nothing to the plan, but Django's migrate
    refuses that history, so the full path reports it)."""
    cases: list[tuple[set[Node], bool | None]] = [
        (set(), False),
        (set(COMPLETE), True),
        (set(COMPLETE) | set(EXTRA), True),
        (set(COMPLETE) - set(SQUASHES), False),
        ((set(COMPLETE) - set(LEDGER_REPLACED)) | {LEDGER_SQUASH}, True),
        ((set(COMPLETE) - set(LEDGER_REPLACED) - {("ledger", "0004_entry")}), False),
        (set(COMPLETE) - {LEDGER_REPLACED[1]}, None),
        (set(COMPLETE) - {("shelf", "0001_initial")}, False),
    ]
    for rows, expected in cases:
        plan, consistent, verdict = agreement.answers(rows)
        if expected is None:
            assert verdict.doubt
            assert not verdict.nothing_to_do
        else:
            assert verdict.nothing_to_do is expected, rows
            assert (plan == [] and consistent and not squash_to_record(rows)) is expected, rows


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_damaged_manifest_is_a_doubt_never_a_crash(agreement: Any, data: st.DataObject) -> None:
    """A real manifest with any one value replaced or removed, however deep: reading it and
    checking its files give a manifest and a count, or a Doubt, never another exception."""
    document = json.loads(manifest.dumps(agreement.frozen))
    parent: Any = None
    key: Any = None
    node: Any = document
    for _ in range(data.draw(st.integers(1, 6))):
        if isinstance(node, dict) and node:
            key = data.draw(st.sampled_from(sorted(node)))
        elif isinstance(node, list) and node:
            key = data.draw(st.integers(0, len(node) - 1))
        else:
            break
        parent, node = node, node[key]
    if parent is not None:
        if isinstance(parent, dict) and data.draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = data.draw(JSON)
    try:
        checked = fastfiles.check_files(manifest.from_json(document))
    except Doubt:
        return
    assert checked >= 0


def test_a_frozen_manifest_reads_back_unchanged(agreement: Any) -> None:
    """What freeze writes, load reads back to the same manifest."""
    again = manifest.from_json(json.loads(manifest.dumps(agreement.frozen)))
    assert again == agreement.frozen


# --- apps as Django's loader sees them -----------------------------------------------------------

LOADERPROJ = TESTS / "projects" / "loaderproj"


@pytest.fixture
def loader_project(tmp_path: Path) -> Path:
    """A private copy of the loader project (one app of each kind the loader tells apart)."""
    copy = tmp_path / "loaderproj"
    shutil.copytree(LOADERPROJ, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def loader_env(
    launcher: Launcher, project: Path, pg_db: PgDatabase, **extra: str
) -> dict[str, str]:
    """The environment of an entrypoint process on (a copy of) the loader project."""
    return launcher.env(
        PYTHONPATH=os.pathsep.join([str(project), str(REPO)]),
        DJANGO_SETTINGS_MODULE="loaderproj.settings",
        LOADERPROJ_DATABASES=json.dumps({"default": pg_db.django()}),
        **extra,
    )


@pytest.fixture
def loader_frozen(
    launcher: Launcher, loader_project: Path, pg_db: PgDatabase, tmp_path: Path
) -> dict[str, str]:
    """The loader project migrated and frozen: its environment with the manifest set."""
    env = loader_env(launcher, loader_project, pg_db)
    assert run_in(launcher, loader_project, ["migrate"], env).popen.returncode == 0
    path = tmp_path / "loader-manifest.json"
    proc = run_in(launcher, loader_project, ["freeze", "--output", str(path)], env)
    assert proc.popen.returncode == 0, proc.stderr()
    return {**env, "ENTRYPOINT_MANIFEST": str(path)}


def test_apps_without_migrations_are_told_apart_as_djangos_loader_does(
    launcher: Launcher, loader_project: Path, loader_frozen: dict[str, str]
) -> None:
    """A plain ``migrations.py`` module, a namespace ``migrations`` directory, an app that
    MIGRATION_MODULES turns off and one without the module are all unmigrated, as Django's
    loader has them: the manifest holds only the one real migration, records the plain module
    as a file (its presence is no doubt) and what would give the others a package, and the next
    start takes the fast path."""
    data = json.loads(Path(loader_frozen["ENTRYPOINT_MANIFEST"]).read_text())
    assert sorted((m["app"], m["name"]) for m in data["migrations"]) == [
        ("keeper", "0001_initial"),
        ("keeper", "0002_item_note"),
    ]
    assert data["settings"]["swappable"] == {"KEEPER_ITEM_MODEL": "keeper.Item"}
    assert [p["app"] for p in data["packages"]] == ["keeper"]
    files = {f["path"] for f in data["files"]}
    assert str(loader_project / "plainmod" / "migrations.py") in files
    absent = set(data["absent"])
    for path in (
        "plainmod/migrations/__init__.py",
        "nsapp/migrations/__init__.py",
        "bare/migrations/__init__.py",
        "bare/migrations.py",
        "keeper/apps.py",
    ):
        assert str(loader_project / path) in absent, path
    assert not [p for p in absent if "/offapp/migrations" in p]
    assert not [p for p in absent if p.endswith("plainmod/migrations.py")]
    proc = run_in(launcher, loader_project, ["migrate"], loader_frozen)
    assert proc.popen.returncode == 0, proc.stderr()
    assert events_named(proc, "fast_path_skipped") == []
    assert events_named(proc, "ready")[0]["fast_path"] is True


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(
            "nsapp/migrations/__init__.py",
            "{path} appeared since the manifest was written",
            id="ns",
        ),
        pytest.param(
            "bare/migrations/__init__.py",
            "{path} appeared since the manifest was written",
            id="bare",
        ),
        pytest.param(
            "plainmod/migrations/__init__.py",
            "{path} appeared since the manifest was written",
            id="plain-to-package",
        ),
        pytest.param(
            "plainmod/migrations.py", "{path} changed since the manifest was written", id="plain"
        ),
        pytest.param(
            "keeper/apps.py", "{path} appeared since the manifest was written", id="app-config"
        ),
        pytest.param("MIGRATION_MODULES", "MIGRATION_MODULES differs from the manifest's", id="mm"),
    ],
)
def test_what_would_change_an_unmigrated_app_sends_the_start_to_the_full_path(
    launcher: Launcher,
    loader_project: Path,
    loader_frozen: dict[str, str],
    change: str,
    reason: str,
) -> None:
    """A package that appears where the loader found none (in a namespace directory, in an app
    without the module, beside a plain ``migrations.py``, which a package then shadows), an
    edited plain module, a new app config (its label may differ) or MIGRATION_MODULES no longer
    turning an app off: each is a doubt naming the cause, and the full path decides."""
    env = dict(loader_frozen)
    path = loader_project / change
    if change == "MIGRATION_MODULES":
        env["LOADERPROJ_MIGRATION_MODULES"] = "{}"
    elif change.endswith("__init__.py"):
        path.parent.mkdir(exist_ok=True)
        path.write_text("")
    elif change == "keeper/apps.py":
        path.write_text(
            "from django.apps import AppConfig\n\n\nclass KeeperConfig(AppConfig):\n"
            "    name = 'keeper'\n"
        )
    else:
        path.write_text(path.read_text() + "MIGRATIONS_SEEN = 1\n")
    proc = run_in(launcher, loader_project, ["migrate"], env)
    assert proc.popen.returncode == 0, proc.stderr()
    [skipped] = events_named(proc, "fast_path_skipped")
    assert (skipped["level"], skipped["reason"]) == ("warning", reason.format(path=path))
    assert "fast_path" not in events_named(proc, "ready")[0]


def test_freeze_refuses_a_migrations_module_that_does_not_import(
    launcher: Launcher, loader_project: Path, pg_db: PgDatabase, tmp_path: Path
) -> None:
    """An explicit MIGRATION_MODULES entry naming a module that does not exist: migrate's own
    loader refuses it, and so does freeze, with one line and exit 64."""
    env = loader_env(
        launcher, loader_project, pg_db, LOADERPROJ_MIGRATION_MODULES='{"keeper": "keeper.gone"}'
    )
    proc = run_in(launcher, loader_project, ["freeze", "--output", str(tmp_path / "m.json")], env)
    assert proc.popen.returncode == 64
    assert proc.error_lines() == [
        f"{PREFIX}a migrations module does not import (No module named 'keeper.gone'); fix "
        "MIGRATION_MODULES or the app, as migrate needs it too"
    ]
