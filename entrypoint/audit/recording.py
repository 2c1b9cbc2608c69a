"""Recording one run as it goes: the row written when the run starts working under the lock and
updated as each migration starts and ends, so that a crash leaves an honest record.

Writes go through Django's connection of the alias, in autocommit, and only at the points where
Django's migrate reports progress: before a migration's transaction opens and after it closes.
A second connection writing while a migration's transaction is open would block on SQLite.
After a failure or a cancelled statement the connection is closed and opened again for the last
update. Lists (the planned and the applied migrations) are stored as JSON text.

A row still ``running`` when the next run takes the lock belongs to a run that lost the lock:
:func:`reap` fences it (its sessions ended) and marks it ``interrupted``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from entrypoint.audit.gate import check_interrupted
from entrypoint.audit.read import last_status
from entrypoint.audit.retention import Retention, prune
from entrypoint.audit.rows import Kind, RunRow, Status, Step, dumps_json, iso_utc
from entrypoint.audit.table import COLUMNS, TABLE, audit_failed, dialect, ensure_table, utc_now
from entrypoint.db.reasons import first_line
from entrypoint.engine import events
from entrypoint.engine.events import Event, Report, Sink
from entrypoint.errors import EntrypointError, Interrupted, LockLost
from entrypoint.log import mask
from entrypoint.plan.types import Node, dotted
from entrypoint.process import FenceStop


@dataclass
class Recording:
    """The row of the current run on one database, kept up to date while the run works.

    Pass :meth:`on_event` to the migration engine as its ``on_event`` callback: it records each
    migration's start, success and failure (and their unapply counterparts for a rollback) in
    the row, then hands the event on to ``sink``.
    """

    alias: str
    run_id: str
    sink: Sink
    kind: Kind = Kind.MIGRATE
    release: str | None = None
    phase: str | None = None
    lock_wait: float = 0.0
    rollback_of: str | None = None
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = utc_now
    planned: list[Node] = field(default_factory=list)
    #: Which planned migrations run in one transaction (from :meth:`begin`).
    atomic: dict[Node, bool] = field(default_factory=dict)
    #: Whether ``current`` has started, or is only named ahead (see :meth:`begin`).
    current_started: bool = False
    steps: list[Step] = field(default_factory=list)
    current: Node | None = None
    current_atomic: bool | None = None
    # From ``migration_failed``: False when a non-atomic migration failed before it changed
    # anything (the engine counts its writes), True when it may be partly applied.
    current_partial: bool | None = None
    undone: bool = False
    begun: bool = False
    finished: bool = False
    #: How the run before this one on the same database ended (None: this is the first).
    previous_status: str | None = None
    started_at: datetime = field(init=False)
    _started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started_at = self.now()
        self._started = self.clock()

    @property
    def applied(self) -> list[Node]:
        """What this run has applied (or unapplied) so far, in order."""
        return [step.node for step in self.steps]

    def begin(self, planned: Sequence[Node], atomic: Mapping[Node, bool] | None = None) -> None:
        """Write the ``running`` row, with the plan, before the first migration starts.

        ``atomic`` says which planned migrations run in one transaction: the row then names
        such a migration as in progress from the write that ends the one before it (or from this
        one), so each costs one write instead of two. A crash just before it starts leaves it
        named, atomic, which is as true as "between migrations": nothing of it is applied. A
        migration that is not atomic is named only once it starts, by a write of its own.
        """
        from django.db import DatabaseError

        self.planned = list(planned)
        self.atomic = dict(atomic or {})
        self._foresee(self.planned[0] if self.planned else None)
        try:
            self._insert(Status.RUNNING)
        except DatabaseError as exc:
            raise audit_failed(self.alias, "write", exc) from exc
        self.begun = True

    def _foresee(self, node: Node | None) -> None:
        """Name ``node`` as in progress in the next write, when it is known to be atomic."""
        if node is not None and self.atomic.get(node) is True:
            self.current, self.current_atomic = node, True
        else:
            self.current, self.current_atomic = None, None
        self.current_started = False

    def _next_planned(self, node: Node) -> Node | None:
        try:
            index = self.planned.index(node)
        except ValueError:
            return None
        return self.planned[index + 1] if index + 1 < len(self.planned) else None

    @property
    def report(self) -> Report:
        """Where this recording's own events go (a reaped run, a failed audit write)."""
        return self.sink.event

    def on_event(self, event: Event) -> None:
        """Record an engine event in the row, then hand it to the sink.

        The row is written first, so whatever a log line says has started or ended is already
        in the audit table.
        """
        try:
            self._record(event)
        finally:
            self.sink.emit(event)

    def _record(self, event: Event) -> None:
        if isinstance(event, events.Started | events.UnapplyStarted):
            node = (event.app, event.migration)
            foreseen = self.current == node and self.current_atomic == event.atomic
            self.current = node
            self.current_atomic = event.atomic
            self.current_partial = None
            self.current_started = True
            if not foreseen or isinstance(event, events.UnapplyStarted):
                self._update(current=True)
        elif isinstance(event, events.Succeeded | events.Unapplied):
            node = (event.app, event.migration)
            self.steps.append(Step(event.app, event.migration, round(event.seconds * 1000)))
            following = self._next_planned(node) if isinstance(event, events.Succeeded) else None
            self._foresee(following)
            self._update(current=True)
        elif isinstance(event, events.Failed) and event.partial is False:
            # Without transactional DDL: nothing of it was written before the error, so
            # running it again is safe (see entrypoint.engine.ddl).
            self.current_atomic = True
        elif isinstance(event, events.Failed):
            self.current_partial = event.partial
        # A failed migration's connection may be broken: the failure is written by finish().

    def finish(self, status: Status, error: str | None = None) -> None:
        """Write the final status; never raises (the run's own outcome matters more)."""
        if self.finished:
            return
        self.finished = True
        if status is Status.SUCCEEDED or not self.current_started:
            # Named ahead but never started: the run ended between two migrations.
            self.current, self.current_atomic = None, None
        try:
            connection = usable_connection(self.alias, fresh=status is not Status.SUCCEEDED)
            if self.begun:
                self._update(
                    current=True, status=status, error=error, final=True, connection=connection
                )
            else:
                self._insert(status, error=error, final=True, connection=connection)
        except Exception as exc:
            self.report(
                "audit_write_failed",
                level="warning",
                database=self.alias,
                error=f"{type(exc).__name__}: {first_line(exc)}",
            )

    def fail_with(self, exc: BaseException) -> None:
        """Finish the row after ``exc`` ended the run: interrupted, rolled back or failed."""
        if isinstance(exc, Interrupted | LockLost | KeyboardInterrupt):
            status = Status.INTERRUPTED
        elif self.undone:
            status = Status.ROLLED_BACK
        else:
            status = Status.FAILED
        if isinstance(exc, Interrupted):
            text = str(exc)
        elif isinstance(exc, KeyboardInterrupt):
            text = f"stopped by {exc} before the run finished"
        elif isinstance(exc, EntrypointError):
            text = str(exc) or type(exc).__name__
        else:
            text = f"{type(exc).__name__}: {first_line(exc)}"
        self.finish(status, mask(text))

    def _elapsed_ms(self) -> int:
        return round(self.lock_wait * 1000 + (self.clock() - self._started) * 1000)

    def _insert(
        self,
        status: Status,
        *,
        error: str | None = None,
        final: bool = False,
        connection: Any = None,
    ) -> None:
        from django.db import connections

        conn = connection if connection is not None else connections[self.alias]
        d = dialect(conn.vendor)
        values: dict[str, Any] = {
            "id": self.run_id,
            "db_alias": self.alias,
            "kind": self.kind,
            "status": status,
            "release_label": self.release,
            "phase": self.phase,
            "host": socket.gethostname()[:255],
            "pid": os.getpid(),
            "started_at": d.to_db(self.started_at),
            "finished_at": d.to_db(self.now()) if final else None,
            "lock_wait_ms": round(self.lock_wait * 1000),
            "total_ms": self._elapsed_ms() if final else None,
            "planned": dumps_json([{"app": a, "name": n} for a, n in self.planned]),
            "applied": dumps_json([step.to_dict() for step in self.steps]),
            "current_migration": dotted(self.current) if self.current else None,
            "current_atomic": None if self.current_atomic is None else int(self.current_atomic),
            "error": error,
            "rollback_of": self.rollback_of,
        }
        names = ", ".join(values)
        marks = ", ".join(["%s"] * len(values))
        # The sequence number orders runs by when they held the lock, whatever the hosts'
        # clocks say; the lock makes MAX + 1 safe.
        query = (
            f"INSERT INTO {TABLE} (seq, {names}) "
            f"SELECT COALESCE(MAX(seq), 0) + 1, {marks} FROM {TABLE}"
        )
        with conn.cursor() as cursor:
            cursor.execute(query, list(values.values()))

    def _update(
        self,
        *,
        current: bool = False,
        status: Status | None = None,
        error: str | None = None,
        final: bool = False,
        connection: Any = None,
    ) -> None:
        from django.db import connections

        if not self.begun:
            return
        conn = connection if connection is not None else connections[self.alias]
        d = dialect(conn.vendor)
        values: dict[str, Any] = {"applied": dumps_json([step.to_dict() for step in self.steps])}
        if current:
            values["current_migration"] = dotted(self.current) if self.current else None
            values["current_atomic"] = (
                None if self.current_atomic is None else int(self.current_atomic)
            )
        if status is not None:
            values["status"] = status
            values["error"] = error
        if final:
            values["finished_at"] = d.to_db(self.now())
            values["total_ms"] = self._elapsed_ms()
        assignments = ", ".join(f"{name} = %s" for name in values)
        with conn.cursor() as cursor:
            cursor.execute(
                f"UPDATE {TABLE} SET {assignments} WHERE id = %s AND db_alias = %s",
                [*values.values(), self.run_id, self.alias],
            )


def usable_connection(alias: str, *, fresh: bool) -> Any:
    """Django's connection of ``alias``, closed and reopened first when ``fresh`` is asked.

    After a failed migration or a cancelled statement the session may be unusable; closing it
    makes the next query open a new one. An in-memory SQLite database survives: Django does not
    close those.
    """
    from django.db import connections

    connection = connections[alias]
    if fresh:
        if connection.in_atomic_block:
            # Still inside a transaction that someone else will end: write on a new connection.
            return connections.create_connection(alias)
        try:
            connection.close()
        except Exception:  # noqa: S110 - a broken session cannot always be closed cleanly
            pass
    return connection


def mark_rolled_back(alias: str, run_id: str, by: str) -> None:
    """Mark run ``run_id`` as ``rolled_back`` by the rollback run ``by``."""
    from django.db import connections

    with connections[alias].cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET status = %s, resolved_by = %s WHERE id = %s AND db_alias = %s",
            [Status.ROLLED_BACK.value, by, run_id, alias],
        )


def reap(
    alias: str,
    run_id: str,
    report: Report,
    *,
    dead: bool = True,
    fence_old: Callable[[str], Sequence[Any]] | None = None,
) -> list[RunRow]:
    """Mark runs left ``running`` as ``interrupted``; call under the lock.

    Only the lock holder writes ``running`` rows, so under the lock such a row belongs to a run
    that lost the lock: its process died (SIGKILL, an evicted pod, a lost host), or it lives on
    without its lock session. ``fence_old(run_id)`` first makes sure that run has no session
    left on the server (ending them, or waiting them out) and returns those it had. Each row is
    then logged as ``interrupted_run`` with the migration that was in progress. Without a lock
    (``ENTRYPOINT_LOCK=off``) a ``running`` row may belong to a live process: pass
    ``dead=False`` to leave those alone. Returns the interrupted runs whose in-progress
    migration was not atomic and that no later run has gone past yet.
    """
    from django.db import connections

    query = (
        f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE db_alias = %s AND (status = %s "
        "OR (status IN (%s, %s) AND current_atomic = 0 AND resolved_by IS NULL)) ORDER BY seq"
    )
    connection = connections[alias]
    # Without transactional DDL (MySQL/MariaDB) a failed migration may be partly applied too.
    gated = Status.INTERRUPTED if connection.features.can_rollback_ddl else Status.FAILED
    with connection.cursor() as cursor:
        cursor.execute(query, [alias, Status.RUNNING.value, Status.INTERRUPTED.value, gated.value])
        rows = [RunRow.from_row(row) for row in cursor.fetchall()]
    pending: list[RunRow] = []
    for row in rows:
        if row.status is Status.RUNNING:
            if not dead:
                continue
            ended = fence_old(row.id) if fence_old is not None else []
            if ended:
                error = (
                    f"it lost the migration lock and still had {len(ended)} session(s) on the "
                    f"server, ended by run {run_id}"
                )
            else:
                error = (
                    f"the process ended without finishing (killed, or its host lost); found by "
                    f"run {run_id}"
                )
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {TABLE} SET status = %s, error = %s WHERE id = %s AND db_alias = %s",
                    [Status.INTERRUPTED.value, error, row.id, alias],
                )
            report(
                "interrupted_run",
                level="warning",
                database=alias,
                interrupted_run=row.id,
                kind=row.kind,
                host=row.host,
                pid=row.pid,
                release=row.release,
                started_at=iso_utc(row.started_at),
                migration=dotted(row.current_migration) if row.current_migration else None,
                atomic=row.current_atomic,
                applied=[dotted(step.node) for step in row.applied],
            )
        if row.current_migration is not None and row.current_atomic is False:
            pending.append(row)
    return pending


@contextmanager
def recording(
    alias: str,
    run_id: str,
    sink: Sink,
    *,
    kind: Kind = Kind.MIGRATE,
    release: str | None = None,
    phase: str | None = None,
    lock_wait: float = 0.0,
    reap_dead: bool = True,
    accept_interrupted: bool = False,
    gate: bool = True,
    rollback_of: str | None = None,
    fence_old: Callable[[str], Sequence[Any]] | None = None,
    keep: Retention | None = None,
) -> Iterator[Recording]:
    """Record one run on ``alias``; enter it right after the lock is taken.

    Once the run's row is final (a run that succeeded), what ``keep`` lets go of is pruned
    (:func:`~entrypoint.audit.retention.prune`), still under the lock.

    Creates the table, reaps runs left ``running`` (``reap_dead``: only under a lock can they
    be told dead; ``fence_old`` first ends what sessions they still have), refuses to go on
    past an interrupted non-atomic migration (``gate``), then yields the :class:`Recording`.
    Leaving the block finishes the row: ``succeeded``; ``interrupted`` on SIGTERM/SIGINT or a
    lost lock; ``rolled_back`` when the run undid itself; ``failed`` otherwise. A run that never
    calls :meth:`Recording.begin` (nothing pending, or refused before the first migration) is
    written in one INSERT.
    """
    report = sink.event
    record = Recording(
        alias,
        run_id,
        sink,
        kind=kind,
        release=release,
        phase=phase,
        lock_wait=lock_wait,
        rollback_of=rollback_of,
    )
    from django.db import DatabaseError

    ensure_table(alias)
    try:
        try:
            found = reap(alias, run_id, report, dead=reap_dead, fence_old=fence_old)
            record.previous_status = last_status(alias)
        except DatabaseError as exc:
            raise audit_failed(alias, "read", exc) from exc
        if gate:
            check_interrupted(alias, found, run_id, accept=accept_interrupted, report=report)
        yield record
    except FenceStop as stop:
        # The lock was lost outside a migration (between two, or in this bookkeeping).
        lost = LockLost(alias, stop.reason)
        record.fail_with(lost)
        raise lost from None
    except BaseException as exc:
        record.fail_with(exc)
        raise
    record.finish(Status.SUCCEEDED)
    if keep is not None:
        prune(alias, keep, report)
