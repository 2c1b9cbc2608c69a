"""Judgments read from an operation's statements: what each change means to old code still
running (the deploy phase) and what it locks for as long as the table is large (the lock notes).

The statements come from :mod:`entrypoint.plan.statements`; what a column was before the
operation comes with them (:class:`~entrypoint.plan.types.ColumnBefore`), because a statement
such as ``ALTER COLUMN ... TYPE bigint`` names only the new type. Pure: facts in, judgments out.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from entrypoint.plan.statements import (
    Action,
    Change,
    Constraint,
    Default,
    Type,
    follow_renames,
    mysql_type,
    postgres_type,
)
from entrypoint.plan.types import ColumnBefore, DeployPhase


@dataclass(frozen=True)
class Item:
    """What one change means to old code."""

    phase: DeployPhase
    text: str
    caution: bool = False
    needs_mark: bool = False


def _pre(text: str, *, caution: bool = False) -> Item:
    return Item(DeployPhase.PRE_DEPLOY, text, caution=caution)


def _post(text: str) -> Item:
    return Item(DeployPhase.POST_DEPLOY, text)


def _mark(text: str) -> Item:
    return Item(DeployPhase.POST_DEPLOY, text, needs_mark=True)


def _where(change: Change) -> str:
    table = change.table or "?"
    return f"{table}.{change.column}" if change.column else table


def _quoted(change: Change) -> str:
    return f"`{change.statement}`"


def column_type(before: ColumnBefore, vendor: str) -> Type | None:
    """The type a column had, read by the server's parser."""
    return postgres_type(before.type) if vendor == "postgresql" else mysql_type(before.type)


# --- types -------------------------------------------------------------------------------------

_PG_INTEGERS = {"int2": 1, "int4": 2, "int8": 3}
_MY_INTEGERS = {"tinyint": 0, "smallint": 1, "mediumint": 2, "int": 3, "integer": 3, "bigint": 4}
_PG_TEXT = {"varchar", "text"}
_MY_TEXT = {"varchar": 0, "tinytext": 1, "text": 2, "mediumtext": 3, "longtext": 4}
# MySQL extends a varchar in place only while its length prefix stays one byte (up to 255 bytes)
# or two; utf8mb4 takes up to four bytes a character.
_UTF8MB4 = 4
_SHORT_PREFIX_BYTES = 255


def _numeric_widens(old: Type, new: Type) -> bool:
    if not new.modifiers:
        return True
    if len(old.modifiers) < 1 or len(new.modifiers) < 1:
        return False
    old_scale = old.modifiers[1] if len(old.modifiers) > 1 else 0
    new_scale = new.modifiers[1] if len(new.modifiers) > 1 else 0
    integral = new.modifiers[0] - new_scale >= old.modifiers[0] - old_scale
    return new_scale >= old_scale and integral


def widens(old: Type, new: Type, vendor: str) -> bool:
    """Whether every value of ``old`` fits ``new`` unchanged (old code's values still fit)."""
    if old == new:
        return True
    if vendor == "postgresql":
        if old.name in _PG_INTEGERS and new.name in _PG_INTEGERS:
            return _PG_INTEGERS[new.name] >= _PG_INTEGERS[old.name]
        if old.name in _PG_TEXT and new.name in _PG_TEXT:
            return not new.modifiers or (
                bool(old.modifiers) and new.modifiers[0] >= old.modifiers[0]
            )
    else:
        old_base, new_base = old.name.split()[0], new.name.split()[0]
        unsigned = "unsigned" in old.name
        if old_base in _MY_INTEGERS and new_base in _MY_INTEGERS:
            same_sign = unsigned == ("unsigned" in new.name)
            return same_sign and _MY_INTEGERS[new_base] >= _MY_INTEGERS[old_base]
        if old_base in _MY_TEXT and new_base in _MY_TEXT:
            if old_base == new_base == "varchar":
                return (
                    bool(old.modifiers and new.modifiers) and new.modifiers[0] >= old.modifiers[0]
                )
            return _MY_TEXT[new_base] >= _MY_TEXT[old_base]
    if old.name in ("numeric", "decimal") and new.name == old.name:
        return _numeric_widens(old, new)
    return False


def binary_coercible(old: Type, new: Type) -> bool:
    """Whether PostgreSQL changes ``old`` to ``new`` without rewriting the table."""
    if old == new:
        return True
    if old.name in _PG_TEXT and new.name in _PG_TEXT:
        # varchar(n) to a longer varchar, to varchar or to text; text to varchar without limit.
        if new.name == "text" or not new.modifiers:
            return True
        return old.name == "varchar" and bool(old.modifiers) and new.modifiers >= old.modifiers
    if old.name == new.name == "numeric":
        # More digits at the same scale keep the representation.
        if not new.modifiers:
            return True
        same_scale = old.modifiers[1:] == new.modifiers[1:]
        return bool(old.modifiers) and same_scale and new.modifiers[0] >= old.modifiers[0]
    return (old.name, new.name) in {("cidr", "inet"), ("bit", "varbit"), ("xml", "text")}


def in_place_on_mysql(old: Type, new: Type) -> bool:
    """Whether InnoDB changes ``old`` to ``new`` without copying the table."""
    if old == new:
        return True
    if old.name == new.name == "varchar" and old.modifiers and new.modifiers:
        if new.modifiers[0] < old.modifiers[0]:
            return False
        short = [n * _UTF8MB4 <= _SHORT_PREFIX_BYTES for n in (old.modifiers[0], new.modifiers[0])]
        return short[0] == short[1]
    return False


# --- the deploy phase --------------------------------------------------------------------------


def phase_items(
    changes: Iterable[Change],
    columns: Mapping[tuple[str, str], ColumnBefore],
    *,
    vendor: str,
    atomic: bool,
    new_tables: Collection[str] = (),
) -> list[Item]:
    """What each change means to old code; tables in ``new_tables`` were created earlier in the
    plan (no old code, no old rows)."""
    items: list[Item] = []
    added_not_null: set[tuple[str | None, str | None]] = set()
    new = set(new_tables)
    changes = list(changes)
    columns = follow_renames(changes, columns)
    for change in changes:
        if change.action is Action.ADD_COLUMN and change.not_null:
            added_not_null.add((change.table, change.column))
        item = _phase_item(change, columns, vendor, atomic, added_not_null)
        if change.action is Action.CREATE_TABLE and change.table:
            new.add(change.table)
        if item is None:
            continue
        if change.table in new and (item.phase is DeployPhase.POST_DEPLOY or item.caution):
            item = _pre(f"{change.action.value} on {change.table}, a table created in this plan")
        items.append(item)
    return items


def _phase_item(
    change: Change,
    columns: Mapping[tuple[str, str], ColumnBefore],
    vendor: str,
    atomic: bool,
    added_not_null: set[tuple[str | None, str | None]],
) -> Item | None:
    act, where, quoted = change.action, _where(change), _quoted(change)
    before = columns.get((change.table or "", change.column or ""))
    if act is Action.CREATE_TABLE:
        return _pre(f"{quoted} creates table {where}, unknown to old code")
    if act is Action.DROP_TABLE:
        return _post(f"{quoted} drops table {where}, which old code still queries")
    if act is Action.RENAME_TABLE:
        return _post(f"{quoted} renames table {where}, which old code queries by its old name")
    if act is Action.ADD_COLUMN:
        if change.not_null and change.default is None and not change.stored_generated:
            return _post(
                f"{quoted} adds NOT NULL column {where} without a default, so inserts from old "
                "code, which omit it, fail"
            )
        return _pre(f"{quoted} adds column {where}, which old code does not write")
    if act is Action.DROP_COLUMN:
        return _post(f"{quoted} drops column {where}, which old code still reads and writes")
    if act is Action.RENAME_COLUMN:
        return _post(f"{quoted} renames column {where}, which old code uses by its old name")
    if act in (Action.ALTER_TYPE, Action.REDEFINE_COLUMN):
        return _type_item(change, before, vendor)
    if act is Action.SET_NOT_NULL:
        return _post(f"{quoted} makes {where} NOT NULL; old code may still write NULL")
    if act is Action.DROP_NOT_NULL:
        return _pre(f"{quoted} makes {where} nullable")
    if act is Action.SET_DEFAULT:
        return _pre(f"{quoted} sets a default on {where}")
    if act is Action.DROP_DEFAULT:
        key = (change.table, change.column)
        if key in added_not_null:
            return _post(
                f"{quoted} drops the default of the new NOT NULL column {where}, so inserts from "
                "old code, which omit it, fail"
            )
        if before is not None and not before.null:
            return _post(
                f"{quoted} drops the default of NOT NULL column {where}, which inserts from old "
                "code may rely on"
            )
        return _pre(f"{quoted} drops the default of {where}")
    if act is Action.ADD_CONSTRAINT:
        kind = " ".join(c.value for c in change.constraints) or "a"
        checked = "existing rows violate it" if change.validated else "new rows violate it"
        return _pre(
            f"{quoted} adds {kind} constraint {change.name or ''} on {where}, which fails if "
            f"{checked} and rejects writes from old code that do".replace("  ", " "),
            caution=True,
        )
    if act is Action.DROP_CONSTRAINT:
        return _pre(f"{quoted} drops a constraint on {where}; old code does not need it to write")
    if act is Action.VALIDATE_CONSTRAINT:
        return _pre(
            f"{quoted} validates {change.name} on {where}; fails if rows violate it", caution=True
        )
    if act in (Action.CREATE_INDEX, Action.DROP_INDEX):
        return _index_item(change, vendor, atomic)
    if act is Action.CREATE_TRIGGER:
        events = change.events or "write"
        runs = f"{change.function}()" if change.function else "it"
        if change.function == "its body":
            runs = "its body"
        return _pre(
            f"{quoted} adds trigger {change.name} on {where}: from now on every {events} of "
            f"old code on it also runs {runs}",
            caution=True,
        )
    if act is Action.DROP_TRIGGER:
        return _pre(
            f"{quoted} drops trigger {change.name}: old code's writes no longer run it",
            caution=True,
        )
    if act is Action.DATA:
        return _mark(
            f"{quoted} changes rows of {where} ({change.detail}); what that means to old code "
            "cannot be judged from its SQL"
        )
    if act is Action.CREATE_OBJECT:
        return _pre(f"{quoted} creates something old code does not use yet")
    if act is Action.DROP_OBJECT:
        what = (change.detail or "object").lower()
        return _post(f"{quoted} drops {what} {change.name}, which old code may still use")
    if act is Action.HARMLESS:
        return None
    if act is Action.UNPARSED:
        return _mark(f"{quoted} is rejected by the server's parser ({change.detail})")
    return _mark(f"{quoted}: a {change.detail or 'statement'} statement, not judged here")


def _type_item(change: Change, before: ColumnBefore | None, vendor: str) -> Item | None:
    quoted, where = _quoted(change), _where(change)
    old = column_type(before, vendor) if before is not None else None
    new = change.type
    if old is None or new is None:
        return _post(f"{quoted} changes the type of {where}, which old code reads and writes")
    items: list[str] = []
    if old != new:
        if widens(old, new, vendor):
            items.append(f"widens {old} to {new}")
        else:
            return _post(
                f"{quoted} changes {where} from {old} to {new}, which old code reads and writes"
            )
    if change.action is Action.REDEFINE_COLUMN and before is not None:
        if change.not_null and before.null:
            return _post(f"{quoted} makes {where} NOT NULL; old code may still write NULL")
        if not change.not_null and not before.null:
            items.append("makes it nullable")
    if change.collation:
        items.append(f"sets collation {change.collation}")
        return _pre(f"{quoted} {', '.join(items)} on {where}", caution=True)
    if not items:
        return None  # the same definition again (MySQL writes the whole column to change a part)
    return _pre(f"{quoted} {', '.join(items)} on {where}")


def _index_item(change: Change, vendor: str, atomic: bool) -> Item:
    quoted = _quoted(change)
    if change.concurrently and atomic and vendor == "postgresql":
        return _pre(
            f"{quoted} cannot run inside a transaction block, so this atomic migration fails; "
            "set atomic = False on it",
            caution=True,
        )
    if change.action is Action.DROP_INDEX:
        return _pre(f"{quoted} drops an index; old code works without it (queries may be slower)")
    if change.unique:
        return _pre(
            f"{quoted} adds a unique index on {_where(change)}, which fails on existing "
            "duplicates and rejects duplicate writes from old code",
            caution=True,
        )
    return _pre(f"{quoted} adds an index on {_where(change)}; old code is unaffected")


# --- lock notes ---------------------------------------------------------------------------------

#: (effect value, text) of one note; locknotes.py turns them into LockNote objects.
Note = tuple[str, str]

# What each effect means for the application (the operation-level notes of locknotes.py share
# these words).
PG_REWRITE = (
    "PostgreSQL rewrites the table and its indexes under an ACCESS EXCLUSIVE lock; reads and "
    "writes wait until it is done"
)
PG_SCAN = (
    "PostgreSQL reads every row under an ACCESS EXCLUSIVE lock; reads and writes wait until it is "
    "done"
)
_PG_INDEX = (
    "CREATE INDEX blocks writes to the table until the index is built; CREATE INDEX "
    "CONCURRENTLY in a non-atomic migration does not"
)
PG_UNIQUE = (
    "PostgreSQL builds the unique index under an ACCESS EXCLUSIVE lock; reads and writes wait "
    "until it is built"
)
_PG_FOREIGN_KEY = (
    "PostgreSQL checks every row against the referenced table while writes to both tables wait; "
    "NOT VALID, then VALIDATE CONSTRAINT in a later migration, does not"
)
_PG_CHECK = f"{PG_SCAN}; NOT VALID, then VALIDATE CONSTRAINT in a later migration, does not"
_PG_VALIDATE = (
    "PostgreSQL reads every row under a SHARE UPDATE EXCLUSIVE lock; reads and writes go on"
)
MY_COPY = "copies the table (ALGORITHM=COPY); writes wait until it is done"
MY_REBUILD = "rebuilds the table in place; reads and writes go on, but it takes as long as a copy"


def postgres_notes(change: Change, before: ColumnBefore | None) -> list[Note]:
    """The table-size-bound locks of one change on PostgreSQL."""
    act, quoted = change.action, _quoted(change)
    notes: list[Note] = []
    if act is Action.ALTER_TYPE:
        old = postgres_type(before.type) if before is not None else None
        new = change.type
        if old is None or new is None:
            notes.append(
                ("rewrite", f"{quoted}: unless the type is binary-coercible, {PG_REWRITE}")
            )
        elif not binary_coercible(old, new):
            notes.append(
                ("rewrite", f"{quoted}: {old} to {new} is not binary-coercible; {PG_REWRITE}")
            )
        elif change.collation and before is not None and before.indexed:
            what = (
                "a new collation; PostgreSQL rebuilds the column's indexes under an ACCESS "
                "EXCLUSIVE lock"
            )
            notes.append(("index", f"{quoted}: {what}"))
        elif before is not None and before.checked and old != new:
            what = (
                f"{old} to {new} is binary-coercible, but its CHECK constraints are validated "
                f"again; {PG_SCAN}"
            )
            notes.append(("scan", f"{quoted}: {what}"))
    elif act is Action.SET_NOT_NULL:
        notes.append(("scan", f"{quoted}: {PG_SCAN}"))
    elif act is Action.ADD_COLUMN:
        if change.stored_generated:
            notes.append(("rewrite", f"{quoted}: a stored generated column; {PG_REWRITE}"))
        elif change.default is Default.VOLATILE:
            notes.append(("rewrite", f"{quoted}: a volatile default; {PG_REWRITE}"))
        elif change.default is Default.UNKNOWN:
            what = f"a default computed by a function; if it is volatile, {PG_REWRITE}"
            notes.append(("rewrite", f"{quoted}: {what}"))
        for constraint in change.constraints:
            notes += _pg_constraint_note(quoted, constraint, validated=True, inline=True)
    elif act is Action.ADD_CONSTRAINT:
        for constraint in change.constraints:
            notes += _pg_constraint_note(quoted, constraint, validated=change.validated)
    elif act is Action.VALIDATE_CONSTRAINT:
        notes.append(("scan", f"{quoted}: {_PG_VALIDATE}"))
    elif act is Action.CREATE_INDEX and not change.concurrently:
        notes.append(("index", f"{quoted}: {_PG_INDEX}"))
    elif act is Action.OTHER and change.detail in ("SetTableSpace", "SetLogged", "SetUnLogged"):
        notes.append(("rewrite", f"{quoted}: {PG_REWRITE}"))
    return notes


def _pg_constraint_note(
    quoted: str, constraint: Constraint, *, validated: bool, inline: bool = False
) -> list[Note]:
    # A constraint declared with a new column cannot be NOT VALID, so the hint is left out.
    if constraint is Constraint.CHECK and validated:
        return [("scan", f"{quoted}: {PG_SCAN if inline else _PG_CHECK}")]
    if constraint is Constraint.FOREIGN_KEY and validated:
        text = _PG_FOREIGN_KEY.split(";", maxsplit=1)[0] if inline else _PG_FOREIGN_KEY
        return [("scan", f"{quoted}: {text}")]
    if constraint in (Constraint.UNIQUE, Constraint.PRIMARY_KEY) and validated:
        return [("index", f"{quoted}: {PG_UNIQUE}")]
    if constraint is Constraint.EXCLUSION:
        return [("index", f"{quoted}: {PG_UNIQUE.replace('unique index', 'index')}")]
    return []


def mysql_notes(
    change: Change,
    before: ColumnBefore | None,
    *,
    name: str,
    mariadb: bool,
    instant_add: bool,
    instant_drop: bool,
) -> list[Note]:
    """The table-size-bound locks of one change on MySQL or MariaDB (InnoDB)."""
    act, quoted = change.action, _quoted(change)
    if act is Action.REDEFINE_COLUMN:
        old = mysql_type(before.type) if before is not None else None
        if old is None or change.type is None:
            return [("rewrite", f"{quoted}: if the type changes, {name} {MY_COPY}")]
        if not in_place_on_mysql(old, change.type):
            return [("rewrite", f"{quoted}: {old} to {change.type}: {name} {MY_COPY}")]
        if before is not None and before.null == change.not_null:
            which = "NOT NULL" if change.not_null else "NULL"
            return [("rebuild", f"{quoted}: makes the column {which}: {name} {MY_REBUILD}")]
        return []
    if act is Action.ADD_COLUMN:
        if Constraint.FOREIGN_KEY in change.constraints:
            return [
                (
                    "rewrite",
                    f"{quoted}: a FOREIGN KEY: with foreign_key_checks on, {name} {MY_COPY}",
                )
            ]
        if change.stored_generated or change.default is Default.UNKNOWN:
            return [("rewrite", f"{quoted}: {name} {MY_COPY}")]
        if Constraint.CHECK in change.constraints and not mariadb:
            return [("rewrite", f"{quoted}: a column with a CHECK constraint: {name} {MY_COPY}")]
        if {Constraint.UNIQUE, Constraint.PRIMARY_KEY} & set(change.constraints):
            return [
                (
                    "rebuild",
                    f"{quoted}: a unique column, added with its index: {name} {MY_REBUILD}",
                )
            ]
        if not instant_add:
            return [
                (
                    "rebuild",
                    f"{quoted}: no instant ADD COLUMN before MySQL 8.0.12 / MariaDB 10.3.2: "
                    f"{name} {MY_REBUILD}",
                )
            ]
        return []
    if act is Action.DROP_COLUMN and not instant_drop:
        return [
            (
                "rebuild",
                f"{quoted}: no instant DROP COLUMN before MySQL 8.0.29 / MariaDB 10.4: "
                f"{name} {MY_REBUILD}",
            )
        ]
    if act is Action.ADD_CONSTRAINT:
        if Constraint.FOREIGN_KEY in change.constraints:
            return [("rewrite", f"{quoted}: with foreign_key_checks on, {name} {MY_COPY}")]
        if Constraint.CHECK in change.constraints:
            return [("rewrite", f"{quoted}: a CHECK constraint: {name} {MY_COPY}")]
        if Constraint.PRIMARY_KEY in change.constraints:
            return [("rebuild", f"{quoted}: a new primary key: {name} {MY_REBUILD}")]
    return []
