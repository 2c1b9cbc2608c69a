"""Light waiters: a replica that finds the migration lock held waits before setting Django up,
with only its lock connection open; when the holder releases, it checks with the fast path and,
nothing pending, is ready without ever importing Django. Otherwise it sets Django up then, and
goes on with the lock it holds."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from tests.support.databases import PgDatabase
from tests.support.processes import Launcher, Proc


def imports_and_events(proc: Proc) -> list[tuple[str, str]]:
    """Standard error in order: ``("import", module)`` and ``("event", name)`` lines."""
    import json

    found = []
    for line in proc.stderr().splitlines():
        if line.startswith("import time:") and "|" in line:
            found.append(("import", line.rsplit("|", 1)[1].strip()))
        elif line.startswith("{"):
            try:
                found.append(("event", json.loads(line)["event"]))
            except (ValueError, KeyError):
                continue
    return found


def django_imported(proc: Proc) -> bool:
    """Whether any module of Django was imported."""
    return any(
        kind == "import" and (name == "django" or name.startswith("django."))
        for kind, name in imports_and_events(proc)
    )


def named(proc: Proc, name: str) -> list[dict[str, Any]]:
    """The log events of one name."""
    return [e for e in proc.events() if e.get("event") == name]


def test_a_waiter_waits_without_django_and_execs_without_it(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """While the holder is inside a slow migration, a second replica waits on the lock without
    importing Django, reports the holder and its progress from the audit row, and once the
    holder released (all migrated, the manifest recorded) is ready on the fast path, Django
    never imported; each migration is recorded once."""
    env = launcher.env({"default": pg_db.django()}, TESTPROJ_SLOW_SECONDS="2.5")
    holder = launcher.start(["migrate"], env)
    holder.wait_for_event("migration_started", timeout=60, migration="0003_slow")
    waiter = launcher.start(["migrate"], {**env, "PYTHONPROFILEIMPORTTIME": "1"})
    assert holder.wait(60) == 0, holder.stderr()[-2000:]
    assert waiter.wait(60) == 0, waiter.stderr()[-2000:]
    assert not django_imported(waiter)
    # Every replica but one pays what it imports before it parks, beside the holder's migrate:
    # nothing there may pull in dataclasses (with inspect, ast, dis), random, typing (the
    # records are entrypoint.light's), socket (its enums) or datetime; the test project's
    # settings import none of them either.
    parked_with = []
    for kind, name in imports_and_events(waiter):
        if (kind, name) == ("event", "lock_waiting"):
            break
        if kind == "import":
            parked_with.append(name)
    assert "entrypoint.locks.postgres" in parked_with
    heavy = {"dataclasses", "inspect", "random", "typing", "socket", "datetime"}
    assert not heavy & set(parked_with), parked_with
    [waiting, *_] = named(waiter, "lock_waiting")
    assert "django-entrypoint run=" in waiting["holder"]
    assert waiting["holder_run"] == named(holder, "starting")[0]["run"]
    assert waiting["migration"] == "inventory.0003_slow"
    assert waiting["planned"] > waiting["applied"] >= 1
    [ready] = named(waiter, "ready")
    assert ready["fast_path"] is True
    assert ready["manifest"] == "database"
    rows = pg_db.query("SELECT app, name FROM django_migrations")
    assert len(rows) == len(set(rows))
    assert named(waiter, "migration_applied") == []


def test_a_waiter_whose_holder_died_sets_django_up_and_migrates_on_the_lock_it_holds(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """The holder is SIGKILLed inside a migration: the waiter gets the lock, finds work left
    (a run left ``running``), sets Django up only then and, on the lock it already holds,
    reaps the dead run and finishes the migrations, each recorded once."""
    env = launcher.env({"default": pg_db.django()}, TESTPROJ_SLOW_SECONDS="30")
    holder = launcher.start(["migrate"], env)
    holder.wait_for_event("migration_started", timeout=60, migration="0003_slow")
    waiter = launcher.start(
        ["migrate"], {**env, "TESTPROJ_SLOW_SECONDS": "0", "PYTHONPROFILEIMPORTTIME": "1"}
    )
    waiter.wait_for_event("lock_waiting", timeout=30)
    assert not django_imported(waiter)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(30)
    assert waiter.wait(60) == 0, waiter.stderr()[-2000:]
    order = imports_and_events(waiter)
    acquired = order.index(("event", "lock_acquired"))
    first_django = next(
        i for i, (kind, name) in enumerate(order) if kind == "import" and name == "django"
    )
    assert first_django > acquired
    assert [e["event"] for e in named(waiter, "lock_acquired")] == ["lock_acquired"]
    assert len(named(waiter, "interrupted_run")) == 1
    assert named(waiter, "migrated")[0]["applied"] >= 1
    rows = pg_db.query("SELECT app, name FROM django_migrations")
    assert len(rows) == len(set(rows))
    statuses = pg_db.query("SELECT status FROM entrypoint_migration_run ORDER BY seq")
    assert statuses == [("interrupted",), ("succeeded",)]


@pytest.mark.slow
def test_replicas_on_a_fresh_database_wait_light(launcher: Launcher, pg_factory: Any) -> None:
    """Six replicas on a fresh database: one sets Django up and migrates; the others wait on
    the lock without Django and are ready on the fast path once it is done."""
    pg = pg_factory()
    env = launcher.env({"default": pg.django()}, PYTHONPROFILEIMPORTTIME="1")
    procs = [launcher.start(["migrate"], env) for _ in range(6)]
    assert [p.wait(120) for p in procs] == [0] * 6, [p.error_lines() for p in procs]
    with_django = [p for p in procs if django_imported(p)]
    assert len(with_django) == 1
    assert len(named(with_django[0], "migrated")) == 1
    rows = pg.query("SELECT app, name FROM django_migrations")
    assert len(rows) == len(set(rows))
