"""Unapplying migrations with Django's executor, with the pre/post-migrate signals that
``manage.py migrate app 00NN`` sends, reporting progress as :mod:`.apply` does.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from typing import Any

from entrypoint.db.reasons import first_line
from entrypoint.engine import events
from entrypoint.engine.apply import Applied, confirm_lock, fenced
from entrypoint.engine.events import OnEvent
from entrypoint.errors import Interrupted, LockLost, MigrationFailed
from entrypoint.plan.types import Node
from entrypoint.process import FenceStop, SignalStop


def unapply(
    alias: str,
    nodes: Sequence[Node],
    on_event: OnEvent,
    *,
    confirm: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[Applied]:
    """Unapply ``nodes`` (newest first) on ``alias`` with Django's executor; return what was.

    Reports ``migration_unapply_started``, ``migration_unapplied`` (with seconds) and
    ``migration_unapply_failed``. ``confirm`` is the fence's check, as for
    :func:`entrypoint.migrate.apply`. Raises MigrationFailed (exit 70) naming the migration and
    the database error, Interrupted on SIGTERM/SIGINT, or LockLost (75) when the lock was lost.
    """
    from django.core.management.sql import emit_post_migrate_signal, emit_pre_migrate_signal
    from django.db import connections
    from django.db.migrations.executor import MigrationExecutor

    done: list[Applied] = []
    current: list[Any] = []
    started = [0.0]

    def progress(action: str, migration: Any = None, fake: bool | None = False, /) -> None:
        if migration is None:
            return
        if action == "unapply_start":
            confirm_lock(
                confirm,
                alias,
                f"before unapplying {migration.app_label}."
                f"{migration.name} started; nothing of it ran",
            )
            current[:] = [migration]
            started[0] = clock()
            on_event(
                events.UnapplyStarted(
                    alias, migration.app_label, migration.name, atomic=bool(migration.atomic)
                )
            )
        elif action == "unapply_success":
            step = Applied(migration.app_label, migration.name, clock() - started[0])
            done.append(step)
            current.clear()
            on_event(events.Unapplied(alias, step.app, step.name, seconds=round(step.seconds, 4)))

    executor = MigrationExecutor(connections[alias], progress)
    graph = executor.loader.graph
    plan = [(graph.nodes[node], True) for node in nodes]
    if not plan:
        return done
    applied = [key for key in executor.loader.applied_migrations if key in graph.nodes]
    quiet = io.StringIO()
    try:
        before = executor.loader.project_state(applied, at_end=True)
        emit_pre_migrate_signal(0, False, alias, stdout=quiet, apps=before.apps, plan=plan)
        with fenced(alias, confirm, lambda: _node_of(current)):
            after = executor.migrate([], plan=plan)
        after.clear_delayed_apps_cache()
        emit_post_migrate_signal(0, False, alias, stdout=quiet, apps=after.apps, plan=plan)
    except SignalStop as stop:
        raise Interrupted(stop.signum, _stopped(stop.signum, alias, current)) from None
    except FenceStop as stop:
        where = (
            f"while unapplying {current[0].app_label}.{current[0].name}"
            if current
            else "while rolling back, between migrations"
        )
        raise LockLost(alias, stop.reason, where) from None
    except LockLost:
        raise
    except Exception as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        error = f"{type(cause).__name__}: {first_line(cause)}"
        if current:
            migration = current[0]
            confirm_lock(
                confirm,
                alias,
                f"while unapplying {migration.app_label}."
                f"{migration.name}, which then failed ({error})",
            )
            on_event(
                events.UnapplyFailed(
                    alias,
                    migration.app_label,
                    migration.name,
                    error=type(exc).__name__,
                    seconds=round(clock() - started[0], 4),
                )
            )
            msg = (
                f"unapplying {migration.app_label}.{migration.name} failed on database "
                f"{alias!r}: {error}"
            )
        else:
            msg = f"rollback failed on database {alias!r}: {error}"
        raise MigrationFailed(msg) from exc
    return done


def _node_of(current: list[Any]) -> Node | None:
    return (current[0].app_label, current[0].name) if current else None


def _stopped(signum: int, alias: str, current: list[Any]) -> str:
    import signal

    name = signal.Signals(signum).name
    if not current:
        return f"stopped by {name} while rolling back on database {alias!r}, between migrations"
    migration = current[0]
    outcome = (
        "its transaction was rolled back"
        if migration.atomic
        else "it is not atomic and may be partly unapplied"
    )
    return (
        f"stopped by {name} while unapplying {migration.app_label}.{migration.name} on "
        f"{alias!r}; {outcome}"
    )
