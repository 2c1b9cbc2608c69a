"""Plan and apply migrations through Django's own migrate machinery, reporting progress.

The engine never prints: it reports through a callback (``on_event(name, **fields)``) with
``migration_started``, ``migration_applied`` (with seconds) and ``migration_failed`` events, which
the CLI turns into log lines, metrics and audit rows. What is applied is applied exactly as
``manage.py migrate`` applies it: the engine runs Django's migrate command itself, with its
progress callback pointed here, so pre/post-migrate signals, content types and permissions come
out identical. With nothing pending, Django's migrate is not run at all; what it would still do
then is done here (:func:`record_squashes`, :func:`check_history`), or by running it anyway when
the previous run ended before its post-migrate work.
"""

from __future__ import annotations

import io
import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from entrypoint.audit import TABLE as AUDIT_TABLE
from entrypoint.cancel import cancel_on_signal
from entrypoint.databases import first_line
from entrypoint.ddl import WriteCounter, failing_operation, left_behind
from entrypoint.errors import ConfigError, Interrupted, LockLost, MigrationFailed
from entrypoint.process import FenceStop, SignalStop

Node = tuple[str, str]
# on_event(event_name, **fields); fields never include a password or SQL text.
OnEvent = Callable[..., None]


@dataclass(frozen=True)
class Applied:
    """A migration this run applied."""

    app: str
    name: str
    seconds: float


@dataclass
class Progress:
    """What the current apply has done so far; read after a failure or an interruption."""

    applied: list[Applied] = field(default_factory=list)
    current: Node | None = None
    current_atomic: bool = True
    started: float = 0.0
    failed: Node | None = None
    failed_atomic: bool = True


def conflicts_message(conflicts: dict[str, list[str]]) -> str:
    """Django's conflicting-leaf-nodes problem, as one line with the fix."""
    names = "; ".join(
        f"{', '.join(sorted(nodes))} in {app}" for app, nodes in sorted(conflicts.items())
    )
    return (
        f"conflicting migrations: several leaf nodes in the migration graph ({names}); "
        "run 'python manage.py makemigrations --merge' and commit the merge migration"
    )


def check_conflicts() -> None:
    """Refuse a migration graph with several leaf nodes in one app (read from disk only)."""
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    found = loader.detect_conflicts()
    if found:
        raise ConfigError(conflicts_message(found))


def executor_for(alias: str) -> Any:
    """Django's MigrationExecutor on ``alias`` (it loads the migration graph and the history)."""
    from django.db import connections
    from django.db.migrations.executor import MigrationExecutor

    return MigrationExecutor(connections[alias])


def pending(executor: Any) -> list[Any]:
    """The migrations Django would apply now, in order (Migration objects), as ``executor``
    (from :func:`executor_for`) plans them."""
    targets = executor.loader.graph.leaf_nodes()
    return [migration for migration, backwards in executor.migration_plan(targets) if not backwards]


def check_history(alias: str, executor: Any) -> None:
    """Refuse a history with a migration applied before its dependency, as Django's migrate does
    before it plans: MigrationFailed (exit 70) naming both."""
    from django.db import connections
    from django.db.migrations.exceptions import InconsistentMigrationHistory

    try:
        executor.loader.check_consistent_history(connections[alias])
    except InconsistentMigrationHistory as exc:
        raise MigrationFailed(_inconsistent(alias, exc)) from exc


def _inconsistent(alias: str, exc: BaseException) -> str:
    # Django's text ends with "on database 'ALIAS'.", which the message says first.
    found = _ON_DATABASE.sub("", first_line(exc))
    return (
        f"inconsistent migration history on database {alias!r}: {found}; "
        "repair the django_migrations table before migrating"
    )


_ON_DATABASE = re.compile(r"\s+on database '[^']*'\.?$|\.$")


def record_squashes(executor: Any) -> list[Node]:
    """Record each squashed migration whose replaced migrations are all applied; return them.

    Django's migrate does this on every run, even with nothing to apply, so that a squash
    deployed onto a database that already ran the migrations it replaces is recorded before the
    replaced files are deleted; skipped, the next release would run the squash again.
    """
    if not executor.loader.replacements:
        return []
    before = set(executor.recorder.applied_migrations())
    executor.check_replacements()
    return sorted(set(executor.recorder.applied_migrations()) - before)


def applied_leaf(executor: Any) -> Node | None:
    """An applied migration with no applied child in its app: migrating to it changes nothing."""
    applied = executor.loader.applied_migrations
    graph = executor.loader.graph
    for node in sorted(applied):
        if node not in graph.node_map:
            continue
        children = graph.node_map[node].children
        if not any(child.key[0] == node[0] and child.key in applied for child in children):
            return (str(node[0]), str(node[1]))
    return None


# PostgreSQL 14+ checks, during a long statement, whether the client is still there. Set on
# the migration connection, a replica killed inside a migration does not leave its statement
# (and its snapshot, which a later CREATE INDEX CONCURRENTLY would wait for) running on.
CLIENT_CHECK_INTERVAL_MS = 2000


def prepare_session(alias: str, ddl_lock_timeout: float | None = None) -> None:
    """Session settings of Django's migration connection (best effort).

    PostgreSQL: ``client_connection_check_interval`` and, with ``ddl_lock_timeout``,
    ``lock_timeout``. MySQL/MariaDB: ``lock_wait_timeout`` (the metadata lock every ``ALTER``
    waits for), in whole seconds, rounded up.
    """
    from django.db import connections

    connection = connections[alias]
    if connection.vendor == "mysql":
        if ddl_lock_timeout:
            seconds = max(1, math.ceil(ddl_lock_timeout))
            try:
                with connection.cursor() as cursor:
                    cursor.execute(f"SET SESSION lock_wait_timeout = {seconds:d}")
            except Exception:  # noqa: S110 - the server's own default then applies
                pass
        return
    if connection.vendor != "postgresql":
        return
    settings = [("client_connection_check_interval", str(CLIENT_CHECK_INTERVAL_MS))]
    if ddl_lock_timeout:
        settings.append(("lock_timeout", f"{int(ddl_lock_timeout * 1000)}ms"))
    connection.ensure_connection()
    for name, value in settings:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config(%s, %s, false)", [name, value])
        except Exception:  # noqa: S110 - an older server without the setting still migrates
            pass


def apply(
    alias: str,
    on_event: OnEvent,
    *,
    targets: list[Node] | None = None,
    retries: int = 0,
    progress: Progress | None = None,
    run_checks: bool = True,
    confirm: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Applied]:
    """Run Django's migrate on ``alias``; return what was applied.

    ``targets`` limits the run to those nodes and their dependencies (one ``migrate APP NAME``
    per target, in order); None applies everything. A migration that fails on the DDL lock
    timeout and left nothing behind (atomic, so rolled back whole, or on MySQL/MariaDB failed
    before any statement of its own changed something) is retried up to ``retries`` times with
    back-off. ``confirm`` (the fence's check that the lock is still held, raising
    :class:`~entrypoint.locks.base.Lost`) is called before each migration starts and before
    each is recorded in ``django_migrations``, inside its transaction when it has one.

    Raises MigrationFailed (exit 70) naming the migration and the database error, Interrupted
    when SIGTERM/SIGINT arrived (the statement in flight was cancelled), or LockLost (75) when
    the lock was lost (likewise).
    """
    state = progress if progress is not None else Progress()
    attempt = 0
    while True:
        try:
            for target in targets if targets is not None else [None]:
                _apply_once(alias, on_event, state, target, run_checks=run_checks,
                            confirm=confirm, clock=clock)  # fmt: skip
        except MigrationFailed as exc:
            if not (exc.lock_timeout and state.failed_atomic and attempt < retries):
                raise
            attempt += 1
            delay = min(0.5 * 2 ** (attempt - 1), 10.0)
            app, name = state.failed or ("", "")
            on_event("migration_retry", level="warning", database=alias, app=app,
                     migration=name, attempt=attempt, retries=retries, delay=delay)  # fmt: skip
            sleep(delay)
            continue
        return list(state.applied)


def _apply_once(
    alias: str,
    on_event: OnEvent,
    state: Progress,
    target: Node | None,
    *,
    run_checks: bool,
    confirm: Callable[[], None] | None,
    clock: Callable[[], float],
) -> None:
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError
    from django.core.management.commands.migrate import Command as MigrateCommand
    from django.db import connections
    from django.db.migrations.exceptions import InconsistentMigrationHistory

    class Command(MigrateCommand):
        def migration_progress_callback(
            self, action: str, migration: Any = None, fake: bool = False
        ) -> None:
            if action == "apply_start":
                confirm_lock(confirm, alias, f"before {migration.app_label}.{migration.name} "
                         "started; nothing of it ran")  # fmt: skip
                state.current = (migration.app_label, migration.name)
                # Django wraps a migration in a transaction only where DDL can be rolled
                # back; on MySQL/MariaDB an "atomic" migration may be left partly applied.
                state.current_atomic = bool(getattr(migration, "atomic", True)) and bool(
                    connections[alias].features.can_rollback_ddl
                )
                state.started = clock()
                on_event("migration_started", database=alias, app=migration.app_label,
                         migration=migration.name, atomic=state.current_atomic)  # fmt: skip
                writes.reset()
            elif action == "apply_success":
                done = Applied(migration.app_label, migration.name, clock() - state.started)
                state.applied.append(done)
                state.current = None
                on_event("migration_applied", database=alias, app=done.app, migration=done.name,
                         seconds=round(done.seconds, 4))  # fmt: skip

    command = Command(stdout=io.StringIO(), stderr=io.StringIO())
    args = list(target) if target is not None else []
    state.current = state.failed = None
    writes = WriteCounter()
    try:
        with (
            cancel_on_signal(alias),
            connections[alias].execute_wrapper(writes),
            fenced(alias, confirm, lambda: state.current),
        ):
            call_command(
                command, *args, database=alias, interactive=False, verbosity=0,
                skip_checks=not run_checks,
            )  # fmt: skip
    except SignalStop as stop:
        raise Interrupted(stop.signum, _interrupted_message(stop.signum, alias, state)) from None
    except FenceStop as stop:
        raise LockLost(alias, stop.reason, _lost_where(state)) from None
    except LockLost:
        raise
    except SystemCheckError as exc:
        msg = f"system checks failed before migrating {alias!r}: {_check_summary(exc)}"
        raise ConfigError(msg) from exc
    except InconsistentMigrationHistory as exc:
        raise MigrationFailed(_inconsistent(alias, exc)) from exc
    except Exception as exc:
        lock_timeout = _is_lock_timeout(exc)
        if state.current is not None:
            app, name = state.failed = state.current
            state.failed_atomic = state.current_atomic
            seconds = round(clock() - state.started, 4)
            # Without transactional DDL, a migration whose own statements all failed or only
            # read left nothing behind; one that changed something may be partly applied.
            partial = None
            if not state.current_atomic and not connections[alias].features.can_rollback_ddl:
                partial = writes.count > 0
                # Nothing of it was written: as safe to run again as a rolled-back one.
                state.failed_atomic = not partial
            confirm_lock(confirm, alias, f"while applying {app}.{name}, which then failed "
                     f"({_error_text(exc)})")  # fmt: skip
            on_event("migration_failed", level="error", database=alias, app=app,
                     migration=name, error=type(exc).__name__, seconds=seconds,
                     **({} if partial is None else {"partial": partial}))  # fmt: skip
            msg = f"migration {app}.{name} failed on database {alias!r}: {_error_text(exc)}"
            if partial:
                msg += f"; {left_behind(failing_operation(exc))}"
        else:
            confirm_lock(confirm, alias, f"while migrating, which then failed ({_error_text(exc)})")
            msg = f"migrate failed on database {alias!r}: {_error_text(exc)}"
        raise MigrationFailed(msg, lock_timeout=lock_timeout) from exc


def confirm_lock(confirm: Callable[[], None] | None, alias: str, where: str) -> None:
    """Call the fence's check; a lost lock becomes LockLost saying ``where`` the run was."""
    if confirm is None:
        return
    from entrypoint.locks.base import Lost

    try:
        confirm()
    except Lost as exc:
        raise LockLost(alias, str(exc), where) from None


class _Fenced:
    """An ``execute_wrapper`` that runs the fence's check before each statement of a migration,
    and the recorder hooks that word where a loss stopped it."""

    def __init__(
        self,
        alias: str,
        confirm: Callable[[], None],
        current: Callable[[], Node | None] = lambda: None,
    ) -> None:
        self.alias = alias
        self.confirm = confirm
        self.current = current
        # Set for the one INSERT/DELETE that records changes already committed.
        self.record_committed = False

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        """Check the lock, then run the statement (the audit trail's own writes go through)."""
        if self.record_committed:
            self.record_committed = False
        elif AUDIT_TABLE not in str(sql):
            confirm_lock(self.confirm, self.alias, self._where())
        return execute(sql, params, many, context)

    def _where(self) -> str:
        from django.db import connections

        node = self.current()
        name = f"{node[0]}.{node[1]}" if node else None
        where = f"before the next statement of {name}" if name else "before the next statement"
        if connections[self.alias].in_atomic_block:
            return f"{where}; its transaction was rolled back"
        if name:
            return f"{where}, which is not atomic: what it ran before stays"
        return where

    def before_record(self, sender: Any, instance: Any, using: str | None = None, **_: Any) -> None:
        """Before Django's recorder writes a row: inside the migration's transaction, a lost
        lock rolls the migration back; outside one, what it changed is already in the database
        and the row that says so is written whatever the lock (it then tells the truth)."""
        if using != self.alias:
            return
        from django.db import connections

        if not connections[self.alias].in_atomic_block:
            self.record_committed = True
            return
        node = f"{instance.app}.{instance.name}"
        confirm_lock(self.confirm, self.alias,
                     f"before {node} was recorded; its transaction was rolled back")  # fmt: skip


@contextmanager
def fenced(
    alias: str,
    confirm: Callable[[], None] | None,
    current: Callable[[], Node | None] = lambda: None,
) -> Iterator[None]:
    """Inside the block, the fence's check runs before each statement Django runs on ``alias``
    and before each row its recorder writes or deletes in ``django_migrations``: a lost lock
    stops the migration before its next change, rolls back a transaction that is still open,
    and never records a migration whose transaction did not commit."""
    if confirm is None:
        yield
        return
    from django.db import connections
    from django.db.migrations.recorder import MigrationRecorder
    from django.db.models.signals import pre_delete, pre_save

    model = MigrationRecorder.Migration
    fence = _Fenced(alias, confirm, current)
    uid = f"entrypoint-fence-{alias}"
    pre_save.connect(fence.before_record, sender=model, weak=False, dispatch_uid=uid)
    pre_delete.connect(fence.before_record, sender=model, weak=False, dispatch_uid=uid)
    try:
        with connections[alias].execute_wrapper(fence):
            yield
    finally:
        pre_save.disconnect(sender=model, dispatch_uid=uid)
        pre_delete.disconnect(sender=model, dispatch_uid=uid)


def _lost_where(state: Progress) -> str:
    if state.current is None:
        return "between migrations or in Django's post-migrate work"
    app, migration = state.current
    if state.current_atomic:
        return f"while applying {app}.{migration}; its transaction was rolled back"
    return f"while applying {app}.{migration}, which is not atomic and may be partly applied"


# MySQL/MariaDB's "Lock wait timeout exceeded" (a metadata or a row lock).
_MYSQL_LOCK_WAIT_TIMEOUT = 1205


def _is_lock_timeout(exc: BaseException) -> bool:
    """True when the error, or its cause, is PostgreSQL's lock_not_available (55P03) or
    MySQL's lock wait timeout (1205)."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "sqlstate", None) == "55P03":
            return True
        if type(seen).__module__.startswith("MySQLdb") and seen.args[:1] == (
            _MYSQL_LOCK_WAIT_TIMEOUT,
        ):
            return True
        seen = seen.__cause__
    return False


def _error_text(exc: BaseException) -> str:
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return f"{type(cause).__name__}: {first_line(cause)}"


def _check_summary(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if ": (" in line]
    return (errors[0] if errors else lines[-1] if lines else "see manage.py check") + (
        "; run 'python manage.py check' for the full list"
    )


def _interrupted_message(signum: int, alias: str, state: Progress) -> str:
    import signal

    name = signal.Signals(signum).name
    if state.current is None:
        return (
            f"stopped by {name} while migrating database {alias!r}, between migrations or in "
            "Django's post-migrate work (the next run finishes that)"
        )
    app, migration = state.current
    if state.current_atomic:
        outcome = "its transaction was rolled back"
    else:
        outcome = "it is not atomic and may be partly applied"
    return f"stopped by {name} while applying {app}.{migration} on {alias!r}; {outcome}"


def phase_overrides(loader: Any) -> dict[str, Any]:
    """The project's marks from ``settings.ENTRYPOINT_MIGRATION_PHASES``, validated against
    ``loader``'s migrations (ConfigError, exit 64, naming a bad entry)."""
    from django.conf import settings

    from entrypoint.phases import OVERRIDES_SETTING, parse_overrides

    value = getattr(settings, OVERRIDES_SETTING, None)
    if value is None:
        return {}
    nodes = set(loader.graph.nodes) | set(getattr(loader, "disk_migrations", None) or ())
    return parse_overrides(value, nodes)


@dataclass
class PlanSplit:
    """The pending plan of one database, classified and split by the deploy-phase policy."""

    planned: list[Any]
    apply: list[Any]
    held: list[Any]
    targets: list[Node] | None
    #: The MigrationExecutor the plan was made with (its graph and history, for reuse).
    executor: Any = None


def split(alias: str, policy: str, *, with_locks: bool = False) -> PlanSplit:
    """Classify the pending plan of ``alias`` and split it for ``policy`` (all, pre-deploy,
    post-deploy). ``targets`` is None when everything pending is to be applied. With
    ``with_locks``, each migration also lists the table-size-bound locks it takes on this
    database's server.

    Raises PlanCannotBeSplit (exit 65) when a held migration is needed by one to apply.
    """
    from django.db import connections

    from entrypoint.impact import server_of
    from entrypoint.phases import Policy, classify_plan, plan_targets, split_plan

    connection = connections[alias]
    executor = executor_for(alias)
    graph = executor.loader.graph
    forwards = [
        (m, False) for m, backwards in executor.migration_plan(graph.leaf_nodes()) if not backwards
    ]
    server = server_of(connection) if with_locks and forwards else None
    planned = classify_plan(forwards, executor.loader, server, phase_overrides(executor.loader))
    apply_now, held = split_plan(planned, Policy(policy), graph)
    targets = plan_targets(apply_now, graph) if held else None
    return PlanSplit(
        planned=planned, apply=apply_now, held=held, targets=targets, executor=executor
    )
