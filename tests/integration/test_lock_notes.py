"""Lock notes of `plan`: what each pending operation locks for as long as its table is large.

The end-to-end tests hold the notes against the servers themselves: the `heavy` app of the phase
project fills a table, then changes it one operation per migration; tests/lockprobe.py applies
them one by one and reads from the server whether the table was rewritten (PostgreSQL
``relfilenode``), read in full (``seq_scan``), copied (MySQL/MariaDB affected rows) or rebuilt in
place (InnoDB table id). The unit tests cover the server versions and shapes no local server has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from django.db import migrations, models
from django.db.migrations.state import ProjectState

from entrypoint.plan.locknotes import Effect, LockNote, Server, table_locks
from tests.support.databases import PgDatabase
from tests.support.mysql import MySQLDatabase
from tests.support.paths import REPO, TESTS
from tests.support.processes import Launcher

pytestmark = pytest.mark.usefixtures("empty_app_registry")

PHASEPROJ = TESTS / "projects" / "phaseproj"
HEAVY = sorted(
    path.stem
    for path in (PHASEPROJ / "heavy" / "migrations").glob("0*.py")
    if path.stem[:4] != "0001"
)

# What each heavy migration does to the table on PostgreSQL, as plan notes it.
POSTGRES_EFFECTS = {
    "0002_qty_bigint": ["rewrite"],
    "0003_name_longer": [],
    "0004_code_not_null": ["scan"],
    "0005_item_stock": ["scan"],
    "0006_item_qty_idx": ["index"],
    "0007_price_positive": ["scan"],
    "0008_item_owner": ["scan", "index"],
    "0009_price_wider": ["scan"],
    "0010_note_text": [],
    "0011_item_extra": [],
    "0012_remove_item_extra": [],
    "0013_name_unique": ["index", "index"],
    "0014_name_longest": [],
    "0015_qty_price_uniq": ["index"],
    "0016_owner_not_indexed": ["scan"],
    "0017_item_ref": ["index", "index"],
    # A ForeignKey to a subclass of it: Django drops and adds the constraint again, nothing else.
    "0018_owner_tree_key": ["scan"],
    # RunSQL, non-atomic: CREATE INDEX CONCURRENTLY reads every row but holds no writes back.
    "0019_code_idx_concurrently": [],
    "0020_drop_code": [],
    # Operations of the project's own: a trigger, and a type change in SQL of its own.
    "0021_touch_trigger": [],
    "0022_qty_decimal": ["rewrite"],
    # A ForeignKey turned into a CharField: its column renamed, then integer to varchar.
    "0023_owner_plain": ["rewrite"],
}
# Migrations that read every row without a lock that holds the application back: no note.
READ_WITHOUT_LOCK = {"0019_code_idx_concurrently"}
# The same on MariaDB 10.4+ (InnoDB, utf8mb4).
MARIADB_EFFECTS = {
    "0002_qty_bigint": ["rewrite"],
    "0003_name_longer": [],
    "0004_code_not_null": ["rebuild"],
    "0005_item_stock": [],
    "0006_item_qty_idx": [],
    "0007_price_positive": ["rewrite"],
    "0008_item_owner": ["rewrite"],
    "0009_price_wider": ["rewrite"],
    "0010_note_text": ["rewrite"],
    "0011_item_extra": [],
    "0012_remove_item_extra": [],
    "0013_name_unique": [],
    "0014_name_longest": ["rewrite"],
    "0015_qty_price_uniq": [],
    "0016_owner_not_indexed": ["rewrite"],
    "0017_item_ref": ["rebuild"],
    "0018_owner_tree_key": ["rewrite"],
    "0019_code_idx_concurrently": [],
    "0020_drop_code": [],
    "0021_touch_trigger": [],
    "0022_qty_decimal": ["rewrite"],
    "0023_owner_plain": ["rewrite"],
}


def heavy_env(launcher: Launcher, database: dict[str, Any]) -> dict[str, str]:
    """Environment of the phase project with only the heavy app, on this database."""
    env = launcher.env()
    env.update(
        PYTHONPATH=os.pathsep.join([str(PHASEPROJ), str(REPO)]),
        DJANGO_SETTINGS_MODULE="phaseproj.settings",
        PHASEPROJ_APPS="heavy",
        PHASEPROJ_DATABASES=json.dumps({"default": database}),
    )
    return env


def plan_locks(launcher: Launcher, env: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    """`plan --format json`: the lock notes of each pending migration, by name."""
    proc = launcher.start(["plan", "--format", "json"], env, cwd=PHASEPROJ)
    assert proc.wait(60) == 0, proc.stderr()
    return {row["name"]: row["locks"] for row in json.loads(proc.stdout())}


def probe(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Apply the heavy migrations one at a time; what the server says each did to the table."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.lockprobe", "heavy", "heavy_item", *HEAVY],
        cwd=PHASEPROJ,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return {line["migration"]: line for line in lines}


def migrate_initial(env: dict[str, str]) -> None:
    """The deployed state: the heavy table exists and holds rows."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "heavy", "0001", "--noinput", "-v0"],
        cwd=PHASEPROJ,
        env=env,
        check=True,
        timeout=60,
    )


def effects(locks: dict[str, list[dict[str, str]]]) -> dict[str, list[str]]:
    """The effects only, by migration."""
    return {name: [note["effect"] for note in notes] for name, notes in locks.items()}


def against_the_server(
    env: dict[str, str], noted: dict[str, list[str]]
) -> list[tuple[str, list[str], dict[str, Any]]]:
    """Each migration with its noted effects and what the server says applying it did."""
    measured = probe(env)
    return [(name, found, measured[name]) for name, found in noted.items()]


def test_plan_notes_match_what_postgresql_does_to_the_table(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """On PostgreSQL, a migration noted `rewrite` gets a new heap, one noted `scan` or `index`
    reads every row, and one without a note does neither; a fresh database, where every table is
    new, gets no note at all."""
    env = heavy_env(launcher, pg_db.django())
    fresh = plan_locks(launcher, env)
    assert set(fresh) == {"0001_initial", *HEAVY}
    assert all(notes == [] for notes in fresh.values())
    migrate_initial(env)
    locks = plan_locks(launcher, env)
    noted = effects(locks)
    assert noted == POSTGRES_EFFECTS
    # The renamed column's type change is judged against what the column was.
    [plain] = locks["0023_owner_plain"]
    assert "int8 to varchar(20) is not binary-coercible" in plain["note"], plain
    for name, found, seen in against_the_server(env, noted):
        assert seen["rewritten"] == ("rewrite" in found), (name, found, seen)
        if seen["scanned"] is not None:  # PostgreSQL 15+
            assert seen["scanned"] == (bool(found) or name in READ_WITHOUT_LOCK), (
                name,
                found,
                seen,
            )


def test_plan_notes_match_what_mariadb_does_to_the_table(
    launcher: Launcher, mysql_db: MySQLDatabase
) -> None:
    """On MySQL/MariaDB, a migration noted `rewrite` copies every row, one noted `rebuild`
    rebuilds the table in place without a copy, and one without a note does neither."""
    version = mysql_db.query("SELECT VERSION()")[0][0]
    if "MariaDB" not in version:
        pytest.skip(f"the expected notes are MariaDB's; this server is {version}")
    env = heavy_env(launcher, mysql_db.django())
    migrate_initial(env)
    noted = effects(plan_locks(launcher, env))
    assert noted == MARIADB_EFFECTS
    for name, found, seen in against_the_server(env, noted):
        assert seen["copied"] == ("rewrite" in found), (name, found, seen)
        assert seen["rebuilt"] == ("rebuild" in found), (name, found, seen)


def test_plan_prints_each_lock_note_under_its_migration(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """The text form of `plan` shows a lock note as a `!` line under the migration's reasons."""
    env = heavy_env(launcher, pg_db.django())
    migrate_initial(env)
    proc = launcher.start(["plan"], env, cwd=PHASEPROJ)
    assert proc.wait(60) == 0, proc.stderr()
    lines = proc.stdout().splitlines()
    start = lines.index("default  pre-deploy   heavy.0002_qty_bigint  (atomic)")
    assert lines[start + 2] == (
        '    ! AlterField heavy.Item.qty: `ALTER TABLE "heavy_item" ALTER COLUMN "qty" TYPE bigint '
        'USING "qty"::bigint`: int4 to int8 is not binary-coercible; PostgreSQL rewrites the '
        "table and its indexes under an ACCESS EXCLUSIVE lock; reads and writes wait until it is "
        "done"
    )
    assert not any(line.startswith("    !") for line in lines[start + 3 : start + 5])


# --- unit tests: versions and shapes no local server has ---------------------------------------


def item_state() -> ProjectState:
    """A state with one existing shop.Item table."""
    state = ProjectState()
    migrations.CreateModel(
        "Item",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=20)),
            ("qty", models.IntegerField(null=True)),
        ],
    ).state_forwards("shop", state)
    migrations.CreateModel("Owner", [("id", models.BigAutoField(primary_key=True))]).state_forwards(
        "shop", state
    )
    return state


def notes(operation: Any, server: Server, **kwargs: Any) -> list[LockNote]:
    """The notes of one operation on the shop.Item table."""
    return table_locks(operation, "shop", item_state(), server, **kwargs)


MYSQL_57 = Server("mysql", version=(5, 7, 44))
MYSQL_8 = Server("mysql", version=(8, 0, 36))
MARIADB_102 = Server("mysql", mariadb=True, version=(10, 2, 44))
MARIADB_1011 = Server("mysql", mariadb=True, version=(10, 11, 9))
POSTGRES = Server("postgresql")


@pytest.mark.parametrize(
    ("server", "add", "remove"),
    [
        (MYSQL_57, [Effect.REBUILD], [Effect.REBUILD]),
        (Server("mysql", version=(8, 0, 20)), [], [Effect.REBUILD]),
        (Server("mysql", version=(8, 0, 29)), [], []),
        (MARIADB_102, [Effect.REBUILD], [Effect.REBUILD]),
        (Server("mysql", mariadb=True, version=(10, 3, 39)), [], [Effect.REBUILD]),
        (MARIADB_1011, [], []),
        (POSTGRES, [], []),
    ],
)
def test_adding_and_dropping_a_column_is_instant_only_from_some_versions(
    server: Server, add: list[Effect], remove: list[Effect]
) -> None:
    """ADD COLUMN is instant from MySQL 8.0.12 / MariaDB 10.3.2, DROP COLUMN from 8.0.29 / 10.4;
    before that the table is rebuilt in place. PostgreSQL does neither."""
    added = notes(migrations.AddField("item", "note", models.TextField(null=True)), server)
    dropped = notes(migrations.RemoveField("item", "qty"), server)
    assert [n.effect for n in added] == add
    assert [n.effect for n in dropped] == remove


def test_mysql_copies_for_a_column_check_where_mariadb_does_not() -> None:
    """A positive integer column carries a CHECK: MySQL 8 copies the table to add it, MariaDB
    adds it at once, PostgreSQL reads every row to validate it."""
    operation = migrations.AddField("item", "stock", models.PositiveIntegerField(default=0))
    assert [n.effect for n in notes(operation, MYSQL_8)] == [Effect.REWRITE]
    assert notes(operation, MARIADB_1011) == []
    assert [n.effect for n in notes(operation, POSTGRES)] == [Effect.SCAN]


def test_mysql_varchar_extends_in_place_only_within_one_length_prefix() -> None:
    """varchar(20) to (60) keeps a one-byte length prefix in utf8mb4 (240 bytes): no note;
    (20) to (64) needs 256 bytes, so the prefix grows and the table is copied; PostgreSQL never
    rewrites a longer varchar."""
    within = migrations.AlterField("item", "name", models.CharField(max_length=60))
    past = migrations.AlterField("item", "name", models.CharField(max_length=64))
    assert notes(within, MYSQL_8) == []
    (note,) = notes(past, MYSQL_8)
    assert note == LockNote(
        Effect.REWRITE,
        "AlterField shop.Item.name: lengthens varchar(20) to varchar(64), past 255 bytes in "
        "utf8mb4 (its length prefix grows): MySQL copies the table (ALGORITHM=COPY); writes wait "
        "until it is done",
    )
    assert notes(past, POSTGRES) == []


def test_a_table_created_earlier_in_the_plan_gets_no_note() -> None:
    """An empty table is rewritten in no time: operations on a table the same plan created are
    not noted, inside SeparateDatabaseAndState too."""
    operation = migrations.AlterField("item", "qty", models.BigIntegerField(null=True))
    assert [n.effect for n in notes(operation, POSTGRES)] == [Effect.REWRITE]
    assert notes(operation, POSTGRES, new_table=lambda model: model == "item") == []
    wrapped = migrations.SeparateDatabaseAndState(database_operations=[operation])
    assert [n.effect for n in notes(wrapped, MYSQL_8)] == [Effect.REWRITE]
    assert notes(wrapped, MYSQL_8, new_table=lambda model: model == "item") == []


def test_operations_that_cannot_be_judged_get_no_note() -> None:
    """RunSQL and third-party operations may do anything: no note rather than a guess."""

    class Rebuild(migrations.AlterField):  # a subclass outside Django
        pass

    rebuild = Rebuild("item", "qty", models.BigIntegerField(null=True))
    assert notes(migrations.RunSQL("ALTER TABLE shop_item ADD x int"), POSTGRES) == []
    assert notes(rebuild, POSTGRES) == []


def test_postgres_index_notes_tell_a_plain_index_from_a_unique_constraint() -> None:
    """CREATE INDEX blocks writes; ADD CONSTRAINT UNIQUE blocks reads too; a conditional unique
    constraint is created as a unique index; AddIndexConcurrently blocks neither."""
    from django.contrib.postgres.operations import AddIndexConcurrently

    index = models.Index(fields=["qty"], name="item_qty_idx")
    plain = notes(migrations.AddIndex("item", index), POSTGRES)
    concurrent = notes(AddIndexConcurrently("item", index), POSTGRES)
    unique = notes(
        migrations.AddConstraint("item", models.UniqueConstraint(fields=["qty"], name="u")),
        POSTGRES,
    )
    partial = notes(
        migrations.AddConstraint(
            "item",
            models.UniqueConstraint(fields=["qty"], name="p", condition=models.Q(qty__gt=0)),
        ),
        POSTGRES,
    )
    assert "CREATE INDEX blocks writes" in plain[0].text
    assert concurrent == []
    assert "ACCESS EXCLUSIVE" in unique[0].text
    assert "CREATE INDEX blocks writes" in partial[0].text
    assert notes(migrations.AddIndex("item", index), MYSQL_8) == []


def test_a_foreign_key_added_to_an_existing_column_copies_on_mysql_and_is_checked_on_postgres() -> (
    None
):
    """Turning on db_constraint adds a FOREIGN KEY: MySQL copies the table (foreign_key_checks),
    PostgreSQL validates every row while writes to both tables wait."""
    before = migrations.AlterField(
        "item", "qty", models.ForeignKey("shop.owner", models.CASCADE, db_constraint=False)
    )
    state = item_state()
    before.state_forwards("shop", state)
    after = migrations.AlterField("item", "qty", models.ForeignKey("shop.owner", models.CASCADE))
    mysql = table_locks(after, "shop", state, MYSQL_8)
    postgres = table_locks(after, "shop", state, POSTGRES)
    assert [n.effect for n in mysql] == [Effect.REWRITE]
    assert "foreign_key_checks" in mysql[0].text
    assert [n.effect for n in postgres] == [Effect.SCAN]
