"""Collect the SQL a pending operation would run, the way ``manage.py sqlmigrate`` does, without
running anything.

Each operation gets a schema editor in ``collect_sql`` mode and the project state just before it
(the plan's own state, carried forward by the classifier), so Django's operations, third-party
operations and ``RunSQL`` alike write their statements into a list instead of the database. Two
things keep that honest on a database that is behind the plan:

* The schema editor looks up existing constraint and index names to know what to drop. On a
  database that has not yet run the earlier pending migrations, the server's catalog describes
  the wrong schema, so those look-ups are answered from the migration state instead (what
  Django would have created for the model as the state has it). The names in a collected DROP
  can then differ from the server's; what the statement does cannot.
* Everything else the editor or an operation sends to the server passes a guard that lets only
  reads through (SELECT without INTO or row locks, SHOW, as the server's own parser reads them)
  and refuses the rest: the operation's SQL then counts as not collected, and the classifier
  falls back to judging the operation alone.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

from entrypoint.db.reasons import first_line
from entrypoint.log import get_logger
from entrypoint.plan.statements import is_read_only, read, shown
from entrypoint.plan.types import ColumnBefore, OperationSQL

if TYPE_CHECKING:
    from django.db.migrations.state import ProjectState

#: The servers whose SQL is read (the others keep the operation-only rules).
VENDORS = frozenset({"postgresql", "mysql"})


class _Refused(Exception):
    """An operation tried to send a statement that is not a read while its SQL was collected."""

    def __init__(self, sql: str) -> None:
        super().__init__(sql)
        self.sql = sql


class Collector:
    """Collects each operation's SQL on one Django connection: call it with the operation, its
    app label and the project state just before it."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.vendor = str(connection.vendor)
        self.offline = False

    def __call__(self, operation: Any, app: str, state: ProjectState) -> OperationSQL:
        """The SQL ``operation`` would run after ``state``; ``state`` itself is not moved on."""
        vendor = self.vendor
        if not getattr(operation, "reduces_to_sql", True):
            return OperationSQL(vendor, failure="it runs Python, which cannot be written as SQL")
        connection = self.connection
        self._connect()
        after = state.clone()
        moved = None
        editor = None
        try:
            operation.state_forwards(app, after)
            moved = after
            with _guarded(connection, state), _without_server(connection, self.offline):
                editor = connection.schema_editor(collect_sql=True, atomic=False)
                with editor:
                    operation.database_forwards(app, editor, state, after)
        except _Refused as refused:
            why = f"collecting it would run {shown(refused.sql)!r} on the database"
            return OperationSQL(vendor, failure=why, after=moved)
        except Exception as exc:  # an operation's own code may raise anything
            why = f"collecting it failed: {first_line(exc)}"
            return OperationSQL(vendor, failure=why, after=moved)
        statements = tuple(str(sql) for sql in editor.collected_sql)
        columns = _columns(statements, state, connection)
        return OperationSQL(vendor, statements, columns=columns, after=after)

    def _connect(self) -> None:
        """Open the connection where one can be (quoting a default may need it); a plan made
        without a database (``--base``) collects what it can and reports the rest as not
        collected."""
        from django.db.utils import OperationalError

        if self.offline:
            return
        try:
            self.connection.ensure_connection()
        except OperationalError:
            self.offline = True


def collector_for(connection: Any) -> Collector | None:
    """A collector on ``connection``, or None where its SQL is not read (SQLite, and MySQL
    without its SQL reader, which is said once on the log)."""
    vendor = str(connection.vendor)
    if vendor not in VENDORS:
        return None
    if vendor == "mysql" and importlib.util.find_spec("sqlglot") is None:
        _say_unread()
        return None
    return Collector(connection)


@cache
def _say_unread() -> None:
    get_logger().warning(
        "sql_not_read",
        vendor="mysql",
        reason="sqlglot is not installed; operations are judged without their SQL",
        fix="pip install 'django-entrypoint[mysql]'",
    )


@contextmanager
def _guarded(connection: Any, state: ProjectState) -> Iterator[None]:
    """Refuse every statement but reads, and answer the catalog look-ups from ``state``."""
    vendor = str(connection.vendor)

    def refuse_writes(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if many or not is_read_only(str(sql), vendor):
            raise _Refused(str(sql))
        return execute(sql, params, many, context)

    real = connection.introspection
    connection.introspection = _StateCatalog(real, state, connection)
    try:
        with connection.execute_wrapper(refuse_writes):
            yield
    finally:
        connection.introspection = real


#: The PostgreSQL version SQL is written for when no server is asked (``--base``): one Django
#: supports, so that version-dependent SQL takes its current form.
ASSUMED_PG_VERSION = 160000


@contextmanager
def _without_server(connection: Any, offline: bool) -> Iterator[None]:
    """Without a connection, let PostgreSQL's statements be written all the same: the values
    they carry are quoted on the client (as psycopg quotes them for a server with standard
    strings) and the server is taken to be :data:`ASSUMED_PG_VERSION`. MySQL's SQL depends on the
    server it asks (MariaDB or MySQL, version, ``sql_mode``): there, nothing is collected."""
    if not offline or connection.vendor != "postgresql":
        yield
        return
    ops = connection.ops
    known = "pg_version" in vars(connection)
    ops.compose_sql = _compose_on_client
    if not known:
        connection.pg_version = ASSUMED_PG_VERSION
    try:
        yield
    finally:
        del ops.compose_sql
        if not known:
            del connection.pg_version


def _compose_on_client(sql: str, params: Any) -> str:
    """``sql`` with its ``%s`` (or ``%(name)s``) placeholders replaced by quoted literals."""
    from psycopg.sql import Literal

    if not params:
        return sql if params is None else sql % ()
    if isinstance(params, dict):
        return sql % {name: Literal(value).as_string(None) for name, value in params.items()}
    return sql % tuple(Literal(value).as_string(None) for value in params)


class _StateCatalog:
    """The server's introspection, except that constraints and indexes come from the state."""

    def __init__(self, real: Any, state: ProjectState, connection: Any) -> None:
        self._real = real
        self._state = state
        self._connection = connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def get_constraints(self, cursor: Any, table_name: str) -> dict[str, dict[str, Any]]:
        """What Django would have created on ``table_name`` for the model as the state has it."""
        model = _model_of(self._state, table_name)
        return {} if model is None else _constraints(model, self._connection)


def _model_of(state: ProjectState, table: str) -> Any:
    for model in state.apps.get_models(include_auto_created=True):
        if model._meta.db_table == table:
            return model
    return None


def _entry(columns: list[str], **flags: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "columns": columns,
        "primary_key": False,
        "unique": False,
        "foreign_key": None,
        "check": False,
        "index": False,
        "type": None,
        "orders": [],
        "definition": None,
        "options": None,
    }
    entry.update(flags)
    return entry


def _constraints(model: Any, connection: Any) -> dict[str, dict[str, Any]]:
    from django.db.models import CheckConstraint, Index, UniqueConstraint

    meta = model._meta
    table = meta.db_table
    found: dict[str, dict[str, Any]] = {}
    for field in meta.local_fields:
        column = field.column
        if field.primary_key:
            found[f"{table}_pkey"] = _entry([column], primary_key=True, unique=True)
        elif field.unique:
            found[f"{table}_{column}_uniq"] = _entry([column], unique=True)
        if field.remote_field is not None and getattr(field, "db_constraint", False):
            target = field.target_field
            to = (target.model._meta.db_table, target.column)
            found[f"{table}_{column}_fk"] = _entry([column], foreign_key=to)
        if field.db_index and not field.unique and not field.primary_key:
            found[f"{table}_{column}_idx"] = _entry([column], index=True, type=Index.suffix)
        if field.db_parameters(connection).get("check"):
            found[f"{table}_{column}_check"] = _entry([column], check=True)
    by_name = {field.name: field.column for field in meta.local_fields}
    for index in meta.indexes:
        columns = [by_name.get(name.lstrip("-"), name) for name in index.fields]
        found[index.name] = _entry(columns, index=True, type=index.suffix)
    for constraint in meta.constraints:
        columns = [by_name.get(name, name) for name in getattr(constraint, "fields", ())]
        if isinstance(constraint, UniqueConstraint):
            shaped = ("condition", "expressions", "include", "opclasses")
            plain = not any(getattr(constraint, name, None) for name in shaped)
            found[constraint.name] = _entry(columns, unique=True, index=not plain)
        elif isinstance(constraint, CheckConstraint):
            found[constraint.name] = _entry(_checked_columns(constraint, by_name), check=True)
        else:
            found[constraint.name] = _entry(columns, index=True)
    for group in meta.unique_together:
        columns = [by_name.get(name, name) for name in group]
        found[f"{table}_{'_'.join(columns)}_uniq"] = _entry(columns, unique=True)
    return found


def _checked_columns(constraint: Any, by_name: dict[str, str]) -> list[str]:
    condition = getattr(constraint, "condition", None) or getattr(constraint, "check", None)
    names: set[str] = getattr(condition, "referenced_base_fields", set())
    return [by_name.get(name, name) for name in sorted(names)]


def _columns(
    statements: tuple[str, ...], state: ProjectState, connection: Any
) -> dict[tuple[str, str], ColumnBefore]:
    """The columns the statements name, as ``state`` has them (before the operation)."""
    if not statements:
        return {}
    wanted = {
        (change.table, change.column)
        for change in read(statements, str(connection.vendor))
        if change.table and change.column
    }
    found: dict[tuple[str, str], ColumnBefore] = {}
    for table, column in sorted(wanted, key=str):
        model = _model_of(state, str(table))
        if model is None:
            continue
        described = _column(model, str(column), connection)
        if described is not None:
            found[(str(table), str(column))] = described
    return found


def _column(model: Any, column: str, connection: Any) -> ColumnBefore | None:
    from django.db.models import CheckConstraint

    meta = model._meta
    field = next((f for f in meta.local_fields if f.column == column), None)
    if field is None:
        return None
    db_type = field.db_type(connection)
    if db_type is None:
        return None
    checked = bool(field.db_parameters(connection).get("check")) or any(
        isinstance(constraint, CheckConstraint)
        and column in _checked_columns(constraint, {f.name: f.column for f in meta.local_fields})
        for constraint in meta.constraints
    )
    indexed = bool(field.db_index or field.unique or field.primary_key) or any(
        field.name in index.fields for index in meta.indexes
    )
    return ColumnBefore(type=str(db_type), null=bool(field.null), checked=checked, indexed=indexed)
