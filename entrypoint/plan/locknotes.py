"""What a pending operation locks on its server for as long as the table is large.

Every schema change takes a short exclusive lock on its table (PostgreSQL's ACCESS EXCLUSIVE,
MySQL's metadata lock) and queues behind open transactions for it; ``ENTRYPOINT_DDL_LOCK_TIMEOUT``
bounds that wait. The notes here are about the other kind: operations whose lock is held for a
time that grows with the table, because the server rewrites or copies the table, scans every row
or builds an index while the application waits. ``plan`` shows them next to the deploy phase, so
a reviewer sees which migration freezes a large table before it runs.

The rules follow what each server documents for the SQL that Django's schema editor emits:

* PostgreSQL: a column type change rewrites the table and its indexes under ACCESS EXCLUSIVE
  (except the binary-compatible ones: a longer ``varchar``, ``varchar`` to ``text``, more
  ``numeric`` digits at the same scale); ``SET NOT NULL`` and a ``CHECK`` constraint scan every
  row under ACCESS EXCLUSIVE; ``CREATE INDEX`` blocks writes while it builds, an ``ADD CONSTRAINT
  ... UNIQUE`` blocks reads too; a foreign key is checked row by row while writes to both tables
  wait; a column added with a constant default is not rewritten (PostgreSQL 11 and later).
* MySQL and MariaDB (InnoDB): a column type change copies the table (``ALGORITHM=COPY``: reads go
  on, writes wait), except a longer ``varchar`` that keeps its length prefix (both lengths under
  256 bytes, or both over); adding a ``FOREIGN KEY`` with ``foreign_key_checks`` on copies the
  table, and so does a ``CHECK`` constraint; ``NULL``/``NOT NULL`` and primary-key changes
  rebuild the table in place with reads and writes going on; index builds are online; adding and
  dropping a column is instant from MariaDB 10.3.2 / 10.4 and MySQL 8.0.12 / 8.0.29 (before that,
  a rebuild in place); a unique column is added with its index, which rebuilds the table.

Operations on a table created earlier in the same plan are not passed here (the caller knows):
an empty table is rewritten in no time. With an operation's collected SQL the notes are read
from its statements (:func:`statement_locks`, rules in :mod:`entrypoint.plan.sqljudge`), for
``RunSQL`` and third-party operations too; the rules below are for when no SQL could be had.

Pure: operations and migration state in, notes out; the server's vendor and version are passed
in (:func:`server_of` is the one function that reads them from a connection).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import NOT_PROVIDED

from entrypoint.plan.sqljudge import MY_COPY, MY_REBUILD, PG_REWRITE, PG_SCAN, PG_UNIQUE
from entrypoint.plan.state import (
    TEXT_FIELD,
    VARCHAR_FIELDS,
    model_label,
    model_state,
    short,
    state_field,
)

if TYPE_CHECKING:
    from django.db.migrations.state import ProjectState

    from entrypoint.plan.types import OperationSQL


class Effect(enum.Enum):
    """How an operation's lock affects the application while it is held."""

    #: The table is rewritten (PostgreSQL) or copied (MySQL/MariaDB) while writes wait.
    REWRITE = "rewrite"
    #: Every row is read under a lock that holds the application back (a scan, a check).
    SCAN = "scan"
    #: An index is built while writes (PostgreSQL ``CREATE INDEX``) or all queries wait.
    INDEX = "index"
    #: The table is rebuilt in place: reads and writes go on, but it takes as long as a copy.
    REBUILD = "rebuild"


@dataclass(frozen=True)
class LockNote:
    """One table-size-bound lock of one operation, for people (``text``) and tools."""

    effect: Effect
    text: str
    #: The operation it is about: its index in the migration's ``operations``, once classified.
    operation: int | None = None

    def to_dict(self) -> dict[str, str]:
        """The JSON form used by ``plan --format json``."""
        return {"effect": self.effect.value, "note": self.text}


@dataclass(frozen=True)
class Server:
    """The database server a plan is judged for."""

    vendor: str
    mariadb: bool = False
    version: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        """The server's name as people know it."""
        if self.vendor == "postgresql":
            return "PostgreSQL"
        return "MariaDB" if self.mariadb else "MySQL"

    def at_least(self, mysql: tuple[int, ...], mariadb: tuple[int, ...]) -> bool:
        """Whether this MySQL or MariaDB server is at least the version given for its kind."""
        return self.version >= (mariadb if self.mariadb else mysql)


def server_of(connection: Any) -> Server | None:
    """The server behind a Django connection, or None where no notes are known (SQLite, ...).

    Reads the MySQL/MariaDB version over the connection (Django caches it).
    """
    if connection.vendor == "postgresql":
        return Server("postgresql")
    if connection.vendor == "mysql":
        return Server(
            "mysql", mariadb=bool(connection.mysql_is_mariadb), version=connection.mysql_version
        )
    return None


def table_locks(
    operation: Any,
    app: str,
    state: ProjectState,
    server: Server,
    new_table: Callable[[str], bool] = lambda model: False,
    *,
    sql: OperationSQL | None = None,
    new_tables: Collection[str] = (),
) -> list[LockNote]:
    """The table-size-bound locks of one operation on ``server``.

    ``state`` is the migration state just before the operation; ``new_table(model)`` tells a
    model of ``app`` whose table the same plan created (empty, so nothing to note), and
    ``new_tables`` names such tables. With the operation's collected ``sql``, the notes are read
    from its statements, each naming the statement, for any operation (``RunSQL`` and
    third-party ones included); without it, or when collecting failed, from the operation alone.
    """
    if sql is not None and sql.failure is None and sql.vendor == server.vendor:
        return statement_locks(
            operation, app, state, server, sql=sql, new_table=new_table, new_tables=new_tables
        )
    cls = type(operation)
    if not cls.__module__.startswith("django."):
        return []  # a third-party operation may do anything
    rule = _RULES.get(f"{cls.__module__}.{cls.__qualname__}")
    if rule is None:
        return []
    model = getattr(operation, "model_name", None) or getattr(operation, "name", None)
    if rule is not _separate and isinstance(model, str) and new_table(model):
        return []
    return rule(_Context(operation, app, state, server, new_table))


def statement_locks(
    operation: Any,
    app: str,
    state: ProjectState,
    server: Server,
    *,
    sql: OperationSQL,
    new_table: Callable[[str], bool] = lambda model: False,
    new_tables: Collection[str] = (),
) -> list[LockNote]:
    """The table-size-bound locks of ``operation``'s collected statements on ``server``."""
    from entrypoint.plan.sqljudge import mysql_notes, postgres_notes
    from entrypoint.plan.statements import follow_renames, read

    model = getattr(operation, "model_name", None) or getattr(operation, "name", None)
    if _targets_model(operation) and isinstance(model, str) and new_table(model):
        return []
    prefix = _subject(operation, app, state)
    notes: list[LockNote] = []
    changes = read(sql.statements, sql.vendor)
    columns = follow_renames(changes, sql.columns)
    for change in changes:
        if change.table in new_tables:
            continue
        before = columns.get((change.table or "", change.column or ""))
        if server.vendor == "postgresql":
            found = postgres_notes(change, before)
        else:
            found = mysql_notes(
                change,
                before,
                name=server.name,
                mariadb=server.mariadb,
                instant_add=server.at_least(mysql=(8, 0, 12), mariadb=(10, 3, 2)),
                instant_drop=server.at_least(mysql=(8, 0, 29), mariadb=(10, 4)),
            )
        notes += [LockNote(Effect(effect), f"{prefix}: {text}") for effect, text in found]
    return notes


def _targets_model(operation: Any) -> bool:
    from django.db.migrations.operations.fields import FieldOperation
    from django.db.migrations.operations.models import ModelOperation

    return isinstance(operation, FieldOperation | ModelOperation)


def _subject(operation: Any, app: str, state: ProjectState) -> str:
    """``AlterField shop.Item.qty``, ``AddIndex shop.Item``, ``RunSQL``: who a note is about."""
    from django.db.migrations.operations.fields import FieldOperation
    from django.db.migrations.operations.models import ModelOperation

    kind = type(operation).__name__
    if isinstance(operation, FieldOperation):
        name = getattr(operation, "old_name", None) or operation.name
        return f"{kind} {model_label(state, app, operation.model_name)}.{name}"
    model = getattr(operation, "model_name", None)
    if isinstance(model, str):
        return f"{kind} {model_label(state, app, model)}"
    if isinstance(operation, ModelOperation):
        return f"{kind} {model_label(state, app, operation.name)}"
    return kind


@dataclass(frozen=True)
class _Context:
    op: Any
    app: str
    state: ProjectState
    server: Server
    new_table: Callable[[str], bool]

    @property
    def postgres(self) -> bool:
        return self.server.vendor == "postgresql"

    def label(self, model: str, field: str | None = None) -> str:
        text = model_label(self.state, self.app, model)
        return f"{text}.{field}" if field else text

    def old_field(self, model: str, name: str) -> Any:
        return state_field(self.state, self.app, model, name)

    def checked(self, model: str, name: str, field: Any) -> bool:
        """Whether a CHECK constraint covers the column: its own, or one of the model's."""
        if _column_check(field, self.server):
            return True
        from django.db.models import CheckConstraint

        found = model_state(self.state, self.app, model)
        constraints = found.options.get("constraints", []) if found else []
        for constraint in constraints:
            if isinstance(constraint, CheckConstraint):
                condition = getattr(constraint, "condition", None) or getattr(
                    constraint, "check", None
                )
                if name in getattr(condition, "referenced_base_fields", {name}):
                    return True
        return False

    def note(self, effect: Effect, subject: str, what: str) -> LockNote:
        return LockNote(effect, f"{type(self.op).__name__} {subject}: {what}")


# What each effect means for the application, per server (the rest in sqljudge.py).
_PG_INDEX = (
    "CREATE INDEX blocks writes to the table until the index is built; AddIndexConcurrently in a "
    "non-atomic migration does not"
)
_PG_FOREIGN_KEY = (
    "PostgreSQL checks every row against the referenced table while writes to both tables wait"
)

_DECIMAL = "django.db.models.DecimalField"
_POSITIVE = frozenset(
    f"django.db.models.{name}"
    for name in ("PositiveIntegerField", "PositiveSmallIntegerField", "PositiveBigIntegerField")
)
_JSON = "django.db.models.JSONField"
# The bytes per character of MySQL's utf8mb4, which decide where a varchar's length prefix grows.
_UTF8MB4 = 4
_SHORT_PREFIX_BYTES = 255


def _path(field: Any) -> str:
    return str(field.deconstruct()[1])


def _is_constant(default: Any) -> bool:
    from django.db.models.expressions import Value

    return not hasattr(default, "resolve_expression") or isinstance(default, Value)


def _has_foreign_key(field: Any) -> bool:
    return bool(
        field.remote_field is not None
        and not field.many_to_many
        and getattr(field, "db_constraint", False)
    )


def _stored_generated(field: Any) -> bool:
    return bool(getattr(field, "generated", False) and getattr(field, "db_persist", False))


def _column_check(field: Any, server: Server) -> bool:
    """Whether Django adds a CHECK constraint to the column on this server."""
    path = _path(field)
    return path in _POSITIVE or (path == _JSON and server.mariadb)


# --- AddField ----------------------------------------------------------------------------------


def _add_field(ctx: _Context) -> list[LockNote]:
    op, field = ctx.op, ctx.op.field
    if field.many_to_many:
        return []  # a new join table
    subject = ctx.label(op.model_name, op.name)
    stored = _stored_generated(field)
    expression_default = field.db_default is not NOT_PROVIDED and not _is_constant(field.db_default)
    indexed = not field.primary_key and (field.unique or field.db_index)
    if ctx.postgres:
        notes = []
        if stored:
            what = f"a stored generated column; {PG_REWRITE}"
            notes.append(ctx.note(Effect.REWRITE, subject, what))
        elif expression_default:
            what = f"a database default computed by an expression; if it is volatile, {PG_REWRITE}"
            notes.append(ctx.note(Effect.REWRITE, subject, what))
        if _column_check(field, ctx.server):
            notes.append(ctx.note(Effect.SCAN, subject, f"a CHECK on the new column; {PG_SCAN}"))
        if field.unique and not field.primary_key:
            notes.append(ctx.note(Effect.INDEX, subject, f"a unique column; {PG_UNIQUE}"))
        elif indexed:
            notes.append(ctx.note(Effect.INDEX, subject, f"an indexed column; {_PG_INDEX}"))
        return notes
    if _has_foreign_key(field):
        what = f"a FOREIGN KEY: with foreign_key_checks on, {ctx.server.name} {MY_COPY}"
        return [ctx.note(Effect.REWRITE, subject, what)]
    if stored or expression_default:
        kind = "a stored generated column" if stored else "a default computed by an expression"
        return [ctx.note(Effect.REWRITE, subject, f"{kind}: {ctx.server.name} {MY_COPY}")]
    if _column_check(field, ctx.server) and not ctx.server.mariadb:
        what = f"a column with a CHECK constraint: MySQL {MY_COPY}"
        return [ctx.note(Effect.REWRITE, subject, what)]
    if field.unique and not field.primary_key:
        # Django adds it with UNIQUE in the same ALTER TABLE, which cannot be instant.
        what = f"a unique column, added with its index: {ctx.server.name} {MY_REBUILD}"
        return [ctx.note(Effect.REBUILD, subject, what)]
    if not ctx.server.at_least(mysql=(8, 0, 12), mariadb=(10, 3, 2)):
        what = (
            f"no instant ADD COLUMN before MySQL 8.0.12 / MariaDB 10.3.2: {ctx.server.name} "
            f"{MY_REBUILD}"
        )
        return [ctx.note(Effect.REBUILD, subject, what)]
    return []


def _remove_field(ctx: _Context) -> list[LockNote]:
    op = ctx.op
    old = ctx.old_field(op.model_name, op.name)
    if ctx.postgres or (old is not None and old.many_to_many):
        return []  # PostgreSQL only marks the column dropped; a join table is dropped
    if ctx.server.at_least(mysql=(8, 0, 29), mariadb=(10, 4)):
        return []
    what = (
        f"no instant DROP COLUMN before MySQL 8.0.29 / MariaDB 10.4: {ctx.server.name} {MY_REBUILD}"
    )
    return [ctx.note(Effect.REBUILD, ctx.label(op.model_name, op.name), what)]


# --- AlterField --------------------------------------------------------------------------------


def _type_change(old: Any, new: Any, server: Server) -> str | None:
    """Why the column's stored type changes in a way the server cannot do in place, or None."""
    old_path, new_path = _path(old), _path(new)
    before, after = getattr(old, "max_length", None), getattr(new, "max_length", None)
    both_varchar = old_path in VARCHAR_FIELDS and new_path in VARCHAR_FIELDS
    if both_varchar:
        if before == after:
            return None
        if before is not None and (after is None or after < before):
            return f"shortens varchar({before}) to varchar({after})"
        if server.vendor == "postgresql":
            return None
        # MySQL and MariaDB extend a varchar in place only while its length prefix stays the
        # same size: one byte up to 255 bytes, two above.
        one_byte_prefix = [
            n is not None and n * _UTF8MB4 <= _SHORT_PREFIX_BYTES for n in (before, after)
        ]
        if one_byte_prefix[0] == one_byte_prefix[1]:
            return None
        return (
            f"lengthens varchar({before}) to varchar({after}), past 255 bytes in utf8mb4 "
            "(its length prefix grows)"
        )
    if old_path == new_path:
        if old_path == _DECIMAL:
            return _decimal_change(old, new, server)
        return None
    if old_path in VARCHAR_FIELDS and new_path == TEXT_FIELD and server.vendor == "postgresql":
        return None  # text and varchar share one representation
    return f"changes the column type from {short(old_path)} to {short(new_path)}"


def _decimal_change(old: Any, new: Any, server: Server) -> str | None:
    before = (old.max_digits, old.decimal_places)
    after = (new.max_digits, new.decimal_places)
    if before == after:
        return None
    if (
        server.vendor == "postgresql"
        and before[1] == after[1]
        and None not in (before[0], after[0])
        and after[0] >= before[0]
    ):
        return None  # more digits at the same scale: binary compatible
    return f"changes numeric({before[0]},{before[1]}) to numeric({after[0]},{after[1]})"


def _alter_field(ctx: _Context) -> list[LockNote]:
    op = ctx.op
    old, new = ctx.old_field(op.model_name, op.name), op.field
    if old is None or old.many_to_many or new.many_to_many:
        return []
    subject = ctx.label(op.model_name, op.name)
    notes: list[LockNote] = []
    changed = _type_change(old, new, ctx.server)
    key_change = old.primary_key != new.primary_key
    collation = getattr(old, "db_collation", None) != getattr(new, "db_collation", None)
    adds_key = _has_foreign_key(new) and (
        not _has_foreign_key(old) or _relation(old) != _relation(new)
    )
    # Django drops a foreign key before it alters the column in any way and adds it again after.
    readds_key = (
        not adds_key and _has_foreign_key(old) and _has_foreign_key(new) and _altered(old, new)
    )
    adds_not_null = old.null and not new.null
    null_change = old.null != new.null
    adds_unique = new.unique and not old.unique and not new.primary_key
    adds_index = new.db_index and not old.db_index and not new.unique
    if ctx.postgres:
        if changed:
            also = " and the tables whose foreign keys point at it" if old.primary_key else ""
            notes.append(ctx.note(Effect.REWRITE, subject, f"{changed}{also}; {PG_REWRITE}"))
        elif _retyped(old, new) and ctx.checked(op.model_name, op.name, old):
            # No rewrite, but the constraints on the column are added again, so validated again.
            what = (
                f"changes the column type, so its CHECK constraints are validated again; {PG_SCAN}"
            )
            notes.append(ctx.note(Effect.SCAN, subject, what))
        elif collation and (old.db_index or old.unique or old.primary_key):
            what = (
                "changes the collation; PostgreSQL rebuilds the column's indexes under an ACCESS "
                "EXCLUSIVE lock"
            )
            notes.append(ctx.note(Effect.INDEX, subject, what))
        if adds_not_null:
            notes.append(ctx.note(Effect.SCAN, subject, f"SET NOT NULL; {PG_SCAN}"))
        if key_change and new.primary_key:
            notes.append(ctx.note(Effect.INDEX, subject, f"a new primary key; {PG_UNIQUE}"))
        elif adds_unique:
            notes.append(ctx.note(Effect.INDEX, subject, f"adds a unique constraint; {PG_UNIQUE}"))
        elif adds_index:
            notes.append(ctx.note(Effect.INDEX, subject, f"adds an index; {_PG_INDEX}"))
        if adds_key or readds_key:
            verb = "adds" if adds_key else "drops and adds again"
            what = f"{verb} its foreign key; {_PG_FOREIGN_KEY}"
            notes.append(ctx.note(Effect.SCAN, subject, what))
        return notes
    name = ctx.server.name
    if changed:
        notes.append(ctx.note(Effect.REWRITE, subject, f"{changed}: {name} {MY_COPY}"))
    elif key_change:
        what = f"changes the primary key: {name} {MY_REBUILD}"
        notes.append(ctx.note(Effect.REBUILD, subject, what))
    elif null_change:
        which = "NOT NULL" if adds_not_null else "NULL"
        what = f"makes the column {which}: {name} {MY_REBUILD}"
        notes.append(ctx.note(Effect.REBUILD, subject, what))
    if adds_key or readds_key:
        verb = "adds" if adds_key else "drops and adds again"
        what = f"{verb} its FOREIGN KEY: with foreign_key_checks on, {name} {MY_COPY}"
        notes.append(ctx.note(Effect.REWRITE, subject, what))
    return notes


def _retyped(old: Any, new: Any) -> bool:
    """Whether the column's declared type changes at all (binary-compatible changes included)."""

    def declared(field: Any) -> tuple[Any, ...]:
        return (
            _path(field),
            getattr(field, "max_length", None),
            getattr(field, "max_digits", None),
            getattr(field, "decimal_places", None),
        )

    return declared(old) != declared(new)


def _altered(old: Any, new: Any) -> bool:
    """Whether Django's schema editor alters the column at all (its own test, in short): the
    field's definition differs beyond the attributes that never reach the database."""

    def definition(field: Any) -> tuple[Any, ...]:
        _, path, args, kwargs = field.deconstruct()
        ignored = {*field.non_db_attrs, "db_comment", "to"}
        kept = {key: value for key, value in kwargs.items() if key not in ignored}
        return path, tuple(args), sorted(kept.items(), key=lambda item: item[0]), field.db_column

    return definition(old) != definition(new) or _relation(old) != _relation(new)


def _relation(field: Any) -> tuple[str, str]:
    kwargs = field.deconstruct()[3]
    return str(kwargs.get("to", "")).lower(), str(kwargs.get("to_field", "")).lower()


# --- indexes and constraints -------------------------------------------------------------------


def _add_index(ctx: _Context) -> list[LockNote]:
    if not ctx.postgres:
        return []  # InnoDB builds secondary indexes online
    subject = f"{ctx.label(ctx.op.model_name)} {ctx.op.index.name}"
    return [ctx.note(Effect.INDEX, subject, _PG_INDEX)]


def _add_constraint(ctx: _Context) -> list[LockNote]:
    from django.db.models import CheckConstraint, UniqueConstraint

    constraint = ctx.op.constraint
    subject = f"{ctx.label(ctx.op.model_name)} {constraint.name}"
    if isinstance(constraint, CheckConstraint):
        if ctx.postgres:
            what = (
                f"a CHECK constraint; {PG_SCAN}; AddConstraintNotValid, then "
                "ValidateConstraint in a later migration, does not"
            )
            return [ctx.note(Effect.SCAN, subject, what)]
        what = f"a CHECK constraint: {ctx.server.name} {MY_COPY}"
        return [ctx.note(Effect.REWRITE, subject, what)]
    if not ctx.postgres:
        return []
    if isinstance(constraint, UniqueConstraint):
        as_index = (
            any(
                getattr(constraint, name, None)
                for name in ("condition", "include", "opclasses", "expressions")
            )
            or getattr(constraint, "nulls_distinct", None) is not None
        )
        if as_index:  # Django creates these with CREATE UNIQUE INDEX
            return [ctx.note(Effect.INDEX, subject, _PG_INDEX)]
        return [ctx.note(Effect.INDEX, subject, PG_UNIQUE)]
    # An exclusion constraint builds its index under ACCESS EXCLUSIVE, like a unique one.
    return [ctx.note(Effect.INDEX, subject, PG_UNIQUE.replace("unique index", "index"))]


def _alter_together(ctx: _Context) -> list[LockNote]:
    if not ctx.postgres:
        return []
    from django.db.models.options import normalize_together

    op = ctx.op
    found = model_state(ctx.state, ctx.app, op.name)
    key = "unique_together" if op.option_name == "unique_together" else "index_together"
    old = set(normalize_together(found.options.get(key, ()) if found else ()))
    added = [group for group in normalize_together(op.option_value) if tuple(group) not in old]
    if not added:
        return []
    columns = "; ".join(", ".join(group) for group in added)
    subject = f"{ctx.label(op.name)} ({columns})"
    return [ctx.note(Effect.INDEX, subject, PG_UNIQUE if key == "unique_together" else _PG_INDEX)]


def _separate(ctx: _Context) -> list[LockNote]:
    notes: list[LockNote] = []
    state = ctx.state.clone()
    for inner in ctx.op.database_operations:
        notes += table_locks(inner, ctx.app, state, ctx.server, ctx.new_table)
        inner.state_forwards(ctx.app, state)
    return notes


_OPS = "django.db.migrations.operations."
_RULES = {
    _OPS + "fields.AddField": _add_field,
    _OPS + "fields.RemoveField": _remove_field,
    _OPS + "fields.AlterField": _alter_field,
    _OPS + "models.AddIndex": _add_index,
    _OPS + "models.AddConstraint": _add_constraint,
    _OPS + "models.AlterUniqueTogether": _alter_together,
    _OPS + "models.AlterIndexTogether": _alter_together,
    _OPS + "special.SeparateDatabaseAndState": _separate,
}
