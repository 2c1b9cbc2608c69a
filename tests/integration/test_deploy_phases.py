"""The deploy-phase policy and the `plan` and `check` commands, end to end on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.support.databases import PgDatabase
from tests.support.paths import REPO, TESTS
from tests.support.processes import Launcher

PHASEPROJ = TESTS / "projects" / "phaseproj"


def phase_env(launcher: Launcher, pg: PgDatabase, apps: str, **extra: str) -> dict[str, str]:
    """Environment of the phase test project with these apps on this database."""
    env = launcher.env(**extra)
    env.update(
        PYTHONPATH=os.pathsep.join([str(PHASEPROJ), str(REPO)]),
        DJANGO_SETTINGS_MODULE="phaseproj.settings",
        PHASEPROJ_APPS=apps,
        PHASEPROJ_DATABASES=json.dumps({"default": pg.django()}),
    )
    return env


def migrate_to(env: dict[str, str], app: str, name: str) -> None:
    """Bring the database to one migration with plain manage.py (the deployed state)."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", app, name, "--noinput", "-v0"],
        cwd=PHASEPROJ,
        env=env,
        check=True,
        timeout=60,
    )


def start(launcher: Launcher, args: list[str], env: dict[str, str]) -> Any:
    """Run the entrypoint in the phase project and wait for it."""
    proc = launcher.start(args, env, cwd=PHASEPROJ)
    proc.wait(60)
    return proc


def applied(pg: PgDatabase, app: str) -> list[str]:
    """Names of the applied migrations of an app."""
    return [
        n
        for (n,) in pg.query(
            "SELECT name FROM django_migrations WHERE app = %s ORDER BY name", (app,)
        )
    ]


def test_pre_deploy_holds_the_remove_field_and_post_deploy_applies_it(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """pre-deploy applies the backward-compatible AddField and holds the RemoveField (logged
    with its reason, exit 0); post-deploy then applies it."""
    env = phase_env(launcher, pg_db, "shop")
    migrate_to(env, "shop", "0001_initial")
    pre = start(launcher, ["migrate"], {**env, "ENTRYPOINT_PHASE": "pre-deploy"})
    assert pre.popen.returncode == 0, pre.stderr()
    assert applied(pg_db, "shop") == ["0001_initial", "0002_product_note"]
    held = pre.wait_for_event("migration_held")
    assert (held["app"], held["migration"], held["phase"]) == (
        "shop",
        "0003_remove_product_legacy_code",
        "post-deploy",
    )
    assert held["reasons"] == [
        "RemoveField shop.Product.legacy_code: drops a column old code still reads and writes"
    ]
    columns = "SELECT column_name FROM information_schema.columns WHERE table_name = 'shop_product' ORDER BY 1"
    assert ("legacy_code",) in pg_db.query(columns)
    post = start(launcher, ["migrate"], {**env, "ENTRYPOINT_PHASE": "post-deploy"})
    assert post.popen.returncode == 0, post.stderr()
    assert applied(pg_db, "shop") == [
        "0001_initial",
        "0002_product_note",
        "0003_remove_product_legacy_code",
    ]
    assert ("legacy_code",) not in pg_db.query(columns)


def test_pre_deploy_on_a_fresh_database_applies_everything(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """Nothing applied yet: no old code runs against the database, so pre-deploy applies the
    whole plan, marked post-deploy migrations and tangles included, and holds nothing."""
    env = phase_env(launcher, pg_db, "shop,marks,tangle")
    proc = start(launcher, ["migrate"], {**env, "ENTRYPOINT_PHASE": "pre-deploy"})
    assert proc.popen.returncode == 0, proc.stderr()
    assert [e for e in proc.events() if e["event"] == "migration_held"] == []
    assert applied(pg_db, "marks")[-1] == "0005_syzygy_mark"
    assert applied(pg_db, "tangle")[-1] == "0003_item_note"


def test_a_plan_that_cannot_be_split_is_refused(launcher: Launcher, pg_db: PgDatabase) -> None:
    """A pre-deploy migration that depends on a held post-deploy one: 65, naming both, and
    nothing applied."""
    env = phase_env(launcher, pg_db, "tangle")
    migrate_to(env, "tangle", "0001_initial")
    proc = start(launcher, ["migrate"], {**env, "ENTRYPOINT_PHASE": "pre-deploy"})
    assert proc.popen.returncode == 65
    [line] = proc.error_lines()
    assert line.startswith("django-entrypoint: error: ")
    assert "tangle.0003_item_note" in line
    assert "tangle.0002_remove_item_code" in line
    assert applied(pg_db, "tangle") == ["0001_initial"]


def test_plan_shows_a_plan_that_cannot_be_split_before_refusing_it(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """`plan` under pre-deploy prints the whole plan, with what the phase would hold, and then
    the refusal (65), so the reader sees what to mark."""
    env = phase_env(launcher, pg_db, "tangle")
    migrate_to(env, "tangle", "0001_initial")
    proc = start(launcher, ["plan"], {**env, "ENTRYPOINT_PHASE": "pre-deploy"})
    assert proc.popen.returncode == 65
    heads = [line for line in proc.stdout().splitlines() if not line.startswith(" ")]
    assert heads == [
        "default  post-deploy  tangle.0002_remove_item_code  (atomic, held by "
        "ENTRYPOINT_PHASE=pre-deploy)",
        "default  pre-deploy   tangle.0003_item_note  (atomic)",
    ]
    [line] = proc.error_lines()
    assert line.startswith("django-entrypoint: error: cannot split the plan for the pre-deploy")


def test_the_project_marks_migrations_it_cannot_edit_in_its_settings(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """settings.ENTRYPOINT_MIGRATION_PHASES marks a migration (of an installed package, say) by
    name, or every migration of an app with "app.*": it wins over the classification, so the
    plan that could not be split now applies whole in the pre-deploy phase."""
    marks = {"tangle.0002_remove_item_code": "pre-deploy"}
    env = {**phase_env(launcher, pg_db, "tangle"), "PHASEPROJ_PHASES": json.dumps(marks)}
    migrate_to(env, "tangle", "0001_initial")
    plan = start(launcher, ["plan", "--format", "json"], {**env, "ENTRYPOINT_PHASE": "pre-deploy"})
    assert plan.popen.returncode == 0, plan.stderr()
    [first, _] = json.loads(plan.stdout())
    assert (first["name"], first["phase"], first["reasons"]) == (
        "0002_remove_item_code",
        "pre-deploy",
        ["marked pre-deploy by settings.ENTRYPOINT_MIGRATION_PHASES"],
    )
    proc = start(launcher, ["migrate"], {**env, "ENTRYPOINT_PHASE": "pre-deploy"})
    assert proc.popen.returncode == 0, proc.stderr()
    assert applied(pg_db, "tangle") == ["0001_initial", "0002_remove_item_code", "0003_item_note"]


def test_a_bad_phase_setting_is_one_line_and_exit_64(launcher: Launcher, pg_db: PgDatabase) -> None:
    """An entry naming no migration of the project, or a value that is no phase, stops the run
    before anything is applied, naming the entry: in every phase, and in the CI gate too."""
    base = phase_env(launcher, pg_db, "tangle")
    cases = [
        (
            {"tangle.0002_remove": "pre-deploy"},
            "settings.ENTRYPOINT_MIGRATION_PHASES names 'tangle.0002_remove', which is not a "
            "migration of this project; use 'app.migration_name' or 'app.*' as 'python manage.py "
            "showmigrations' lists them",
        ),
        (
            {"tangle.*": "later"},
            "settings.ENTRYPOINT_MIGRATION_PHASES['tangle.*'] = 'later' is not a deploy phase; "
            "use 'pre-deploy' or 'post-deploy'",
        ),
    ]
    runs = [(["migrate"], "pre-deploy"), (["migrate"], "all"), (["check"], "all")]
    for marks, message in cases:
        for command, phase in runs:
            env = {**base, "PHASEPROJ_PHASES": json.dumps(marks), "ENTRYPOINT_PHASE": phase}
            proc = start(launcher, command, env)
            assert proc.popen.returncode == 64, (command, phase, proc.stderr())
            assert proc.error_lines() == [f"django-entrypoint: error: {message}"]
    assert pg_db.query("SELECT to_regclass('tangle_item') IS NULL") == [(True,)]


def test_plan_json_lists_pending_migrations_with_phase_and_reasons(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """`plan --format json`: one object per pending migration with the documented keys."""
    env = phase_env(launcher, pg_db, "shop")
    migrate_to(env, "shop", "0001_initial")
    proc = start(launcher, ["plan", "--format", "json"], {**env, "ENTRYPOINT_PHASE": "pre-deploy"})
    assert proc.popen.returncode == 0, proc.stderr()
    rows = json.loads(proc.stdout())
    assert [(r["app"], r["name"], r["phase"], r["held"]) for r in rows] == [
        ("shop", "0002_product_note", "pre-deploy", False),
        ("shop", "0003_remove_product_legacy_code", "post-deploy", True),
    ]
    assert {"app", "name", "phase", "reasons", "atomic", "reversible", "locks"} <= set(rows[0])
    assert applied(pg_db, "shop") == ["0001_initial"]  # plan changed nothing


def test_check_is_read_only_and_exits_1_on_unapplied(launcher: Launcher, pg_db: PgDatabase) -> None:
    """`check` on a fresh database: exit 1, one line per unapplied migration, and afterwards
    the database has no table at all (no lock, no django_migrations, no audit table)."""
    env = phase_env(launcher, pg_db, "shop")
    proc = start(launcher, ["check"], env)
    assert proc.popen.returncode == 1, proc.stderr()
    assert proc.stdout().splitlines() == [
        f"default: unapplied: shop.{name} is not applied on database 'default'; apply it with 'django-entrypoint migrate'"
        for name in ("0001_initial", "0002_product_note", "0003_remove_product_legacy_code")
    ]
    assert pg_db.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'") == []


def test_check_allow_unapplied_is_the_gate_before_a_release(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """`check --allow-unapplied`: pending migrations of the coming release are fine (exit 0),
    the policy still counts (exit 1 on what pre-deploy would hold)."""
    env = phase_env(launcher, pg_db, "shop")
    migrate_to(env, "shop", "0001_initial")
    assert start(launcher, ["check", "--allow-unapplied"], env).popen.returncode == 0
    held = start(launcher, ["--phase", "pre-deploy", "check", "--allow-unapplied"], env)
    assert held.popen.returncode == 1
    assert [line.split(": ")[1] for line in held.stdout().splitlines()] == ["policy"]


def test_check_passes_on_an_up_to_date_database(launcher: Launcher, pg_db: PgDatabase) -> None:
    """`check` after a migrate: exit 0 and an ok line."""
    env = phase_env(launcher, pg_db, "shop")
    assert start(launcher, ["migrate"], env).popen.returncode == 0
    proc = start(launcher, ["check"], env)
    assert proc.popen.returncode == 0, proc.stdout() + proc.stderr()
    assert proc.stdout().splitlines() == ["ok: no problem found on default"]


def test_check_reports_missing_migrations_and_policy_holds(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """`check --phase pre-deploy --format json`: model drift and a held migration, as JSON."""
    env = phase_env(launcher, pg_db, "shop,drift")
    migrate_to(env, "shop", "0001_initial")
    migrate_to(env, "drift", "0001_initial")
    proc = start(launcher, ["--phase", "pre-deploy", "check", "--format", "json"], env)
    assert proc.popen.returncode == 1
    kinds = [(p["kind"], p["app"]) for p in json.loads(proc.stdout())]
    assert ("missing", "drift") in kinds
    assert ("policy", "shop") in kinds
