"""Apply migrations through Django's own migrate machinery, reporting progress.

The engine never prints: it reports through a callback (``on_event(event)``) with typed events
(:mod:`.events`: a migration started, applied with its seconds, failed, retried), which the
pipeline turns into audit rows, log lines and metrics. What is applied is applied exactly as
``manage.py migrate`` applies it: the engine runs Django's migrate command itself, with its
progress callback pointed here, so pre/post-migrate signals, content types and permissions come
out identical. With nothing pending, Django's migrate is not run at all; what it would still do
then is done here (:func:`record_squashes`, :func:`check_history`), or by running it anyway when
the previous run ended before its post-migrate work.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from entrypoint.audit.table import TABLE as AUDIT_TABLE
from entrypoint.db.reasons import first_line
from entrypoint.engine import events
from entrypoint.engine.ddl import (
    WriteCounter,
    failing_operation,
    is_lock_timeout,
    left_behind,
    missing_privilege,
    privilege_fix,
)
from entrypoint.engine.events import OnEvent
from entrypoint.engine.graph import inconsistent_message
from entrypoint.engine.session import Scoped
from entrypoint.errors import ConfigError, Interrupted, LockLost, MigrationFailed
from entrypoint.plan.types import Node
from entrypoint.process import FenceStop, SignalStop


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


def apply(
    alias: str,
    on_event: OnEvent,
    *,
    targets: list[Node] | None = None,
    retries: int = 0,
    progress: Progress | None = None,
    run_checks: bool = True,
    confirm: Callable[[], None] | None = None,
    session: Scoped | None = None,
    glance: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Applied]:
    """Run Django's migrate on ``alias``; return what was applied.

    ``targets`` limits the run to those nodes and their dependencies (one ``migrate APP NAME``
    per target, in order); None applies everything. A migration that fails on the DDL lock
    timeout and left nothing behind (atomic, so rolled back whole, or on MySQL/MariaDB failed
    before any statement of its own changed something) is retried up to ``retries`` times with
    back-off. ``confirm`` (the fence's check that the lock is still held, raising
    :class:`~entrypoint.locks.base.Lost`) is called before each migration is recorded in
    ``django_migrations``, inside its transaction when it has one;
    ``glance`` (the fence's look at the lock connection, without a round trip unless something
    arrived there) before each migration starts and before each statement, ``confirm`` itself
    when ``glance`` is not given.
    ``session`` gives each migration's statements their settings, scoped to the migration
    (:mod:`.session`).

    Raises MigrationFailed (exit 70) naming the migration and the database error, Interrupted
    when SIGTERM/SIGINT arrived (the statement in flight was cancelled), or LockLost (75) when
    the lock was lost (likewise).
    """
    state = progress if progress is not None else Progress()

    def run_all() -> None:
        for target in targets if targets is not None else [None]:
            _apply_once(
                alias,
                on_event,
                state,
                target,
                run_checks=run_checks,
                confirm=confirm,
                session=session,
                glance=glance,
                clock=clock,
            )

    with_retries(run_all, alias, state, on_event, retries=retries, sleep=sleep)
    return list(state.applied)


def with_retries(
    attempt: Callable[[], None],
    alias: str,
    state: Progress,
    on_event: OnEvent,
    *,
    retries: int,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Call ``attempt``; again, up to ``retries`` times with back-off (:data:`RETRY_FIRST_DELAY`
    doubling up to :data:`RETRY_MAX_DELAY`), while it fails on the DDL lock timeout having left
    nothing behind (``state.failed_atomic``). Each retry is reported as an
    :class:`~entrypoint.engine.events.Retried` event before the back-off."""
    if retries <= 0:
        attempt()
        return
    import tenacity

    def safe_to_retry(exc: BaseException) -> bool:
        # Only a lock timeout that left nothing behind: rolled back whole, or on a database
        # without transactional DDL failed before any statement of its own changed something.
        return isinstance(exc, MigrationFailed) and exc.lock_timeout and state.failed_atomic

    def before_retry(retry: Any) -> None:
        app, name = state.failed or ("", "")
        on_event(
            events.Retried(
                alias,
                app,
                name,
                attempt=retry.attempt_number,
                retries=retries,
                delay=retry.upcoming_sleep,
            )
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(safe_to_retry),
        stop=tenacity.stop_after_attempt(retries + 1),
        wait=tenacity.wait_exponential(multiplier=RETRY_FIRST_DELAY, max=RETRY_MAX_DELAY),
        sleep=sleep,
        before_sleep=before_retry,
        reraise=True,
    )
    retrying(attempt)


# Back-off of the DDL lock timeout retries: 0.5 s, 1 s, 2 s, ... up to 10 s.
RETRY_FIRST_DELAY = 0.5
RETRY_MAX_DELAY = 10.0


def _apply_once(
    alias: str,
    on_event: OnEvent,
    state: Progress,
    target: Node | None,
    *,
    run_checks: bool,
    confirm: Callable[[], None] | None,
    session: Scoped | None,
    glance: Callable[[], None] | None,
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
                confirm_lock(
                    glance or confirm,
                    alias,
                    f"before {migration.app_label}.{migration.name} started; nothing of it ran",
                )
                if session is not None:
                    session.migration_starts()
                state.current = (migration.app_label, migration.name)
                # Django wraps a migration in a transaction only where DDL can be rolled
                # back; on MySQL/MariaDB an "atomic" migration may be left partly applied.
                state.current_atomic = bool(getattr(migration, "atomic", True)) and bool(
                    connections[alias].features.can_rollback_ddl
                )
                state.started = clock()
                on_event(
                    events.Started(
                        alias, migration.app_label, migration.name, atomic=state.current_atomic
                    )
                )
                writes.reset()
            elif action == "apply_success":
                if session is not None:
                    session.migration_ends()
                done = Applied(migration.app_label, migration.name, clock() - state.started)
                state.applied.append(done)
                state.current = None
                on_event(
                    events.Succeeded(alias, done.app, done.name, seconds=round(done.seconds, 4))
                )

    from entrypoint.db.cancel import cancel_on_signal

    command = Command(stdout=io.StringIO(), stderr=io.StringIO())
    args = list(target) if target is not None else []
    state.current = state.failed = None
    writes = WriteCounter()
    try:
        with (
            cancel_on_signal(alias),
            connections[alias].execute_wrapper(writes),
            fenced(alias, confirm, lambda: state.current, glance=glance),
            _scoped(alias, session),
        ):
            call_command(
                command,
                *args,
                database=alias,
                interactive=False,
                verbosity=0,
                skip_checks=not run_checks,
            )
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
        raise MigrationFailed(inconsistent_message(alias, exc)) from exc
    except Exception as exc:
        lock_timeout = is_lock_timeout(exc)
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
            confirm_lock(
                confirm,
                alias,
                f"while applying {app}.{name}, which then failed ({_error_text(exc)})",
            )
            on_event(
                events.Failed(
                    alias, app, name, error=type(exc).__name__, seconds=seconds, partial=partial
                )
            )
            msg = f"migration {app}.{name} failed on database {alias!r}: {_error_text(exc)}"
            if partial:
                msg += f"; {left_behind(failing_operation(exc))}"
            privilege = missing_privilege(exc)
            if privilege is not None:
                msg += f"; {privilege_fix(privilege, _role(alias))}"
        else:
            confirm_lock(confirm, alias, f"while migrating, which then failed ({_error_text(exc)})")
            msg = f"migrate failed on database {alias!r}: {_error_text(exc)}"
            privilege = missing_privilege(exc)
            if privilege is not None:
                msg += f"; {privilege_fix(privilege, _role(alias))}"
        raise MigrationFailed(msg, lock_timeout=lock_timeout) from exc


@contextmanager
def _scoped(alias: str, session: Scoped | None) -> Iterator[None]:
    """The session wrapper innermost, so that its own statements pass no other wrapper; a
    migration stopped by an error still has its session settings put back."""
    if session is None:
        yield
        return
    from django.db import connections

    try:
        with connections[alias].execute_wrapper(session):
            yield
    finally:
        session.migration_ends()


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
    """An ``execute_wrapper`` that runs the fence's look at the lock before each statement of a
    migration, and the recorder hooks that run its full check and word where a loss stopped it."""

    def __init__(
        self,
        alias: str,
        confirm: Callable[[], None],
        current: Callable[[], Node | None] = lambda: None,
        glance: Callable[[], None] | None = None,
    ) -> None:
        self.alias = alias
        self.confirm = confirm
        self.glance = glance or confirm
        self.current = current
        # Set for the one INSERT/DELETE that records changes already committed.
        self.record_committed = False

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        """Look at the lock, then run the statement (the audit trail's own writes go through)."""
        if self.record_committed:
            self.record_committed = False
        elif AUDIT_TABLE not in str(sql):
            confirm_lock(self.glance, self.alias, self._where())
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
        confirm_lock(
            self.confirm, self.alias, f"before {node} was recorded; its transaction was rolled back"
        )


@contextmanager
def fenced(
    alias: str,
    confirm: Callable[[], None] | None,
    current: Callable[[], Node | None] = lambda: None,
    *,
    glance: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Inside the block, the fence's look at the lock (``glance``, else ``confirm``) runs
    before each statement Django runs on ``alias``, and its full check (``confirm``) before each
    row its recorder writes or deletes in ``django_migrations``: a lost lock stops the migration
    before its next change, rolls back a transaction that is still open, and never records a
    migration whose transaction did not commit."""
    if confirm is None:
        yield
        return
    from django.db import connections
    from django.db.migrations.recorder import MigrationRecorder
    from django.db.models.signals import pre_delete, pre_save

    model = MigrationRecorder.Migration
    fence = _Fenced(alias, confirm, current, glance)
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


def _role(alias: str) -> str | None:
    """The database user of ``alias`` as its settings name it."""
    from django.db import connections

    user = connections[alias].settings_dict.get("USER")
    return str(user) if user else None


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
