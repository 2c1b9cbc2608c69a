"""Rollback, asserted from the database's catalog, django_migrations and the audit table:
`rollback --last` restores the schema, `--dry-run` changes nothing, irreversible and dependent
migrations refuse with the exact message, ENTRYPOINT_ROLLBACK_ON_FAILURE leaves the database
as the run found it, and replicas racing with a rollback are serialised by the lock."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.test_audit import Db, error_of, make_db, run_id_of
from tests.support.databases import PgDatabase
from tests.support.processes import Launcher

BOOKS = "catalog,reviews"
BOOK_MIGRATIONS = [
    ("catalog", "0001_initial"),
    ("catalog", "0002_book_isbn"),
    ("reviews", "0001_initial"),
]


@pytest.fixture(params=["postgresql", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    """A fresh database of each vendor rollback is tested on."""
    return make_db(request, tmp_path)


def snapshot(db: Db) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """What a rollback must restore: tables, columns and django_migrations rows."""
    return db.tables(), db.columns(), db.migrations()


def migrate(launcher: Launcher, db: Db, apps: str = "", **extra: str) -> str:
    """Run `migrate` with these extra apps; assert it succeeded; return its run id."""
    proc = launcher.run(
        ["migrate"], launcher.env(db.databases(), TESTPROJ_EXTRA_APPS=apps, **extra)
    )
    assert proc.popen.returncode == 0, proc.stderr()
    return run_id_of(proc)


def test_rollback_last_restores_the_schema_and_dry_run_changes_nothing(
    launcher: Launcher, db: Db
) -> None:
    """After a release that added migrations, `rollback --dry-run --last` prints the plan and
    changes nothing; `rollback --last` unapplies exactly those migrations, newest first, so the
    catalog and django_migrations are as before that release; the rollback is a run of its own
    and the release's run becomes `rolled_back`."""
    migrate(launcher, db)
    before = snapshot(db)
    release = migrate(launcher, db, BOOKS, ENTRYPOINT_RELEASE="v2")
    after = snapshot(db)
    assert after[2] == before[2] + BOOK_MIGRATIONS
    env = launcher.env(db.databases(), TESTPROJ_EXTRA_APPS=BOOKS)

    dry = launcher.run(["rollback", "--last", "--dry-run"], env)
    assert dry.popen.returncode == 0, dry.stderr()
    assert dry.stdout().splitlines() == [
        f"rollback of run {release} on database 'default' (migrate, succeeded, release v2, "
        "applied 3) would unapply, newest first:",
        "  reviews.0001_initial",
        "  catalog.0002_book_isbn",
        "  catalog.0001_initial",
    ]
    assert snapshot(db) == after
    assert len(db.runs()) == 2

    undo = launcher.run(["rollback", "--last"], env)
    assert undo.popen.returncode == 0, undo.stderr()
    assert snapshot(db) == before
    first, undone, rollback = db.runs()
    assert (undone["id"], undone["status"], undone["resolved_by"]) == (
        release,
        "rolled_back",
        run_id_of(undo),
    )
    assert (rollback["kind"], rollback["status"], rollback["rollback_of"]) == (
        "rollback",
        "succeeded",
        release,
    )
    assert rollback["applied"] == BOOK_MIGRATIONS[::-1]
    assert first["status"] == "succeeded"


def test_an_irreversible_migration_refuses_the_rollback(launcher: Launcher, tmp_path: Path) -> None:
    """A RunPython without reverse code makes `rollback` refuse with exit 65, naming it and the
    operation, before anything is unapplied."""
    db = Db("sqlite", path=tmp_path / "db.sqlite3")
    migrate(launcher, db)
    release = migrate(launcher, db, "irreversible")
    before = snapshot(db)
    proc = launcher.run(
        ["rollback", "--last"], launcher.env(db.databases(), TESTPROJ_EXTRA_APPS="irreversible")
    )
    assert proc.popen.returncode == 65
    assert error_of(proc) == (
        f"cannot roll back run {release} on database 'default', nothing was changed: "
        "irreversible.0002_backfill is irreversible (RunPython backfill has no reverse_code); "
        "give each such operation reverse code (RunPython.noop or RunSQL.noop where nothing "
        "needs undoing) or unapply by hand"
    )
    assert snapshot(db) == before
    assert db.runs()[1]["status"] == "succeeded"


def test_a_later_run_that_depends_on_it_refuses_the_rollback(
    launcher: Launcher, tmp_path: Path
) -> None:
    """Rolling back a run whose migrations a later run built on refuses with exit 65 naming
    that later run; rolling back the later run first, then the earlier one, works."""
    db = Db("sqlite", path=tmp_path / "db.sqlite3")
    migrate(launcher, db)
    before = snapshot(db)
    catalog = migrate(launcher, db, "catalog")
    reviews = migrate(launcher, db, BOOKS)
    env = launcher.env(db.databases(), TESTPROJ_EXTRA_APPS=BOOKS)
    middle = snapshot(db)

    proc = launcher.run(["rollback", "--run", catalog], env)
    assert proc.popen.returncode == 65
    assert error_of(proc) == (
        f"cannot roll back run {catalog} on database 'default', nothing was changed: "
        f"reviews.0001_initial, applied by later run {reviews}, depends on "
        f"catalog.0002_book_isbn; roll back run {reviews} first"
    )
    assert snapshot(db) == middle

    assert launcher.run(["rollback", "--last"], env).popen.returncode == 0
    again = launcher.run(["rollback", "--run", catalog], env)
    assert again.popen.returncode == 0, again.stderr()
    assert snapshot(db) == before
    statuses = [(r["kind"], r["status"]) for r in db.runs()]
    assert statuses == [
        ("migrate", "succeeded"),
        ("migrate", "rolled_back"),
        ("migrate", "rolled_back"),
        ("rollback", "failed"),
        ("rollback", "succeeded"),
        ("rollback", "succeeded"),
    ]


def test_rollback_on_failure_leaves_the_database_as_it_was(launcher: Launcher, db: Db) -> None:
    """With ENTRYPOINT_ROLLBACK_ON_FAILURE=1 a failed run unapplies what it applied before the
    failure: tables, columns and django_migrations are exactly as before the run, the exit is
    still 70 with both facts in the message, and the row is `rolled_back`."""
    migrate(launcher, db)
    before = snapshot(db)
    proc = launcher.run(
        ["migrate"],
        launcher.env(
            db.databases(), TESTPROJ_EXTRA_APPS="broken", ENTRYPOINT_ROLLBACK_ON_FAILURE="1"
        ),
    )
    assert proc.popen.returncode == 70
    assert snapshot(db) == before
    message = error_of(proc)
    assert message.startswith("migration broken.0002_fails failed on database 'default': ")
    assert message.endswith(
        "; rolled back broken.0001_initial, so the schema is as this run found it"
    )
    row = db.runs()[-1]
    assert (row["status"], row["applied"], row["error"]) == (
        "rolled_back",
        [("broken", "0001_initial")],
        message,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["rollback"],
            "one of the arguments --last --run is required; see 'django-entrypoint --help'",
        ),
        (
            ["rollback", "--run", "feedc0ffee00"],
            "--run 'feedc0ffee00' names no recorded run on database 'default'; see 'django-entrypoint history' for run ids",
        ),
        (
            ["history", "--limit", "0"],
            "argument --limit: '0' is not a positive whole number; use 1, 2, ...; see 'django-entrypoint --help'",
        ),
    ],
    ids=["no-run-named", "unknown-run", "bad-limit"],
)
def test_bad_rollback_and_history_inputs(
    launcher: Launcher, tmp_path: Path, args: list[str], message: str
) -> None:
    """A missing or unknown run, or a bad --limit, is one line with exit 64."""
    db = Db("sqlite", path=tmp_path / "db.sqlite3")
    proc = launcher.run(args, launcher.env(db.databases()))
    assert proc.popen.returncode == 64
    assert error_of(proc) == message


def test_replicas_racing_with_a_rollback_lose_nothing(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """Three replicas of a release start while that release is being rolled back (the rollback
    holds the lock): the lock
    serialises all four, every one succeeds (a replica that finds everything applied once it
    has the lock takes the fast path and writes no row), no two runs overlap in time, and each
    migration is in django_migrations exactly when the audit trail applied it once more than it
    unapplied it."""
    db = Db("postgresql", pg=pg_db)
    migrate(launcher, db)
    migrate(launcher, db, BOOKS)
    env = launcher.env(db.databases(), TESTPROJ_EXTRA_APPS=BOOKS)
    procs = [launcher.start(["rollback", "--last"], env)]
    procs[0].wait_for_event("lock_acquired", timeout=60)
    procs += [launcher.start(["migrate"], env) for _ in range(3)]
    codes = [proc.wait(120) for proc in procs]
    assert codes == [0, 0, 0, 0], [proc.error_lines() for proc in procs]

    runs = db.runs()
    full = [p for p in procs[1:] if not any(e.get("fast_path") for e in p.events())]
    assert full, "the rollback left work that some replica had to do"
    assert len(runs) == 3 + len(full)
    assert all(run["status"] in {"succeeded", "rolled_back"} for run in runs)
    spans = sorted((run["started_at"], run["finished_at"]) for run in runs)
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))
    net: Counter[tuple[str, str]] = Counter()
    for run in runs:
        for node in run["applied"]:
            net[node] += -1 if run["kind"] == "rollback" else 1
    recorded = db.migrations()
    assert len(recorded) == len(set(recorded))
    assert {node for node, count in net.items() if count == 1} == set(recorded)
    assert all(count in {0, 1} for count in net.values())
