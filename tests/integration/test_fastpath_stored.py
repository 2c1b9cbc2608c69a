"""The zero-config fast path: a run that ended well records the manifest of its code in the
database (``entrypoint_manifest``), and the next start of the same code takes the fast path
with no build step; any difference in what decides the graph sends it down the full path, which
records the manifest of the new code."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from entrypoint.fastpath import stored
from tests.support.databases import PgDatabase
from tests.support.mysql import MySQLDatabase
from tests.support.paths import REPO, TESTS
from tests.support.processes import Launcher, Proc

LOADERPROJ = TESTS / "projects" / "loaderproj"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A private copy of the loader project, free to edit."""
    copy = tmp_path / "loaderproj"
    shutil.copytree(LOADERPROJ, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def env_of(
    launcher: Launcher, project: Path, databases: dict[str, Any], **extra: str
) -> dict[str, str]:
    """The environment of an entrypoint process on the project copy (no manifest file)."""
    return launcher.env(
        PYTHONPATH=os.pathsep.join([str(project), str(REPO)]),
        DJANGO_SETTINGS_MODULE="loaderproj.settings",
        LOADERPROJ_DATABASES=json.dumps(databases),
        **extra,
    )


def start(launcher: Launcher, project: Path, env: dict[str, str]) -> Proc:
    """One ``migrate``, waited for; it must succeed."""
    proc = launcher.start(["migrate"], env, cwd=project)
    proc.wait(60)
    assert proc.popen.returncode == 0, proc.stderr()[-2000:]
    return proc


def named(proc: Proc, name: str) -> list[dict[str, Any]]:
    """The log events of one name."""
    return [e for e in proc.events() if e.get("event") == name]


def fast(proc: Proc) -> bool:
    """Whether the start took the fast path."""
    return bool(named(proc, "ready")[0].get("fast_path"))


@pytest.fixture
def recorded(launcher: Launcher, project: Path, pg_db: PgDatabase) -> dict[str, str]:
    """The project migrated once by the entrypoint: its manifest is in the database."""
    env = env_of(launcher, project, {"default": pg_db.django()})
    first = start(launcher, project, env)
    assert not fast(first)
    assert len(named(first, "manifest_recorded")) == 1
    return env


def test_the_second_start_takes_the_fast_path_with_no_build_step(
    launcher: Launcher, project: Path, recorded: dict[str, str], pg_db: PgDatabase
) -> None:
    """The first run migrates and records the manifest in its own table beside the audit table,
    keyed by the fingerprint of the code; the next start, with no ENTRYPOINT_MANIFEST, finds it
    and takes the fast path, writing nothing."""
    rows = pg_db.query(f"SELECT fingerprint, settings_key, manifest FROM {stored.TABLE}")
    [(fingerprint, key, text)] = rows
    assert len(fingerprint) == len(key) == 64
    assert json.loads(text)["settings_module"] == "loaderproj.settings"
    runs = pg_db.query("SELECT count(*) FROM entrypoint_migration_run")
    second = start(launcher, project, recorded)
    assert fast(second)
    [ready] = named(second, "ready")
    assert ready["manifest"] == "database"
    assert named(second, "fast_path_skipped") == []
    assert pg_db.query("SELECT count(*) FROM entrypoint_migration_run") == runs


def test_a_run_of_the_same_code_records_no_second_manifest(
    launcher: Launcher, project: Path, recorded: dict[str, str], pg_db: PgDatabase
) -> None:
    """A full-path run of code whose manifest is there already (the last run was interrupted,
    say) finds it by the file check and only marks it the newest."""
    pg_db.query("UPDATE entrypoint_migration_run SET status = 'interrupted'")
    again = start(launcher, project, recorded)
    assert not fast(again)
    assert named(again, "manifest_recorded") == []
    assert pg_db.query(f"SELECT count(*) FROM {stored.TABLE}") == [(1,)]


NEW_MIGRATION = (
    "from django.db import migrations\n\n\nclass Migration(migrations.Migration):\n"
    "    dependencies = [('keeper', '0002_item_note')]\n"
)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        pytest.param(
            "new-file",
            "migration files changed in {migrations} since the manifest: 0003_later.py added",
            id="new-file",
        ),
        pytest.param(
            "changed-file", "{migration} changed since the manifest was written", id="changed"
        ),
        pytest.param(
            "removed-file",
            "migration files changed in {migrations} since the manifest: 0002_item_note.py removed",
            id="removed",
        ),
        pytest.param("another-app", None, id="another-app"),
        pytest.param("migration-modules", None, id="migration-modules"),
        pytest.param(
            "swappable", "KEEPER_ITEM_MODEL differs from the manifest's", id="swappable-setting"
        ),
    ],
)
def test_any_difference_in_what_decides_the_graph_is_the_full_path(
    launcher: Launcher,
    project: Path,
    recorded: dict[str, str],
    pg_db: PgDatabase,
    change: str,
    why: str | None,
) -> None:
    """A new, changed or removed migration file, another app, other MIGRATION_MODULES or a
    swappable-model setting that moves the graph: the recorded manifest does not vouch, the
    start takes the full path (logged once at info: a new release's first start is no fault),
    records the manifest of the new code, and the start after it is fast again."""
    migrations = project / "keeper" / "migrations"
    migration = migrations / "0002_item_note.py"
    env = dict(recorded)
    if change == "new-file":
        (migrations / "0003_later.py").write_text(NEW_MIGRATION)
    elif change == "changed-file":
        migration.write_text(migration.read_text() + "# edited\n")
    elif change == "removed-file":
        migration.unlink()
    elif change == "another-app":
        env["LOADERPROJ_EXTRA_APPS"] = "django.contrib.contenttypes"
    elif change == "migration-modules":
        env["LOADERPROJ_MIGRATION_MODULES"] = "{}"
    else:
        env["LOADERPROJ_ITEM_MODEL"] = "keeper.Spare"
    proc = start(launcher, project, env)
    [skipped] = named(proc, "fast_path_skipped")
    assert skipped["level"] == "info"
    if why is None:
        expected = (
            "no manifest recorded in 'default' matches this code (none for these settings "
            "yet); the full path records one"
        )
    else:
        shown = why.format(migrations=migrations, migration=migration)
        expected = (
            f"no manifest recorded in 'default' matches this code (the newest: {shown}); the "
            "full path records one"
        )
    assert skipped["reason"] == expected
    assert len(named(proc, "manifest_recorded")) == 1
    assert fast(start(launcher, project, env))


def test_a_moved_modification_time_is_hashed_and_trusted(
    launcher: Launcher, project: Path, recorded: dict[str, str]
) -> None:
    """Same content, new modification times (another checkout of the same code, another
    image build): the files are hashed, found equal, and the start is fast."""
    now = time.time_ns()
    for path in (project / "keeper" / "migrations").glob("*.py"):
        os.utime(path, ns=(now, now))
    assert fast(start(launcher, project, recorded))


def test_times_that_say_nothing_do_not_vouch_for_a_file(
    launcher: Launcher, project: Path, pg_db: PgDatabase
) -> None:
    """Builds that set every file's modification time alike (reproducible images) make size
    and time vouch for nothing: a file edited to the same size, its time set back, is still
    found changed by its hash."""
    migrations = project / "keeper" / "migrations"
    fixed = 1_000_000_000 * 1_000_000_000
    for path in migrations.glob("*.py"):
        os.utime(path, ns=(fixed, fixed))
    env = env_of(launcher, project, {"default": pg_db.django()})
    assert not fast(start(launcher, project, env))
    assert fast(start(launcher, project, env))
    migration = migrations / "0002_item_note.py"
    text = migration.read_text()
    migration.write_text(text.replace("# A swappable", "# a swappable"))
    os.utime(migration, ns=(fixed, fixed))
    proc = start(launcher, project, env)
    assert not fast(proc)
    assert named(proc, "fast_path_skipped")[0]["reason"] == (
        f"no manifest recorded in 'default' matches this code (the newest: {migration} changed "
        "since the manifest was written); the full path records one"
    )


def test_sqlite_records_and_finds_its_manifest(
    launcher: Launcher, project: Path, tmp_path: Path
) -> None:
    """SQLite: the manifest goes into the database file; the second start reads it read-only
    and is fast."""
    databases = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
    }
    env = env_of(launcher, project, databases)
    assert not fast(start(launcher, project, env))
    assert fast(start(launcher, project, env))


def test_mariadb_records_and_finds_its_manifest(
    launcher: Launcher, project: Path, mysql_db: MySQLDatabase
) -> None:
    """MySQL/MariaDB: the manifest is recorded in the database and found by the next start."""
    env = env_of(launcher, project, {"default": mysql_db.django()})
    assert not fast(start(launcher, project, env))
    assert fast(start(launcher, project, env))
