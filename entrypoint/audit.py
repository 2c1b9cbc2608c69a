"""The audit trail: one row per run in ``entrypoint_migration_run``, on the database it migrated.

The table is created by the entrypoint itself (``CREATE TABLE IF NOT EXISTS``, under the
migration lock); no app is installed and Django's own migrations never touch it. A run's row is
written when the run starts working under the lock and updated as each migration starts and
ends, so a crash leaves an honest record: a row still ``running`` when the next run takes the
lock belongs to a holder that died, and that run marks it ``interrupted``.

Writes go through Django's connection of the alias, in autocommit, and only at the points where
Django's migrate reports progress: before a migration's transaction opens and after it closes.
A second connection writing while a migration's transaction is open would block on SQLite.
After a failure or a cancelled statement the connection is closed and opened again for the last
update. The SQL is plain and portable (PostgreSQL, SQLite, MySQL/MariaDB); the one difference,
how a moment in time is stored, is kept in :class:`Dialect`. Lists (the planned and the applied
migrations) are stored as JSON text.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from entrypoint.databases import first_line
from entrypoint.errors import EntrypointError, Interrupted, LockLost, MigrationFailed
from entrypoint.log import mask
from entrypoint.process import FenceStop

TABLE = "entrypoint_migration_run"
KINDS = ("migrate", "rollback")
STATUSES = ("running", "succeeded", "failed", "interrupted", "rolled_back")

Node = tuple[str, str]
# report(event_name, level="info", **fields): the runner's Reporter.event.
Report = Callable[..., None]

# Column order of every SELECT; RunRow.from_row reads them in this order.
_COLUMNS = (
    "id", "db_alias", "seq", "kind", "status", "release_label", "phase", "host", "pid",
    "started_at", "finished_at", "lock_wait_ms", "total_ms", "planned", "applied",
    "current_migration", "current_atomic", "error", "rollback_of", "resolved_by",
)  # fmt: skip


@dataclass(frozen=True)
class Dialect:
    """How one database vendor stores the columns that differ: moments in time and long text.

    PostgreSQL and MySQL/MariaDB get real timestamp columns (UTC); every other backend stores
    ISO 8601 text in UTC, which sorts in time order.
    """

    timestamp: str = "varchar(40)"
    text: str = "text"

    def to_db(self, moment: datetime) -> Any:
        """The parameter that stores ``moment`` (an aware UTC datetime)."""
        if self.timestamp.startswith("timestamp"):
            return moment
        if self.timestamp.startswith("datetime"):
            return moment.astimezone(UTC).replace(tzinfo=None)
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    @staticmethod
    def from_db(value: Any) -> datetime | None:
        """An aware UTC datetime from what the database returned."""
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if not isinstance(value, datetime):
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


DIALECTS = {
    "postgresql": Dialect(timestamp="timestamp with time zone", text="text"),
    "mysql": Dialect(timestamp="datetime(6)", text="longtext"),
}


def dialect(vendor: str) -> Dialect:
    """The dialect of a Django ``connection.vendor``."""
    return DIALECTS.get(vendor, Dialect())


def create_table_sql(vendor: str) -> str:
    """The ``CREATE TABLE IF NOT EXISTS`` statement of the audit table on ``vendor``."""
    d = dialect(vendor)
    return (
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        "id varchar(32) NOT NULL, "
        "db_alias varchar(100) NOT NULL, "
        "seq integer NOT NULL, "
        "kind varchar(16) NOT NULL, "
        "status varchar(16) NOT NULL, "
        "release_label varchar(200) NULL, "
        "phase varchar(16) NULL, "
        "host varchar(255) NULL, "
        "pid integer NULL, "
        f"started_at {d.timestamp} NOT NULL, "
        f"finished_at {d.timestamp} NULL, "
        "lock_wait_ms integer NULL, "
        "total_ms integer NULL, "
        f"planned {d.text} NULL, "
        f"applied {d.text} NULL, "
        "current_migration varchar(255) NULL, "
        "current_atomic integer NULL, "
        f"error {d.text} NULL, "
        "rollback_of varchar(32) NULL, "
        "resolved_by varchar(32) NULL, "
        "PRIMARY KEY (id, db_alias))"
    )


def utc_now() -> datetime:
    """The current moment, aware, in UTC."""
    return datetime.now(UTC)


def dotted(node: Node) -> str:
    """``app.name`` of a migration node."""
    return f"{node[0]}.{node[1]}"


def _node(text: str | None) -> Node | None:
    if not text or "." not in text:
        return None
    app, name = text.split(".", 1)
    return app, name


@dataclass(frozen=True)
class Step:
    """One migration a run applied (or, for a rollback, unapplied), with its duration."""

    app: str
    name: str
    duration_ms: int

    @property
    def node(self) -> Node:
        """(app, name)."""
        return self.app, self.name

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{app, name, duration_ms}``."""
        return {"app": self.app, "name": self.name, "duration_ms": self.duration_ms}


@dataclass(frozen=True)
class RunRow:
    """One row of the audit table."""

    id: str
    database: str
    seq: int
    kind: str
    status: str
    release: str | None
    phase: str | None
    host: str | None
    pid: int | None
    started_at: datetime | None
    finished_at: datetime | None
    lock_wait_ms: int | None
    total_ms: int | None
    planned: tuple[Node, ...]
    applied: tuple[Step, ...]
    current_migration: Node | None
    current_atomic: bool | None
    error: str | None
    rollback_of: str | None
    resolved_by: str | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> RunRow:
        """Build from a row selected with the columns in ``_COLUMNS`` order."""
        values = dict(zip(_COLUMNS, row, strict=True))
        planned = tuple(
            (str(item["app"]), str(item["name"])) for item in _json_list(values["planned"])
        )
        applied = tuple(
            Step(str(item["app"]), str(item["name"]), int(item.get("duration_ms") or 0))
            for item in _json_list(values["applied"])
        )
        atomic = values["current_atomic"]
        return cls(
            id=str(values["id"]),
            database=str(values["db_alias"]),
            seq=int(values["seq"]),
            kind=str(values["kind"]),
            status=str(values["status"]),
            release=values["release_label"],
            phase=values["phase"],
            host=values["host"],
            pid=None if values["pid"] is None else int(values["pid"]),
            started_at=Dialect.from_db(values["started_at"]),
            finished_at=Dialect.from_db(values["finished_at"]),
            lock_wait_ms=values["lock_wait_ms"],
            total_ms=values["total_ms"],
            planned=planned,
            applied=applied,
            current_migration=_node(values["current_migration"]),
            current_atomic=None if atomic is None else bool(atomic),
            error=values["error"],
            rollback_of=values["rollback_of"],
            resolved_by=values["resolved_by"],
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``history --format json``."""
        return {
            "id": self.id,
            "kind": self.kind,
            "database": self.database,
            "status": self.status,
            "release": self.release,
            "phase": self.phase,
            "host": self.host,
            "pid": self.pid,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "lock_wait_ms": self.lock_wait_ms,
            "total_ms": self.total_ms,
            "planned": [{"app": app, "name": name} for app, name in self.planned],
            "applied": [step.to_dict() for step in self.applied],
            "current_migration": dotted(self.current_migration) if self.current_migration else None,
            "current_atomic": self.current_atomic,
            "error": self.error,
            "rollback_of": self.rollback_of,
            "resolved_by": self.resolved_by,
        }


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_list(text: Any) -> list[dict[str, Any]]:
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# --- reading -----------------------------------------------------------------------------------


def table_exists(alias: str) -> bool:
    """Whether the audit table exists on ``alias`` (read-only)."""
    from django.db import connections

    connection = connections[alias]
    with connection.cursor() as cursor:
        return TABLE in connection.introspection.table_names(cursor)


def read_runs(alias: str, limit: int | None = None) -> list[RunRow]:
    """The runs recorded on ``alias``, newest first; empty when the table does not exist yet."""
    from django.db import connections

    if not table_exists(alias):
        return []
    query = f"SELECT {', '.join(_COLUMNS)} FROM {TABLE} WHERE db_alias = %s ORDER BY seq DESC"
    params: list[Any] = [alias]
    if limit is not None:
        query += " LIMIT %s"
        params.append(int(limit))
    with connections[alias].cursor() as cursor:
        cursor.execute(query, params)
        return [RunRow.from_row(row) for row in cursor.fetchall()]


def format_runs(rows: Sequence[RunRow]) -> list[str]:
    """The runs as a table for people, each followed by its migrations and what went wrong."""
    if not rows:
        return ["no runs recorded yet"]
    header = ("RUN", "KIND", "STATUS", "DATABASE", "RELEASE", "STARTED (UTC)", "TOOK", "SUMMARY")
    table = [header]
    details: list[list[str]] = []
    for row in rows:
        started = row.started_at.strftime("%Y-%m-%d %H:%M:%S") if row.started_at else "-"
        took = f"{row.total_ms / 1000:.2f}s" if row.total_ms is not None else "-"
        table.append((row.id, row.kind, row.status, row.database, row.release or "-", started,
                      took, _summary(row)))  # fmt: skip
        details.append(_details(row))
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    lines = []
    for index, line in enumerate(table):
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        lines.append("  ".join([*cells, line[-1]]).rstrip())
        if index:
            lines += details[index - 1]
    return lines


def _summary(row: RunRow) -> str:
    if row.kind == "rollback":
        of = f"rollback of run {row.rollback_of}: " if row.rollback_of else ""
        return f"{of}unapplied {len(row.applied)} of {len(row.planned)}"
    if not row.planned and row.status == "succeeded":
        return "nothing pending"
    return f"applied {len(row.applied)} of {len(row.planned)}"


def _details(row: RunRow) -> list[str]:
    sign = "-" if row.kind == "rollback" else "+"
    lines = [f"    {sign} {step.app}.{step.name} ({step.duration_ms} ms)" for step in row.applied]
    if row.current_migration is not None and row.status != "succeeded":
        atomic = "" if row.current_atomic is not False else " (not atomic)"
        word = "in progress" if row.status in {"running", "interrupted"} else "failed"
        lines.append(f"    ! {word}: {dotted(row.current_migration)}{atomic}")
    if row.error:
        lines.append(f"    error: {row.error}")
    if row.resolved_by:
        word = "rolled back by" if row.status == "rolled_back" else "gone past by"
        lines.append(f"    {word} run {row.resolved_by}")
    return lines


# --- writing -----------------------------------------------------------------------------------


def ensure_table(alias: str) -> None:
    """Create the audit table on ``alias`` unless it exists (call under the migration lock)."""
    from django.db import connections

    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            cursor.execute(create_table_sql(connection.vendor))
    except Exception as exc:
        msg = (
            f"cannot create the audit table {TABLE} on database {alias!r}: "
            f"{type(exc).__name__}: {first_line(exc)}; let the migrating user create tables "
            "there, as migrate itself needs"
        )
        raise MigrationFailed(msg) from exc


@dataclass
class Recording:
    """The row of the current run on one database, kept up to date while the run works.

    Pass :meth:`on_event` to the migration engine as its ``on_event`` callback: it forwards each
    event to ``report`` and records ``migration_started``/``migration_applied``/
    ``migration_failed`` (and their ``unapply`` counterparts for a rollback) in the row.
    """

    alias: str
    run_id: str
    report: Report
    kind: str = "migrate"
    release: str | None = None
    phase: str | None = None
    lock_wait: float = 0.0
    rollback_of: str | None = None
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = utc_now
    planned: list[Node] = field(default_factory=list)
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

    def begin(self, planned: Sequence[Node]) -> None:
        """Write the ``running`` row, with the plan, before the first migration starts."""
        self.planned = list(planned)
        self._insert("running")
        self.begun = True

    def on_event(self, name: str, /, **fields: Any) -> None:
        """Record an engine event in the row, then forward it to the reporter.

        The row is written first, so whatever a log line says has started or ended is already
        in the audit table.
        """
        try:
            self._record(name, fields)
        finally:
            self.report(name, **fields)

    def _record(self, name: str, fields: dict[str, Any]) -> None:
        if name in {"migration_started", "migration_unapply_started"}:
            self.current = (str(fields["app"]), str(fields["migration"]))
            self.current_atomic = bool(fields.get("atomic", True))
            self.current_partial = None
            self._update(current=True)
        elif name in {"migration_applied", "migration_unapplied"}:
            seconds = float(fields.get("seconds") or 0.0)
            app, migration = str(fields["app"]), str(fields["migration"])
            self.steps.append(Step(app, migration, round(seconds * 1000)))
            self.current, self.current_atomic = None, None
            self._update(current=True)
        elif name == "migration_failed" and fields.get("partial") is False:
            # Without transactional DDL: nothing of it was written before the error, so
            # running it again is safe (see entrypoint.ddl).
            self.current_atomic = True
        elif name in {"migration_failed", "migration_unapply_failed"}:
            partial = fields.get("partial")
            self.current_partial = None if partial is None else bool(partial)
        # A failed migration's connection may be broken: the failure is written by finish().

    def finish(self, status: str, error: str | None = None) -> None:
        """Write the final status; never raises (the run's own outcome matters more)."""
        if self.finished:
            return
        self.finished = True
        if status == "succeeded":
            self.current, self.current_atomic = None, None
        try:
            connection = usable_connection(self.alias, fresh=status != "succeeded")
            if self.begun:
                self._update(current=True, status=status, error=error, final=True,
                             connection=connection)  # fmt: skip
            else:
                self._insert(status, error=error, final=True, connection=connection)
        except Exception as exc:
            self.report("audit_write_failed", level="warning", database=self.alias,
                        error=f"{type(exc).__name__}: {first_line(exc)}")  # fmt: skip

    def fail_with(self, exc: BaseException) -> None:
        """Finish the row after ``exc`` ended the run: interrupted, rolled back or failed."""
        if isinstance(exc, Interrupted | LockLost | KeyboardInterrupt):
            status = "interrupted"
        elif self.undone:
            status = "rolled_back"
        else:
            status = "failed"
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
        self, status: str, *, error: str | None = None, final: bool = False, connection: Any = None
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
            "planned": _dumps([{"app": a, "name": n} for a, n in self.planned]),
            "applied": _dumps([step.to_dict() for step in self.steps]),
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
        status: str | None = None,
        error: str | None = None,
        final: bool = False,
        connection: Any = None,
    ) -> None:
        from django.db import connections

        if not self.begun:
            return
        conn = connection if connection is not None else connections[self.alias]
        d = dialect(conn.vendor)
        values: dict[str, Any] = {"applied": _dumps([step.to_dict() for step in self.steps])}
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
            ["rolled_back", by, run_id, alias],
        )


# --- interrupted runs --------------------------------------------------------------------------


@dataclass(frozen=True)
class InvalidIndex:
    """An index PostgreSQL marks invalid, as an interrupted CREATE INDEX CONCURRENTLY leaves."""

    schema: str
    name: str
    table: str
    drop: str


def invalid_indexes(alias: str) -> list[InvalidIndex]:
    """Invalid indexes on ``alias`` with the statement that drops each (PostgreSQL only)."""
    from django.db import connections

    connection = connections[alias]
    if connection.vendor != "postgresql":
        return []
    query = """
        SELECT n.nspname, c.relname, t.relname
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT i.indisvalid
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%%'
        ORDER BY n.nspname, c.relname
    """
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(query)
        rows = cursor.fetchall()
    return [
        InvalidIndex(schema, name, table, f"DROP INDEX CONCURRENTLY {quote(schema)}.{quote(name)}")
        for schema, name, table in rows
    ]


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
        f"SELECT {', '.join(_COLUMNS)} FROM {TABLE} WHERE db_alias = %s AND (status = %s "
        "OR (status IN (%s, %s) AND current_atomic = 0 AND resolved_by IS NULL)) ORDER BY seq"
    )
    connection = connections[alias]
    # Without transactional DDL (MySQL/MariaDB) a failed migration may be partly applied too.
    gated = "interrupted" if connection.features.can_rollback_ddl else "failed"
    with connection.cursor() as cursor:
        cursor.execute(query, [alias, "running", "interrupted", gated])
        rows = [RunRow.from_row(row) for row in cursor.fetchall()]
    pending: list[RunRow] = []
    for row in rows:
        if row.status == "running":
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
                    ["interrupted", error, row.id, alias],
                )
            report("interrupted_run", level="warning", database=alias, interrupted_run=row.id,
                   kind=row.kind, host=row.host, pid=row.pid, release=row.release,
                   started_at=_iso(row.started_at),
                   migration=dotted(row.current_migration) if row.current_migration else None,
                   atomic=row.current_atomic,
                   applied=[dotted(step.node) for step in row.applied])  # fmt: skip
        if row.current_migration is not None and row.current_atomic is False:
            pending.append(row)
    return pending


def last_status(alias: str) -> str | None:
    """The status of the latest run recorded on ``alias``, or None when there is none."""
    from django.db import connections

    with connections[alias].cursor() as cursor:
        cursor.execute(
            f"SELECT status FROM {TABLE} WHERE db_alias = %s ORDER BY seq DESC LIMIT 1", [alias]
        )
        row = cursor.fetchone()
    return None if row is None else str(row[0])


#: How a run ends before Django's post-migrate work (content types, permissions) was done; a run
#: still ``running`` under the lock is one whose holder died (or, with the lock off, one that may
#: still be at it: running Django's migrate once more is harmless then).
UNFINISHED = frozenset({"interrupted", "failed", "running"})


def check_interrupted(
    alias: str, interrupted: Sequence[RunRow], run_id: str, *, accept: bool, report: Report
) -> None:
    """Stop before re-running a non-atomic migration that an interrupted run left half done.

    An interrupted run whose non-atomic migration is now recorded as applied needs nothing
    more. Otherwise this raises MigrationFailed (exit 70) naming what may be half-applied, the
    invalid indexes left behind (PostgreSQL) and how to go on, unless ``accept`` is set, in
    which case the run is marked as gone past and the migration runs again.
    """
    from django.db import connections
    from django.db.migrations.recorder import MigrationRecorder

    if not interrupted:
        return
    applied = set(MigrationRecorder(connections[alias]).applied_migrations())
    blocking = [
        (row, row.current_migration)
        for row in interrupted
        if row.current_migration is not None and row.current_migration not in applied
    ]
    if blocking and not accept:
        row, node = blocking[-1]
        indexes = invalid_indexes(alias)
        left = ""
        if indexes:
            drops = "; ".join(index.drop for index in indexes)
            left = f"; invalid indexes are left behind, drop each first: {drops}"
        ended = "failed" if row.status == "failed" else "was interrupted"
        msg = (
            f"run {row.id} {ended} while applying {dotted(node)} on database "
            f"{alias!r}; that migration is not atomic and may be partly applied{left}; check "
            "the database, then rerun once with ENTRYPOINT_ACCEPT_INTERRUPTED=1 (or "
            "--accept-interrupted) to apply it again"
        )
        raise MigrationFailed(msg)
    with connections[alias].cursor() as cursor:
        for row in interrupted:
            cursor.execute(
                f"UPDATE {TABLE} SET resolved_by = %s WHERE id = %s AND db_alias = %s",
                [run_id, row.id, alias],
            )
    if blocking:
        statements = [index.drop for index in invalid_indexes(alias)]
        for row, node in blocking:
            report("interrupted_run_accepted", level="warning", database=alias,
                   interrupted_run=row.id, migration=dotted(node),
                   invalid_indexes=statements)  # fmt: skip


@contextmanager
def recording(
    alias: str,
    run_id: str,
    *,
    report: Report,
    kind: str = "migrate",
    release: str | None = None,
    phase: str | None = None,
    lock_wait: float = 0.0,
    reap_dead: bool = True,
    accept_interrupted: bool = False,
    gate: bool = True,
    rollback_of: str | None = None,
    fence_old: Callable[[str], Sequence[Any]] | None = None,
) -> Iterator[Recording]:
    """Record one run on ``alias``; enter it right after the lock is taken.

    Creates the table, reaps runs left ``running`` (``reap_dead``: only under a lock can they
    be told dead; ``fence_old`` first ends what sessions they still have), refuses to go on
    past an interrupted non-atomic migration (``gate``), then yields the :class:`Recording`.
    Leaving the block finishes the row: ``succeeded``; ``interrupted`` on SIGTERM/SIGINT or a
    lost lock; ``rolled_back`` when the run undid itself; ``failed`` otherwise. A run that never
    calls :meth:`Recording.begin` (nothing pending, or refused before the first migration) is
    written in one INSERT.
    """
    record = Recording(alias, run_id, report, kind=kind, release=release, phase=phase,
                       lock_wait=lock_wait, rollback_of=rollback_of)  # fmt: skip
    ensure_table(alias)
    try:
        found = reap(alias, run_id, report, dead=reap_dead, fence_old=fence_old)
        record.previous_status = last_status(alias)
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
    record.finish("succeeded")


__all__ = [
    "KINDS",
    "STATUSES",
    "TABLE",
    "UNFINISHED",
    "Dialect",
    "InvalidIndex",
    "Recording",
    "RunRow",
    "Step",
    "check_interrupted",
    "create_table_sql",
    "ensure_table",
    "format_runs",
    "invalid_indexes",
    "last_status",
    "mark_rolled_back",
    "read_runs",
    "reap",
    "recording",
    "table_exists",
    "usable_connection",
]
