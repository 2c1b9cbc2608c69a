"""ENTRYPOINT_HISTORY_KEEP: the lock holder prunes the audit trail after its run, on every
backend, and never a run that is running, failed, interrupted, rolled back, that applied
something or that a rollback refers to; ``history`` says how many runs are gone."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import Launcher

#: (seq, id, kind, status, applied, rollback_of) of the rows put in the table by hand after
#: the first real run (seq 1, which applied the migrations).
PROTECTED = [
    (2, "failed00", "migrate", "failed", "[]", None),
    (3, "interrup", "migrate", "interrupted", "[]", None),
    (4, "running0", "migrate", "running", "[]", None),  # the next run reaps it: interrupted
    (5, "rolledbk", "migrate", "rolled_back", '[{"app":"a","name":"b","duration_ms":1}]', None),
    (
        6,
        "rollback",
        "rollback",
        "succeeded",
        '[{"app":"a","name":"b","duration_ms":1}]',
        "rolledbk",
    ),
    (7, "noopref0", "migrate", "succeeded", "[]", None),  # a rollback below refers to it
    (8, "refers00", "rollback", "succeeded", "[]", "noopref0"),
    (9, "applied0", "migrate", "succeeded", '[{"app":"a","name":"c","duration_ms":1}]', None),
]
NO_OPS = list(range(10, 30))  # twenty succeeded runs that found nothing to do


class Backend:
    """One database under test: its DATABASES entry and a way to run SQL on it."""

    def __init__(
        self, vendor: str, entry: dict[str, Any], query: Callable[..., list[Any]], moment: str
    ) -> None:
        self.vendor = vendor
        self.entry = entry
        self.query = query
        #: How a start time long ago is written on this backend.
        self.moment = moment


@pytest.fixture(params=["sqlite", "postgresql", pytest.param("mariadb", marks=pytest.mark.mysql)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A fresh database of each backend the audit trail runs on."""
    if request.param == "postgresql":
        pg = request.getfixturevalue("pg_db")
        return Backend("postgresql", pg.django(), pg.query, "2020-01-01 00:00:00+00")
    if request.param == "mariadb":
        db = request.getfixturevalue("mysql_db")
        return Backend("mysql", db.django(), db.query, "2020-01-01 00:00:00")
    path = tmp_path / "db.sqlite3"

    def query(sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with sqlite3.connect(path) as conn:
            return conn.execute(sql.replace("%s", "?"), params).fetchall()

    entry = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}
    return Backend("sqlite", entry, query, "2020-01-01T00:00:00.000000Z")


def fill(backend: Backend) -> None:
    """The rows of PROTECTED and NO_OPS, started long ago."""
    rows = [
        *PROTECTED,
        *[(seq, f"noop{seq:04d}", "migrate", "succeeded", "[]", None) for seq in NO_OPS],
    ]
    for seq, ident, kind, status, applied, rollback_of in rows:
        backend.query(
            "INSERT INTO entrypoint_migration_run (id, db_alias, seq, kind, status, started_at, "
            "planned, applied, rollback_of) VALUES (%s, 'default', %s, %s, %s, %s, '[]', %s, %s)",
            (ident, seq, kind, status, backend.moment, applied, rollback_of),
        )


def forget_manifest(query: Callable[..., list[Any]]) -> None:
    """Drop the manifests earlier runs stored, so that the next run holds the lock: a start of
    unchanged code takes the fast path, which records and prunes nothing."""
    query("DELETE FROM entrypoint_manifest")


def seqs(backend: Backend) -> list[int]:
    """The sequence numbers left in the table."""
    return [
        int(seq)
        for (seq,) in backend.query("SELECT seq FROM entrypoint_migration_run ORDER BY seq")
    ]


def test_the_holder_keeps_the_last_runs_and_every_run_that_matters(
    launcher: Launcher, backend: Backend
) -> None:
    """With ENTRYPOINT_HISTORY_KEEP=5 the next run keeps the newest five rows (its own among
    them), every row that is not a succeeded migrate run that applied nothing, and the one a
    rollback refers to; the other no-op runs go (event `history_pruned`); `history` then says
    how many runs are no longer recorded."""
    env = launcher.env({"default": backend.entry})
    assert launcher.run(["migrate"], env).popen.returncode == 0
    fill(backend)
    forget_manifest(backend.query)
    proc = launcher.run(["migrate"], {**env, "ENTRYPOINT_HISTORY_KEEP": "5"})
    assert proc.popen.returncode == 0, proc.stderr()
    # The newest five: 26..29 and the run's own row, 30. Of 10..25, every one went.
    assert seqs(backend) == [1, *[seq for seq, *_ in PROTECTED], 26, 27, 28, 29, 30]
    pruned = proc.wait_for_event("history_pruned")
    assert (pruned["runs"], pruned["keep"]) == (16, "the last 5 runs")
    assert backend.query("SELECT status FROM entrypoint_migration_run WHERE id = 'running0'") == [
        ("interrupted",)
    ]
    shown = launcher.run(["history", "--limit", "3"], env)
    assert shown.popen.returncode == 0, shown.stderr()
    assert shown.stdout().splitlines()[-1] == (
        "(16 earlier runs are no longer recorded on database 'default': pruned under "
        "ENTRYPOINT_HISTORY_KEEP, which only lets go of succeeded runs that changed nothing)"
    )
    forget_manifest(backend.query)
    again = launcher.run(["migrate"], {**env, "ENTRYPOINT_HISTORY_KEEP": "5"})
    assert again.popen.returncode == 0
    assert seqs(backend)[-5:] == [27, 28, 29, 30, 31]
    assert 26 not in seqs(backend)


def test_a_duration_keeps_what_is_younger_and_off_keeps_everything(
    launcher: Launcher, tmp_path: Path
) -> None:
    """ENTRYPOINT_HISTORY_KEEP=30d lets the no-op runs started long ago go, and keeps the recent
    ones and the newest; `off` prunes nothing."""
    path = tmp_path / "db.sqlite3"
    env = launcher.env({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}})

    def query(sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with sqlite3.connect(path) as conn:
            return conn.execute(sql.replace("%s", "?"), params).fetchall()

    assert (
        launcher.run(["migrate"], {**env, "ENTRYPOINT_HISTORY_KEEP": "off"}).popen.returncode == 0
    )
    forget_manifest(query)
    assert (
        launcher.run(["migrate"], {**env, "ENTRYPOINT_HISTORY_KEEP": "off"}).popen.returncode == 0
    )

    backend = Backend("sqlite", {}, query, "2020-01-01T00:00:00.000000Z")
    for seq in (3, 4, 5):
        query(
            "INSERT INTO entrypoint_migration_run (id, db_alias, seq, kind, status, started_at, "
            "planned, applied) VALUES (%s, 'default', %s, 'migrate', 'succeeded', %s, '[]', '[]')",
            (f"old{seq}", seq, backend.moment),
        )
    forget_manifest(query)
    off = launcher.run(["migrate"], {**env, "ENTRYPOINT_HISTORY_KEEP": "off"})
    assert off.popen.returncode == 0
    assert seqs(backend) == [1, 2, 3, 4, 5, 6]
    forget_manifest(query)
    kept = launcher.run(["migrate"], {**env, "ENTRYPOINT_HISTORY_KEEP": "30d"})
    assert kept.popen.returncode == 0, kept.stderr()
    assert seqs(backend) == [1, 2, 6, 7]


def test_a_role_that_may_not_delete_keeps_its_rows_and_goes_on(
    launcher: Launcher, tmp_path: Path
) -> None:
    """A prune the database refuses is a warning (`history_prune_failed`), never a failed run:
    here the SQLite file's audit table is guarded by a trigger that refuses deletes."""
    path = tmp_path / "db.sqlite3"
    env = launcher.env({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}})
    for _ in range(3):
        assert launcher.run(["migrate"], env).popen.returncode == 0
        with sqlite3.connect(path) as conn:
            conn.execute("DELETE FROM entrypoint_manifest")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TRIGGER no_delete BEFORE DELETE ON entrypoint_migration_run "
            "BEGIN SELECT RAISE(ABORT, 'deletes are not allowed here'); END"
        )
    proc = launcher.run(["migrate"], {**env, "ENTRYPOINT_HISTORY_KEEP": "1"})
    assert proc.popen.returncode == 0, proc.stderr()
    failed = proc.wait_for_event("history_prune_failed")
    assert failed["error"] == "IntegrityError: deletes are not allowed here"
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM entrypoint_migration_run").fetchone() == (4,)
