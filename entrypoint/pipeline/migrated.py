"""Wait mode (``ENTRYPOINT_MIGRATE=wait``, the ``wait-migrated`` command): take no lock, run no
DDL, write nothing; wait until each database holds every migration this code needs under the
phase policy, then go on as a run that migrated would (ready, exec).

What is needed is planned once, with the code's own graph: the pending plan, or its pre-deploy
part with ``ENTRYPOINT_PHASE=pre-deploy``. Then only the rows of ``django_migrations`` are read
again: at once, on every notice from the migrating run (PostgreSQL: the holder NOTIFYs right
after each migration commits, and when it releases the lock), and otherwise after a jittered
back-off from 50 ms doubling to 1 s, the fallback for backends without notices and for a holder
that says nothing (an older entrypoint, ``manage.py migrate`` run by hand). One deadline,
``ENTRYPOINT_MIGRATE_WAIT_TIMEOUT``, covers every database: past it the run exits 75 naming
what is still missing and who holds the migration lock.

A migration counts once it is recorded: a holder still at Django's post-migrate work (content
types, permissions) may finish that a moment after this run goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from entrypoint import locks
from entrypoint.config import Settings
from entrypoint.db.reasons import first_line
from entrypoint.db.targets import Target
from entrypoint.errors import DatabaseUnavailable, MigrationsMissing
from entrypoint.health.phases import RunPhase
from entrypoint.locks.base import uniform
from entrypoint.pipeline.report import Reporter
from entrypoint.plan.types import Node, dotted

FIRST_POLL = 0.05
MAX_POLL = 1.0
REPORT_EVERY = 5.0
#: How many missing migrations an event or the error names.
SHOWN = 5


@dataclass(frozen=True)
class Waiting:
    """A report while waiting: what is still missing and how long this run has waited."""

    missing: tuple[Node, ...]
    waited: float


class NotInTime(Exception):
    """The deadline passed with ``missing`` still not recorded."""

    def __init__(self, missing: list[Node], waited: float) -> None:
        super().__init__(f"{len(missing)} missing")
        self.missing = missing
        self.waited = waited


def wait_until_present(
    missing: Callable[[], list[Node]],
    listen: Callable[[float], None],
    deadline: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    jitter: Callable[[float, float], float] = uniform,
    on_wait: Callable[[Waiting], None] | None = None,
    report_every: float = REPORT_EVERY,
) -> float:
    """Ask ``missing()`` until it answers nothing; between two questions ``listen(seconds)``
    returns early on a notice. Returns the seconds waited; raises :class:`NotInTime` once
    ``deadline`` (on ``clock``) has passed.

    The back-off starts at :data:`FIRST_POLL` and doubles up to :data:`MAX_POLL`, jittered so a
    fleet of waiting pods does not poll in step; a notice does not reset it (the holder
    announces every migration, and the back-off only matters when nothing is heard).
    """
    start = clock()
    delay = FIRST_POLL
    last_report: float | None = None
    while True:
        found = missing()
        now = clock()
        if not found:
            return now - start
        if on_wait is not None and (last_report is None or now - last_report >= report_every):
            last_report = now
            on_wait(Waiting(tuple(found), now - start))
        if now >= deadline:
            raise NotInTime(found, now - start)
        listen(min(jitter(delay / 2, delay), max(deadline - now, 0.0)))
        delay = min(delay * 2, MAX_POLL)


def wait_migrated(
    settings: Settings,
    targets: list[Target],
    reporter: Reporter,
    run_id: str,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Wait until every target holds the migrations this code needs; return the seconds it
    took. Raises MigrationsMissing (75) at the deadline, PlanCannotBeSplit (65) when the phase
    policy can never be met, ConfigError (64) on conflicting migrations, as ``migrate`` does."""
    from entrypoint.engine import graph

    start = clock()
    deadline = start + settings.migrate_wait_timeout
    graph.check_conflicts()
    for target in targets:
        _wait_one(settings, target, reporter, run_id, deadline=deadline, clock=clock)
    return clock() - start


def _wait_one(
    settings: Settings,
    target: Target,
    reporter: Reporter,
    run_id: str,
    *,
    deadline: float,
    clock: Callable[[], float],
) -> None:
    from entrypoint.engine import graph

    alias = target.alias
    listener = locks.listener(target, settings, run_id)
    listener.connect()
    try:
        # Listening before the plan is read: a commit from now on is heard, never missed.
        needed = graph.needed(alias, settings.phase)
        if needed.nodes:
            reporter.phase(RunPhase.WAITING_FOR_MIGRATIONS, alias)
        last: list[Node] = list(needed.nodes)

        def missing() -> list[Node]:
            nonlocal last
            try:
                last = needed.missing(graph.recorded(alias))
            except Exception as exc:  # the server restarting: keep waiting, say so
                _close(alias)
                reporter.event(
                    "database_unavailable",
                    level="warning",
                    database=alias,
                    error=f"{type(exc).__name__}: {first_line(exc)}",
                )
            reporter.notify("migrations_missing", database=alias, count=len(last))
            return last

        def listen(seconds: float) -> None:
            nonlocal listener
            try:
                listener.wait_for_release(seconds)
            except DatabaseUnavailable as exc:
                # The notices are gone with their connection: poll from here on.
                reporter.event("notices_lost", level="warning", database=alias, error=str(exc))
                listener.close()
                listener = locks.Polling(target.display)

        def on_wait(waiting: Waiting) -> None:
            reporter.event(
                "migrations_waiting",
                database=alias,
                missing=len(waiting.missing),
                migrations=[dotted(node) for node in waiting.missing[:SHOWN]],
                waited=round(waiting.waited, 3),
                holder=listener.holder(),
                phase=str(settings.phase),
            )
            reporter.notify("migrations_wait", database=alias, seconds=waiting.waited)

        try:
            waited = wait_until_present(missing, listen, deadline, clock=clock, on_wait=on_wait)
        except NotInTime as late:
            tells = not isinstance(listener, locks.Polling)
            holder = listener.holder() if tells else None
            raise MigrationsMissing(_late_message(alias, late, settings, holder, tells)) from None
        # ``at`` (epoch seconds) lets bench/ measure the wake-up after the holder's commit.
        reporter.event(
            "migrations_present",
            database=alias,
            needed=len(needed.nodes),
            waited=round(waited, 3),
            at=round(time.time(), 6),
        )
        reporter.notify("migrations_wait", database=alias, seconds=waited)
    finally:
        listener.close()


def _late_message(
    alias: str, late: NotInTime, settings: Settings, holder: str | None, tells: bool
) -> str:
    shown = ", ".join(dotted(node) for node in late.missing[:SHOWN])
    more = f" and {len(late.missing) - SHOWN} more" if len(late.missing) > SHOWN else ""
    part = "" if settings.phase == "all" else f" (the {settings.phase} part)"
    if holder is not None:
        who = f"; the migration lock is held by {holder}, which may still be migrating"
    elif tells:
        who = "; nobody holds the migration lock, so no migration is running"
    else:
        who = ""
    return (
        f"the migrations this code needs{part} were not on database {alias!r} within "
        f"{settings.migrate_wait_timeout:g}s: {len(late.missing)} still missing ({shown}{more})"
        f"{who}; run this release's migrations (django-entrypoint migrate, with the schema "
        "owner's role), or raise ENTRYPOINT_MIGRATE_WAIT_TIMEOUT"
    )


def _close(alias: str) -> None:
    from django.db import connections

    try:
        connections[alias].close()
    except Exception:  # noqa: S110 - a broken connection closes with an error; it is closed
        pass
