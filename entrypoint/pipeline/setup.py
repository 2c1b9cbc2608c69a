"""What every command that reads or migrates a project does first: the project loaded, the
target databases resolved (each connection named for the run), and the wait for them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from entrypoint.config import Settings
from entrypoint.db.targets import Target, resolve_targets, route_directly, tag_connections
from entrypoint.engine.project import close_connections, setup_django
from entrypoint.errors import Interrupted
from entrypoint.health.phases import RunPhase
from entrypoint.locks import check_supported
from entrypoint.pipeline.report import Reporter
from entrypoint.process import SignalStop, capture_signals


def prepare(
    settings: Settings,
    reporter: Reporter,
    *,
    check_locks: bool = True,
    run_id: str | None = None,
) -> list[Target]:
    """Set Django up and resolve the target databases; check each has a lock. No I/O yet.

    With ``run_id`` (a run that may migrate), every connection Django opens names the run on the
    server, so that a later holder can fence it.
    """
    setup_django(settings.settings_module)
    if settings.direct_database_url:
        route_directly(settings.databases, settings.direct_database_url)
    targets = resolve_targets(settings.databases)
    for target in targets:
        if check_locks:
            check_supported(target, settings.lock_mode)
    if run_id is not None:
        tag_connections(targets, run_id)
    reporter.event("databases", databases=[t.alias for t in targets])
    return targets


def wait_for_databases(
    settings: Settings,
    targets: list[Target],
    reporter: Reporter,
    *,
    answered: frozenset[str] = frozenset(),
) -> None:
    """Wait for every target; report each retry and each database's wait time. The aliases in
    ``answered`` have just been seen to answer (their lock is held): they are not asked again."""
    for alias in [t.alias for t in targets if t.alias in answered]:
        reporter.event("database_ready", database=alias, seconds=0.0)
        reporter.notify("db_wait", database=alias, seconds=0.0)
    targets = [t for t in targets if t.alias not in answered]
    if not targets:
        return
    from entrypoint.db import wait

    reporter.phase(RunPhase.WAITING_FOR_DATABASE, targets[0].alias)

    def on_retry(attempt: Any) -> None:
        if attempt.number == 1 or attempt.number % 10 == 0:
            reporter.event(
                "database_unavailable",
                database=attempt.alias,
                attempt=attempt.number,
                error=attempt.error,
                waited=round(attempt.elapsed, 3),
            )

    waited = wait.wait_for(targets, settings.wait_timeout, on_retry=on_retry)
    for alias, seconds in waited.items():
        reporter.event("database_ready", database=alias, seconds=round(seconds, 3))
        reporter.notify("db_wait", database=alias, seconds=seconds)


@contextmanager
def read_only(settings: Settings, reporter: Reporter) -> Iterator[list[Target]]:
    """Settings, targets and a wait for the databases, for commands that only read.

    Connecting to a SQLite file that does not exist creates it: one that did not exist before
    and is still empty when the command ends is removed again, so reading leaves no trace.
    """
    created: list[str] = []
    try:
        with capture_signals():
            try:
                targets = prepare(settings, reporter, check_locks=False)
                created = [t.name for t in targets if _new_sqlite_file(t)]
                wait_for_databases(settings, targets, reporter)
            except SignalStop as stop:
                raise Interrupted(stop.signum) from None
        yield targets
    finally:
        close_connections()
        for path in created:
            if os.path.isfile(path) and os.path.getsize(path) == 0:
                os.remove(path)


def _new_sqlite_file(target: Target) -> bool:
    """Whether ``target`` is a SQLite database in a file that does not exist yet."""
    name = str(target.name)
    if target.vendor != "sqlite" or not name or name == ":memory:" or "mode=memory" in name:
        return False
    return not os.path.exists(name)


@contextmanager
def offline(settings: Settings, reporter: Reporter) -> Iterator[list[Target]]:
    """The project and its targets for a check that opens no database (``--base``): no wait,
    and any connection attempt fails at once."""
    from entrypoint.engine.base import offline as no_connections

    setup_django(settings.settings_module)
    targets = resolve_targets(settings.databases)
    reporter.event("databases", databases=[t.alias for t in targets], offline=True)
    with no_connections([t.alias for t in targets]):
        yield targets
