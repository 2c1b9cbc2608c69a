"""The read-only CI gate: each problem kind on SQLite and a real PostgreSQL, and no writes.

Django can be set up only once per process, so every check runs in a subprocess against the
test project ``tests/projects/phaseproj`` with the apps each case needs. Each test asserts the
exact problem lines, and that the database looks the same afterwards: same tables, same
``django_migrations`` rows (and no such table when there was none).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.databases import PgDatabase
from tests.support.paths import PHASEPROJ

# Runs find_problems in a fresh process and prints the problems (or the error) as JSON.
DRIVER = """
import json, sys
import django
django.setup()
from entrypoint.engine.check import find_problems
from entrypoint.errors import EntrypointError
from entrypoint.plan.types import Policy
alias, policy = sys.argv[1], sys.argv[2]
try:
    found = find_problems(alias, None if policy == "none" else Policy(policy))
except EntrypointError as exc:
    print(json.dumps({"error": str(exc), "exit_code": exc.exit_code}))
else:
    print(json.dumps([problem.to_dict() for problem in found]))
"""


@dataclass
class Project:
    """The test project pointed at one throw-away database."""

    vendor: str
    databases: dict[str, Any]
    apps: list[str] = field(default_factory=lambda: ["shop"])
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        extra = dict(self.extra_env)  # a PYTHONPATH of its own comes after the project
        path = [str(PHASEPROJ), extra.pop("PYTHONPATH", None), env.get("PYTHONPATH")]
        env.update(
            PYTHONPATH=os.pathsep.join(filter(None, path)),
            DJANGO_SETTINGS_MODULE="phaseproj.settings",
            PHASEPROJ_APPS=",".join(self.apps),
            PHASEPROJ_DATABASES=json.dumps(self.databases),
            **extra,
        )
        return env

    def migrate(self, *args: str) -> None:
        """Run Django's own migrate command on the project (verbosity 0)."""
        command = [sys.executable, "-m", "django", "migrate", *args, "-v0"]
        subprocess.run(command, env=self.env(), cwd=PHASEPROJ, check=True, timeout=60)

    def problems(self, policy: str = "none", alias: str = "default") -> Any:
        """find_problems for ``alias``, asserting that it left the database as it found it."""
        before = self.snapshot()
        result = subprocess.run(
            [sys.executable, "-c", DRIVER, alias, policy],
            env=self.env(),
            cwd=PHASEPROJ,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert self.snapshot() == before
        return json.loads(result.stdout)

    def lines(self, policy: str = "none") -> list[str]:
        """The problems as ``kind: message`` lines, in the order they are reported."""
        return [f"{p['kind']}: {p['message']}" for p in self.problems(policy)]

    def snapshot(self) -> tuple[list[str], list[tuple[str, str]] | None]:
        """The tables, and the recorded migrations (None when there is no record table)."""
        settings = self.databases["default"]
        if self.vendor == "sqlite":
            with sqlite3.connect(settings["NAME"]) as conn:
                tables = [
                    row[0]
                    for row in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
                    )
                ]
                rows = (
                    conn.execute("SELECT app, name FROM django_migrations ORDER BY id").fetchall()
                    if "django_migrations" in tables
                    else None
                )
            return tables, rows
        with psycopg.connect(**_psycopg_params(settings)) as conn:
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'public' ORDER BY table_name"
                )
            ]
            pg_rows = (
                [
                    (str(app), str(name))
                    for app, name in conn.execute(
                        "SELECT app, name FROM django_migrations ORDER BY id"
                    )
                ]
                if "django_migrations" in tables
                else None
            )
        return tables, pg_rows


def _psycopg_params(settings: dict[str, Any]) -> dict[str, Any]:
    params = {
        "dbname": settings["NAME"],
        "user": settings["USER"],
        "password": settings["PASSWORD"],
        "host": settings["HOST"],
        "port": settings["PORT"],
    }
    return {key: value for key, value in params.items() if value}


@pytest.fixture
def sqlite_project(tmp_path: Path) -> Project:
    """The test project on a SQLite file in a fresh directory."""
    databases = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
    }
    return Project("sqlite", databases)


@pytest.fixture
def postgresql_project(pg_db: PgDatabase) -> Project:
    """The test project on a fresh database of a real PostgreSQL (dropped after the test)."""
    return Project("postgresql", {"default": pg_db.django()})


@pytest.fixture(params=["sqlite", "postgresql"])
def project(request: pytest.FixtureRequest) -> Project:
    """The test project on SQLite, then on PostgreSQL."""
    result: Project = request.getfixturevalue(f"{request.param}_project")
    return result


def unapplied(*names: str) -> list[str]:
    """The unapplied-migration lines for these migrations on database 'default'."""
    return [
        f"unapplied: {name} is not applied on database 'default'; apply it with "
        "'django-entrypoint migrate'"
        for name in names
    ]


SHOP_PENDING = ("shop.0002_product_note", "shop.0003_remove_product_legacy_code")
HELD_LEGACY_CODE = (
    "policy: shop.0003_remove_product_legacy_code is post-deploy and ENTRYPOINT_PHASE=pre-deploy "
    "holds it (RemoveField shop.Product.legacy_code: drops a column old code still reads and "
    "writes); apply it with ENTRYPOINT_PHASE=post-deploy once no old code runs"
)


def test_clean_project_has_no_problems(project: Project) -> None:
    """With every migration applied and models in step, nothing is reported under any policy."""
    project.migrate()
    for policy in ("none", "all", "pre-deploy", "post-deploy"):
        assert project.problems(policy) == []


def test_fresh_database_is_all_unapplied_and_stays_empty(project: Project) -> None:
    """Without a django_migrations table everything is unapplied, and no table gets created."""
    assert project.snapshot() == ([], None)
    assert project.lines("pre-deploy") == unapplied("shop.0001_initial", *SHOP_PENDING)
    assert project.snapshot() == ([], None)


def test_unapplied_migrations_are_reported_one_per_line_as_json_objects(project: Project) -> None:
    """Each pending migration is its own problem, with app and name for machines."""
    project.migrate("shop", "0001")
    assert project.problems() == [
        {
            "kind": "unapplied",
            "database": "default",
            "app": "shop",
            "name": name.split(".")[1],
            "message": line.removeprefix("unapplied: "),
        }
        for name, line in zip(SHOP_PENDING, unapplied(*SHOP_PENDING), strict=True)
    ]


def test_pre_deploy_policy_reports_what_it_would_hold(project: Project) -> None:
    """``pre-deploy`` would hold the RemoveField; ``post-deploy`` and ``all`` would apply it."""
    project.migrate("shop", "0001")
    assert project.lines("pre-deploy") == [*unapplied(*SHOP_PENDING), HELD_LEGACY_CODE]
    assert project.lines("post-deploy") == unapplied(*SHOP_PENDING)
    assert project.lines("all") == unapplied(*SHOP_PENDING)
    project.migrate("shop", "0002")
    assert project.lines("pre-deploy") == [*unapplied(SHOP_PENDING[1]), HELD_LEGACY_CODE]


def test_plan_that_cannot_be_split_is_reported(project: Project) -> None:
    """A pre-deploy migration on top of a held post-deploy one is refused, naming both."""
    project.apps = ["tangle"]
    project.migrate("tangle", "0001")
    assert project.lines("pre-deploy") == [
        *unapplied("tangle.0002_remove_item_code", "tangle.0003_item_note"),
        "policy: cannot split the plan for the pre-deploy phase: tangle.0003_item_note is "
        "pre-deploy but depends on tangle.0002_remove_item_code, which is post-deploy and held; "
        'set entrypoint_phase = "post-deploy" on tangle.0003_item_note '
        "(settings.ENTRYPOINT_MIGRATION_PHASES for a migration you cannot edit) or move it into "
        "the next release",
    ]
    assert project.lines("post-deploy") == unapplied(
        "tangle.0002_remove_item_code", "tangle.0003_item_note"
    )


def test_unmarked_data_migration_is_a_policy_problem(sqlite_project: Project) -> None:
    """A RunPython without a mark is reported under a phased policy, and only there."""
    sqlite_project.apps = ["chores"]
    sqlite_project.migrate("chores", "0001")
    needs_mark = (
        "policy: chores.0002_backfill: RunPython backfill needs an explicit mark "
        "(entrypoint_phase): what it does to data cannot be judged from outside; set "
        'entrypoint_phase = "pre-deploy" or "post-deploy" on its Migration class'
    )
    for policy in ("pre-deploy", "post-deploy"):
        assert sqlite_project.lines(policy) == [*unapplied("chores.0002_backfill"), needs_mark]
    assert sqlite_project.lines("all") == unapplied("chores.0002_backfill")


def test_data_migration_of_a_new_app_needs_no_mark(sqlite_project: Project) -> None:
    """On a database that never ran the app, its data migration cannot affect old code."""
    sqlite_project.apps = ["chores"]
    assert sqlite_project.lines("pre-deploy") == unapplied(
        "chores.0001_initial", "chores.0002_backfill"
    )


def test_marked_migrations_are_held_by_their_marks(project: Project) -> None:
    """Marks in each supported form decide what pre-deploy would hold."""
    project.apps = ["marks"]
    project.migrate("marks", "0001")
    pending = (
        "marks.0002_entrypoint_mark",
        "marks.0003_safemigrate_enum_mark",
        "marks.0004_safemigrate_mark",
        "marks.0005_syzygy_mark",
    )
    assert project.lines("pre-deploy") == [
        *unapplied(*pending),
        "policy: marks.0004_safemigrate_mark is post-deploy and ENTRYPOINT_PHASE=pre-deploy holds "
        "it (marked post-deploy by django-safemigrate's safe); apply it with "
        "ENTRYPOINT_PHASE=post-deploy once no old code runs",
        "policy: marks.0005_syzygy_mark is post-deploy and ENTRYPOINT_PHASE=pre-deploy holds it "
        "(marked post-deploy by django-syzygy's stage); apply it with "
        "ENTRYPOINT_PHASE=post-deploy once no old code runs",
    ]


def test_missing_migration_is_reported(project: Project) -> None:
    """Model changes without a migration are found as ``makemigrations --check`` finds them."""
    project.apps = ["shop", "drift"]
    project.migrate()
    assert project.lines("pre-deploy") == [
        "missing: drift has model changes without a migration (Add field pinned to note); run "
        "'python manage.py makemigrations drift' and commit the migration"
    ]


def test_a_translated_verbose_name_is_not_a_missing_migration(project: Project) -> None:
    """Django's makemigrations detects changes with translations off: with LANGUAGE_CODE=de
    the label "Yes" reads "Ja", which is not a model change."""
    project.apps = ["shop", "polyglot"]
    project.extra_env = {"PHASEPROJ_LANGUAGE": "de"}
    project.migrate()
    assert project.lines() == []


def test_the_projects_own_makemigrations_decides_what_is_missing(project: Project) -> None:
    """A project that overrides makemigrations is asked through its command: what the override
    leaves out is not reported, what it finds is, with the changes it printed."""
    project.apps = ["shop", "drift", "quietmm"]
    project.migrate()
    assert project.lines() == [
        "missing: drift has model changes without a migration (Add field pinned to note); run "
        "'python manage.py makemigrations drift' and commit the migration"
    ]
    project.extra_env = {"PHASEPROJ_IGNORE_DRIFT": "1"}
    assert project.lines() == []


def vendored_drift(root: Path) -> Path:
    """The ``drift`` app (a model changed without a migration) as an installed package would
    put it: ``vendored_drift`` in a ``site-packages`` directory under ``root``; that directory."""
    packages = root / "site-packages"
    shutil.copytree(
        PHASEPROJ / "drift",
        packages / "vendored_drift",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return packages


def test_model_changes_in_an_installed_package_are_said_but_do_not_fail(
    project: Project, tmp_path: Path
) -> None:
    """An app whose migrations come from an installed package (pretix's own drift, say) is not
    the project's to fix: its model changes without a migration are an ``upstream`` warning,
    and ``check`` passes, saying so on standard error. MIGRATION_MODULES pointing its
    migrations into the project makes them the project's again: ``missing``, and a failure."""
    packages = vendored_drift(tmp_path)
    project.apps = ["shop", "vendored_drift"]
    project.extra_env = {"PYTHONPATH": str(packages)}
    project.migrate()
    assert project.lines() == [
        "upstream: vendored_drift has model changes without a migration (Add field pinned to "
        "note), but its migrations come from an installed package "
        f"({packages / 'vendored_drift' / 'migrations'}), which are its maintainers' to write; "
        "not counted: upgrade the package, or set MIGRATION_MODULES for 'vendored_drift' to "
        "migrations of your own"
    ]
    done = subprocess.run(
        [sys.executable, "-m", "entrypoint", "check"],
        env={**project.env(), "ENTRYPOINT_LOG_FORMAT": "json"},
        cwd=PHASEPROJ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok: no problem found on default"
    [warned] = [
        json.loads(line)
        for line in done.stderr.splitlines()
        if line.startswith("{") and "upstream_missing_migration" in line
    ]
    assert (warned["level"], warned["app"]) == ("warning", "vendored_drift")

    own = tmp_path / "project" / "ours"
    shutil.copytree(packages / "vendored_drift" / "migrations", own / "vendored_drift")
    (own / "__init__.py").write_text("")
    project.extra_env = {
        "PYTHONPATH": os.pathsep.join([str(packages), str(tmp_path / "project")]),
        "PHASEPROJ_MIGRATION_MODULES": json.dumps({"vendored_drift": "ours.vendored_drift"}),
    }
    assert project.lines() == [
        "missing: vendored_drift has model changes without a migration (Add field pinned to "
        "note); run 'python manage.py makemigrations vendored_drift' and commit the migration"
    ]


def test_conflicting_migrations_are_reported(project: Project) -> None:
    """Several leaf nodes in one app are a conflict, with the merge command to run."""
    project.apps = ["forked"]
    assert project.lines() == [
        "conflict: forked has conflicting migrations 0002_entry_left, 0002_entry_right (several "
        "leaf nodes); run 'python manage.py makemigrations --merge forked' and commit the merge "
        "migration",
        *unapplied("forked.0001_initial", "forked.0002_entry_left", "forked.0002_entry_right"),
    ]


def test_unknown_alias_is_a_configuration_error(sqlite_project: Project) -> None:
    """An alias that is not in DATABASES stops the check (exit 64) and names what exists."""
    assert sqlite_project.problems(alias="replica") == {
        "error": "database alias 'replica' is not in DATABASES (configured: default)",
        "exit_code": 64,
    }


def test_inconsistent_history_is_reported_as_a_conflict(sqlite_project: Project) -> None:
    """A migration recorded before its dependency is a conflict between database and code."""
    sqlite_project.migrate("shop", "0002")
    with sqlite3.connect(sqlite_project.databases["default"]["NAME"]) as conn:
        conn.execute("DELETE FROM django_migrations WHERE app = 'shop' AND name = '0001_initial'")
    assert sqlite_project.lines() == [
        "conflict: the migration history of database 'default' does not match the code: "
        "Migration shop.0002_product_note is applied before its dependency shop.0001_initial on "
        "database 'default'; repair the django_migrations table before deploying",
        *unapplied("shop.0001_initial", "shop.0003_remove_product_legacy_code"),
    ]
