"""The SQL an operation will run, read with the server's own grammar into :class:`Change` facts.

PostgreSQL statements are parsed by libpg_query (through pglast), the parser of the server
itself; MySQL and MariaDB statements by sqlglot's MySQL dialect, a maintained pure-Python parser
that covers every statement Django's MySQL schema editor writes. Nothing here matches SQL text
with patterns: what a statement does is read from its syntax tree.

One statement can make several changes (``ALTER TABLE t ADD COLUMN a ..., ADD CONSTRAINT ...``);
each :class:`Change` carries the statement it came from, shortened for people. Pure: SQL text in,
facts out.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

#: How much of a statement a note or reason quotes.
SHOWN_CHARACTERS = 110


class Action(enum.Enum):
    """What one change does, in the server's own terms."""

    CREATE_TABLE = "create table"
    DROP_TABLE = "drop table"
    RENAME_TABLE = "rename table"
    ADD_COLUMN = "add column"
    DROP_COLUMN = "drop column"
    RENAME_COLUMN = "rename column"
    #: PostgreSQL ``ALTER COLUMN ... TYPE``.
    ALTER_TYPE = "alter type"
    #: MySQL ``MODIFY``/``CHANGE``: the column's whole definition (type and nullability) again.
    REDEFINE_COLUMN = "redefine column"
    SET_NOT_NULL = "set not null"
    DROP_NOT_NULL = "drop not null"
    SET_DEFAULT = "set default"
    DROP_DEFAULT = "drop default"
    ADD_CONSTRAINT = "add constraint"
    DROP_CONSTRAINT = "drop constraint"
    VALIDATE_CONSTRAINT = "validate constraint"
    CREATE_INDEX = "create index"
    DROP_INDEX = "drop index"
    CREATE_TRIGGER = "create trigger"
    DROP_TRIGGER = "drop trigger"
    #: INSERT, UPDATE, DELETE, TRUNCATE, COPY, MERGE: rows change.
    DATA = "data"
    #: CREATE of something old code does not use yet: extension, function, view, sequence, type.
    CREATE_OBJECT = "create object"
    #: DROP of such an object, which old code may still use.
    DROP_OBJECT = "drop object"
    #: A read (SELECT, SHOW), a session setting (SET, SET CONSTRAINTS), a comment, a grant.
    HARMLESS = "harmless"
    #: A statement of a kind not judged here (a DO block, a procedure call, ...).
    OTHER = "other"
    #: The parser rejected the statement.
    UNPARSED = "unparsed"


class Default(enum.Enum):
    """What a column default is made of, for whether PostgreSQL must rewrite to add it."""

    CONSTANT = "constant"
    #: A function PostgreSQL evaluates once per statement (now(), CURRENT_TIMESTAMP, ...).
    STABLE = "stable"
    #: A function evaluated per row (random(), gen_random_uuid(), clock_timestamp(), ...).
    VOLATILE = "volatile"
    #: A function this module does not know.
    UNKNOWN = "unknown"


class Constraint(enum.Enum):
    """The kind of a table constraint."""

    CHECK = "CHECK"
    FOREIGN_KEY = "FOREIGN KEY"
    UNIQUE = "UNIQUE"
    PRIMARY_KEY = "PRIMARY KEY"
    EXCLUSION = "EXCLUDE"


@dataclass(frozen=True)
class Type:
    """A column type as the parser reads it: its name (lower case, schema dropped) and
    modifiers (``varchar(20)`` is ``("varchar", (20,))``)."""

    name: str
    modifiers: tuple[int, ...] = ()

    def __str__(self) -> str:
        if not self.modifiers:
            return self.name
        return f"{self.name}({','.join(str(m) for m in self.modifiers)})"


@dataclass(frozen=True)
class Change:
    """One thing one statement does."""

    action: Action
    #: The statement, whitespace collapsed and shortened to :data:`SHOWN_CHARACTERS`.
    statement: str
    table: str | None = None
    column: str | None = None
    #: The constraint, index, trigger or object name, where the statement gives one; the new
    #: name of a renamed column (RENAME_COLUMN).
    name: str | None = None
    #: The new type (ALTER_TYPE, ADD_COLUMN, REDEFINE_COLUMN).
    type: Type | None = None
    #: NOT NULL given (ADD_COLUMN, REDEFINE_COLUMN).
    not_null: bool = False
    #: The default given (ADD_COLUMN, SET_DEFAULT), if any.
    default: Default | None = None
    #: The constraint added (ADD_CONSTRAINT), or those declared with a new column (ADD_COLUMN).
    constraints: tuple[Constraint, ...] = ()
    #: The constraint is checked against existing rows (False for NOT VALID or USING INDEX).
    validated: bool = True
    #: CREATE/DROP INDEX CONCURRENTLY.
    concurrently: bool = False
    unique: bool = False
    #: A stored generated column (ADD_COLUMN).
    stored_generated: bool = False
    #: A collation given with a new type.
    collation: str | None = None
    #: What fires a trigger ("INSERT OR UPDATE") and the function it runs.
    events: str | None = None
    function: str | None = None
    #: The statement's keyword, for OTHER and DATA ("UPDATE", "DO"), or the parser's complaint.
    detail: str | None = None


def shown(sql: str) -> str:
    """A statement for people: whitespace collapsed, cut at :data:`SHOWN_CHARACTERS`."""
    text = " ".join(sql.split()).rstrip(";").strip()
    if len(text) > SHOWN_CHARACTERS:
        return text[: SHOWN_CHARACTERS - 1].rstrip() + "…"
    return text


def read(statements: Sequence[str], vendor: str) -> list[Change]:
    """What ``statements`` (each one or several SQL statements) do on a ``vendor`` server
    (``postgresql`` or ``mysql``)."""
    changes: list[Change] = []
    for sql in statements:
        if vendor == "postgresql":
            changes += _postgres(sql)
        else:
            changes += _mysql(sql)
    return changes


def follow_renames(
    changes: Sequence[Change], columns: Mapping[tuple[str, str], T]
) -> dict[tuple[str, str], T]:
    """``columns`` (what each ``(table, column)`` was before the statements), with a column that
    a RENAME COLUMN among ``changes`` names anew found under its new name too: Django renames a
    column before it changes its type (a ForeignKey's ``page_id`` becomes ``page``, then
    varchar), and what the column was is what the type change is judged against."""
    known = dict(columns)
    for change in changes:
        if change.action is Action.RENAME_COLUMN and change.table and change.name:
            before = known.get((change.table, change.column or ""))
            if before is not None:
                known[(change.table, change.name)] = before
    return known


def is_read_only(sql: str, vendor: str) -> bool:
    """Whether ``sql`` only reads: SELECT without INTO or row locks, SHOW (for the guard that
    keeps collecting SQL from executing anything else)."""
    if vendor == "postgresql":
        from pglast import ast, parse_sql
        from pglast.parser import ParseError

        try:
            parsed = parse_sql(sql)
        except ParseError:
            return False
        for raw in parsed:
            stmt = raw.stmt
            if isinstance(stmt, ast.VariableShowStmt):
                continue
            if not isinstance(stmt, ast.SelectStmt) or stmt.intoClause or stmt.lockingClause:
                return False
        return bool(parsed)
    from sqlglot import exp

    try:
        trees = _mysql_trees(sql)
    except _MySQLError:
        return False
    for tree in trees:
        if isinstance(tree, exp.Show) or (
            isinstance(tree, exp.Command) and str(tree.this).upper() == "SHOW"
        ):
            continue
        if not isinstance(tree, exp.Select) or tree.args.get("into") or tree.args.get("locks"):
            return False
    return bool(trees)


def postgres_type(text: str) -> Type | None:
    """A PostgreSQL column type written as Django's ``db_type`` returns it, read by the parser."""
    from pglast import ast, parse_sql
    from pglast.parser import ParseError

    try:
        (raw,) = parse_sql(f"SELECT NULL::{text}")
    except (ParseError, ValueError):
        return None
    stmt: Any = raw.stmt
    target = stmt.targetList[0].val
    return _pg_type(target.typeName) if isinstance(target, ast.TypeCast) else None


def mysql_type(text: str) -> Type | None:
    """A MySQL column type written as Django's ``db_type`` returns it, read by the parser."""
    try:
        trees = _mysql_trees(f"CREATE TABLE t (c {text})")
    except _MySQLError:
        return None
    from sqlglot import exp

    column = trees[0].find(exp.ColumnDef) if trees else None
    kind = column.args.get("kind") if column is not None else None
    return _my_type(kind) if kind is not None else None


# --- PostgreSQL --------------------------------------------------------------------------------


_PG_STABLE = frozenset(
    {
        "now",
        "statement_timestamp",
        "transaction_timestamp",
        "current_setting",
        "to_char",
        "lower",
        "upper",
        "coalesce",
        "make_interval",
        "jsonb_build_object",
        "json_build_object",
        "jsonb_build_array",
        "array",
    }
)
_PG_VOLATILE = frozenset(
    {
        "random",
        "clock_timestamp",
        "timeofday",
        "gen_random_uuid",
        "uuid_generate_v1",
        "uuid_generate_v4",
        "uuidv4",
        "uuidv7",
        "nextval",
        "setseed",
    }
)


def _pg_name(nodes: Any) -> str:
    names = [str(getattr(node, "sval", node)) for node in nodes or ()]
    if len(names) > 1 and names[0] == "pg_catalog":
        names = names[1:]
    return ".".join(names)


def _pg_type(type_name: Any) -> Type:
    mods: list[int] = []
    for mod in type_name.typmods or ():
        value = getattr(getattr(mod, "val", None), "ival", None)
        if isinstance(value, int):
            mods.append(value)
    name = _pg_name(type_name.names).lower()
    if type_name.arrayBounds:
        name += "[]"
    return Type(name, tuple(mods))


def _pg_relation(relation: Any) -> str | None:
    return str(relation.relname) if relation is not None else None


def _pg_default(expr: Any) -> Default:
    """Whether a default expression is a constant, or which kind of function it calls."""
    from pglast import ast
    from pglast.visitors import Visitor

    found: list[Default] = []

    class _Calls(Visitor):
        def visit_FuncCall(self, ancestors: Any, node: Any) -> None:
            name = _pg_name(node.funcname).lower().rsplit(".", 1)[-1]
            if name in _PG_VOLATILE:
                found.append(Default.VOLATILE)
            elif name in _PG_STABLE:
                found.append(Default.STABLE)
            else:
                found.append(Default.UNKNOWN)

        def visit_SQLValueFunction(self, ancestors: Any, node: Any) -> None:
            found.append(Default.STABLE)  # CURRENT_TIMESTAMP, CURRENT_DATE, CURRENT_USER, ...

    _Calls()(ast.SelectStmt(targetList=(ast.ResTarget(val=expr),)))
    for kind in (Default.VOLATILE, Default.UNKNOWN, Default.STABLE):
        if kind in found:
            return kind
    return Default.CONSTANT


_PG_CONSTRAINTS = {
    "CONSTR_CHECK": Constraint.CHECK,
    "CONSTR_FOREIGN": Constraint.FOREIGN_KEY,
    "CONSTR_UNIQUE": Constraint.UNIQUE,
    "CONSTR_PRIMARY": Constraint.PRIMARY_KEY,
    "CONSTR_EXCLUSION": Constraint.EXCLUSION,
}


def _postgres(sql: str) -> list[Change]:
    from pglast import parse_sql
    from pglast.parser import ParseError

    try:
        parsed = parse_sql(sql)
    except ParseError as exc:
        return [Change(Action.UNPARSED, shown(sql), detail=str(exc))]
    changes: list[Change] = []
    for raw in parsed:
        start = raw.stmt_location or 0
        text = sql[start : start + raw.stmt_len] if raw.stmt_len else sql[start:]
        changes += list(_pg_statement(raw.stmt, shown(text)))
    return changes


def _pg_statement(stmt: Any, text: str) -> Iterator[Change]:
    from pglast import ast, enums

    objects = enums.ObjectType
    if isinstance(stmt, ast.AlterTableStmt):
        if stmt.objtype not in (objects.OBJECT_TABLE, None):
            yield Change(Action.OTHER, text, detail="ALTER " + objects(stmt.objtype).name[7:])
            return
        table = _pg_relation(stmt.relation)
        for cmd in stmt.cmds or ():
            yield _pg_alter(cmd, table, text)
    elif isinstance(stmt, ast.IndexStmt):
        yield Change(
            Action.CREATE_INDEX,
            text,
            table=_pg_relation(stmt.relation),
            name=stmt.idxname,
            concurrently=bool(stmt.concurrent),
            unique=bool(stmt.unique),
        )
    elif isinstance(stmt, ast.CreateStmt):
        yield Change(Action.CREATE_TABLE, text, table=_pg_relation(stmt.relation))
    elif isinstance(stmt, ast.CreateTableAsStmt):
        yield Change(Action.CREATE_TABLE, text, table=_pg_relation(getattr(stmt.into, "rel", None)))
    elif isinstance(stmt, ast.DropStmt):
        yield from _pg_drop(stmt, text)
    elif isinstance(stmt, ast.RenameStmt):
        kind = stmt.renameType
        table = _pg_relation(stmt.relation)
        if kind == objects.OBJECT_COLUMN:
            yield Change(
                Action.RENAME_COLUMN, text, table=table, column=stmt.subname, name=stmt.newname
            )
        elif kind == objects.OBJECT_TABLE:
            yield Change(Action.RENAME_TABLE, text, table=table, name=stmt.newname)
        elif kind in (objects.OBJECT_INDEX, objects.OBJECT_TABCONSTRAINT, objects.OBJECT_TRIGGER):
            yield Change(Action.HARMLESS, text, table=table)
        else:
            yield Change(Action.RENAME_TABLE, text, table=table, name=stmt.newname)
    elif isinstance(stmt, ast.CreateTrigStmt):
        yield Change(
            Action.CREATE_TRIGGER,
            text,
            table=_pg_relation(stmt.relation),
            name=stmt.trigname,
            events=_pg_events(stmt.events or 0),
            function=_pg_name(stmt.funcname),
        )
    elif isinstance(
        stmt, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt | ast.CopyStmt
    ):
        keyword = type(stmt).__name__.removesuffix("Stmt").upper()
        yield Change(Action.DATA, text, table=_pg_relation(stmt.relation), detail=keyword)
    elif isinstance(stmt, ast.TruncateStmt):
        for relation in stmt.relations or ():
            yield Change(Action.DATA, text, table=_pg_relation(relation), detail="TRUNCATE")
    elif isinstance(
        stmt,
        ast.CreateExtensionStmt
        | ast.CreateFunctionStmt
        | ast.ViewStmt
        | ast.CreateSeqStmt
        | ast.CompositeTypeStmt
        | ast.CreateEnumStmt
        | ast.CreateDomainStmt
        | ast.CreateSchemaStmt
        | ast.DefineStmt
        | ast.CreateStatsStmt,
    ):
        yield Change(Action.CREATE_OBJECT, text)
    elif isinstance(
        stmt,
        ast.SelectStmt
        | ast.VariableSetStmt
        | ast.VariableShowStmt
        | ast.ConstraintsSetStmt
        | ast.CommentStmt
        | ast.GrantStmt
        | ast.VacuumStmt
        | ast.AlterSeqStmt
        | ast.AlterEnumStmt
        | ast.AlterExtensionStmt,
    ):
        if isinstance(stmt, ast.SelectStmt) and stmt.intoClause:
            yield Change(Action.CREATE_TABLE, text, table=_pg_relation(stmt.intoClause.rel))
        else:
            yield Change(Action.HARMLESS, text)
    else:
        yield Change(Action.OTHER, text, detail=_keyword(text))


def _pg_events(events: int) -> str:
    from pglast import enums

    names = [
        word
        for word, bit in (
            ("INSERT", enums.TRIGGER_TYPE_INSERT),
            ("UPDATE", enums.TRIGGER_TYPE_UPDATE),
            ("DELETE", enums.TRIGGER_TYPE_DELETE),
            ("TRUNCATE", enums.TRIGGER_TYPE_TRUNCATE),
        )
        if events & bit
    ]
    return " OR ".join(names)


def _pg_drop(stmt: Any, text: str) -> Iterator[Change]:
    from pglast import enums

    objects = enums.ObjectType
    kind = stmt.removeType
    for obj in stmt.objects or ():
        names = [str(getattr(n, "sval", n)) for n in (obj if isinstance(obj, tuple) else (obj,))]
        name = names[-1] if names else None
        if kind == objects.OBJECT_TABLE:
            yield Change(Action.DROP_TABLE, text, table=name)
        elif kind == objects.OBJECT_INDEX:
            yield Change(Action.DROP_INDEX, text, name=name, concurrently=bool(stmt.concurrent))
        elif kind == objects.OBJECT_TRIGGER:
            table = names[-2] if len(names) > 1 else None
            yield Change(Action.DROP_TRIGGER, text, table=table, name=name)
        else:
            yield Change(Action.DROP_OBJECT, text, name=name, detail=objects(kind).name[7:])


def _pg_alter(cmd: Any, table: str | None, text: str) -> Change:
    from pglast import ast, enums

    at = enums.AlterTableType
    kind = cmd.subtype
    column = cmd.name
    if kind == at.AT_AddColumn:
        return _pg_add_column(cmd.def_, table, text)
    if kind == at.AT_DropColumn:
        return Change(Action.DROP_COLUMN, text, table=table, column=column)
    if kind == at.AT_AlterColumnType:
        definition = cmd.def_
        collation = None
        if definition.collClause is not None:
            collation = _pg_name(definition.collClause.collname)
        new_type = _pg_type(definition.typeName)
        return Change(
            Action.ALTER_TYPE, text, table=table, column=column, type=new_type, collation=collation
        )
    if kind == at.AT_SetNotNull:
        return Change(Action.SET_NOT_NULL, text, table=table, column=column)
    if kind == at.AT_DropNotNull:
        return Change(Action.DROP_NOT_NULL, text, table=table, column=column)
    if kind == at.AT_ColumnDefault:
        if cmd.def_ is None:
            return Change(Action.DROP_DEFAULT, text, table=table, column=column)
        default = _pg_default(cmd.def_)
        return Change(Action.SET_DEFAULT, text, table=table, column=column, default=default)
    if kind == at.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
        constraint = cmd.def_
        found = _PG_CONSTRAINTS.get(enums.ConstrType(constraint.contype or 0).name)
        validated = not constraint.skip_validation and not constraint.indexname
        return Change(
            Action.ADD_CONSTRAINT,
            text,
            table=table,
            name=constraint.conname,
            constraints=(found,) if found else (),
            validated=validated,
        )
    if kind == at.AT_DropConstraint:
        return Change(Action.DROP_CONSTRAINT, text, table=table, name=column)
    if kind == at.AT_ValidateConstraint:
        return Change(Action.VALIDATE_CONSTRAINT, text, table=table, name=column)
    if kind in (at.AT_SetTableSpace, at.AT_SetLogged, at.AT_SetUnLogged, at.AT_SetAccessMethod):
        return Change(Action.OTHER, text, table=table, detail=at(kind).name[3:])
    if kind in (
        at.AT_EnableTrig,
        at.AT_EnableAlwaysTrig,
        at.AT_EnableReplicaTrig,
        at.AT_DisableTrig,
        at.AT_EnableTrigAll,
        at.AT_DisableTrigAll,
        at.AT_EnableTrigUser,
        at.AT_DisableTrigUser,
    ):
        return Change(Action.OTHER, text, table=table, detail=at(kind).name[3:])
    return Change(Action.HARMLESS, text, table=table, column=column)


def _pg_add_column(definition: Any, table: str | None, text: str) -> Change:
    from pglast import enums

    kinds = enums.ConstrType
    not_null = False
    default: Default | None = None
    constraints: list[Constraint] = []
    stored = False
    for constraint in definition.constraints or ():
        name = kinds(constraint.contype).name
        if name in ("CONSTR_NOTNULL", "CONSTR_PRIMARY"):
            not_null = True
        if name == "CONSTR_DEFAULT":
            default = _pg_default(constraint.raw_expr)
        elif name == "CONSTR_GENERATED":
            stored = True  # PostgreSQL before 18 only has STORED generated columns
            generated = getattr(constraint, "generated_kind", None)
            if isinstance(generated, str) and generated.lower() == "v":
                stored = False
        elif name == "CONSTR_IDENTITY":
            default = Default.VOLATILE  # filled from a sequence, row by row
        elif name in _PG_CONSTRAINTS:
            constraints.append(_PG_CONSTRAINTS[name])
    return Change(
        Action.ADD_COLUMN,
        text,
        table=table,
        column=definition.colname,
        type=_pg_type(definition.typeName),
        not_null=not_null,
        default=default,
        constraints=tuple(constraints),
        stored_generated=stored,
    )


def _keyword(text: str) -> str:
    words = text.split()
    return " ".join(words[:2]).upper() if words else ""


# --- MySQL and MariaDB -------------------------------------------------------------------------


class _MySQLError(Exception):
    pass


# sqlglot warns on its logger when it keeps a statement it has no grammar for as a plain
# command; those statements are judged here (as OTHER), so the warning is noise on stderr.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


def _mysql_trees(sql: str) -> list[Any]:
    import sqlglot
    from sqlglot.errors import ParseError, TokenError

    try:
        return [tree for tree in sqlglot.parse(sql, read="mysql") if tree is not None]
    except (ParseError, TokenError) as exc:
        raise _MySQLError(str(exc).splitlines()[0]) from None


def _my_name(node: Any) -> str | None:
    if node is None:
        return None
    name = getattr(node, "name", None)
    return str(name) if name else None


def _my_type(kind: Any) -> Type:
    from sqlglot import exp

    name = kind.sql(dialect="mysql").split("(")[0].strip().lower()
    mods: list[int] = []
    for param in kind.expressions or ():
        value = param.this if isinstance(param, exp.DataTypeParam) else param
        text = getattr(value, "this", value)
        if isinstance(text, str) and text.isdigit():
            mods.append(int(text))
    return Type(name, tuple(mods))


def _mysql(sql: str) -> list[Change]:
    try:
        trees = _mysql_trees(sql)
    except _MySQLError as exc:
        return [Change(Action.UNPARSED, shown(sql), detail=str(exc))]
    changes: list[Change] = []
    single = len(trees) == 1
    for tree in trees:
        text = shown(sql) if single else shown(tree.sql(dialect="mysql"))
        changes += list(_my_statement(tree, text))
    return changes


def _my_statement(tree: Any, text: str) -> Iterator[Change]:
    from sqlglot import exp

    if isinstance(tree, exp.Alter) and str(tree.args.get("kind", "")).upper() == "TABLE":
        table = _my_name(tree.this)
        for action in tree.args.get("actions") or ():
            yield _my_alter(action, table, text)
    elif isinstance(tree, exp.Create):
        kind = str(tree.args.get("kind", "")).upper()
        target = tree.this
        if kind == "INDEX":
            index = target if isinstance(target, exp.Index) else None
            table = _my_name(index.args.get("table")) if index is not None else None
            yield Change(
                Action.CREATE_INDEX,
                text,
                table=table,
                name=_my_name(index.this) if index is not None else None,
                unique=bool(tree.args.get("unique")),
            )
        elif kind == "TABLE":
            table_node = target.this if isinstance(target, exp.Schema) else target
            yield Change(Action.CREATE_TABLE, text, table=_my_name(table_node))
        else:
            yield Change(Action.CREATE_OBJECT, text, detail=kind)
    elif isinstance(tree, exp.Drop):
        kind = str(tree.args.get("kind", "")).upper()
        name = _my_name(tree.this)
        if kind == "TABLE":
            yield Change(Action.DROP_TABLE, text, table=name)
        elif kind == "INDEX":
            yield Change(Action.DROP_INDEX, text, name=name)
        else:
            yield Change(Action.DROP_OBJECT, text, name=name, detail=kind)
    elif isinstance(tree, exp.Insert | exp.Update | exp.Delete | exp.Merge | exp.TruncateTable):
        target = tree.this
        if isinstance(target, exp.Schema):
            target = target.this
        keyword = type(tree).__name__.upper().replace("TRUNCATETABLE", "TRUNCATE")
        yield Change(Action.DATA, text, table=_my_name(target), detail=keyword)
    elif isinstance(tree, exp.Select | exp.Set | exp.Show | exp.Use | exp.Grant):
        yield Change(Action.HARMLESS, text)
    elif isinstance(tree, exp.Command):
        yield from _my_command(tree, text)
    else:
        yield Change(Action.OTHER, text, detail=_keyword(text))


def _my_command(tree: Any, text: str) -> Iterator[Change]:
    """Statements sqlglot keeps as a command; their words come from sqlglot's own tokenizer."""
    from sqlglot.dialects.dialect import Dialect
    from sqlglot.tokens import TokenType  # type: ignore[attr-defined]

    head = str(tree.this).upper()
    rest = tree.expression
    tokens = Dialect.get_or_raise("mysql").tokenize(str(getattr(rest, "this", rest) or ""))
    words = [token.text for token in tokens]
    upper = [word.upper() for word in words]
    if head == "CREATE" and upper[:1] == ["TRIGGER"]:
        table = None
        events = [word for word in upper[2:5] if word in ("INSERT", "UPDATE", "DELETE")]
        if "ON" in upper:
            at = upper.index("ON") + 1
            table = words[at] if at < len(words) else None
        name = words[1] if len(words) > 1 else None
        body = next(
            (i for i, token in enumerate(tokens) if token.token_type == TokenType.FOR), None
        )
        yield Change(
            Action.CREATE_TRIGGER,
            text,
            table=table,
            name=name,
            events=" OR ".join(events),
            function="its body" if body is not None else None,
        )
    elif head == "DROP" and upper[:1] == ["TRIGGER"]:
        yield Change(Action.DROP_TRIGGER, text, name=words[-1] if words else None)
    elif head == "RENAME" and upper[:1] == ["TABLE"]:
        yield Change(Action.RENAME_TABLE, text, table=words[1] if len(words) > 1 else None)
    elif head in ("SHOW", "SET", "ANALYZE", "OPTIMIZE", "COMMENT"):
        yield Change(Action.HARMLESS, text)
    elif head == "CREATE":
        yield Change(Action.CREATE_OBJECT, text, detail=" ".join(upper[:1]))
    else:
        yield Change(Action.OTHER, text, detail=head)


def _my_column(definition: Any, table: str | None, text: str, action: Action) -> Change:
    from sqlglot import exp

    not_null = False
    default: Default | None = None
    constraints: list[Constraint] = []
    stored = False
    collation = None
    for constraint in definition.args.get("constraints") or ():
        kind = constraint.args.get("kind")
        if isinstance(kind, exp.NotNullColumnConstraint):
            not_null = not kind.args.get("allow_null")
        elif isinstance(kind, exp.DefaultColumnConstraint):
            default = Default.CONSTANT if isinstance(kind.this, exp.Literal) else Default.UNKNOWN
            if isinstance(kind.this, exp.Null):
                default = Default.CONSTANT
        elif isinstance(kind, exp.PrimaryKeyColumnConstraint):
            constraints.append(Constraint.PRIMARY_KEY)
            not_null = True
        elif isinstance(kind, exp.UniqueColumnConstraint):
            constraints.append(Constraint.UNIQUE)
        elif isinstance(kind, exp.CheckColumnConstraint):
            constraints.append(Constraint.CHECK)
        elif isinstance(kind, exp.Reference):
            constraints.append(Constraint.FOREIGN_KEY)
        elif isinstance(kind, exp.ComputedColumnConstraint):
            stored = bool(kind.args.get("persisted"))
        elif isinstance(kind, exp.CollateColumnConstraint):
            collation = _my_name(kind.this) or str(kind.this)
    return Change(
        action,
        text,
        table=table,
        column=_my_name(definition.this),
        type=_my_type(definition.args["kind"]) if definition.args.get("kind") else None,
        not_null=not_null,
        default=default,
        constraints=tuple(constraints),
        stored_generated=stored,
        collation=collation,
    )


def _my_alter(action: Any, table: str | None, text: str) -> Change:
    from sqlglot import exp

    if isinstance(action, exp.ColumnDef):
        return _my_column(action, table, text, Action.ADD_COLUMN)
    if isinstance(action, exp.ModifyColumn):
        return _my_column(action.this, table, text, Action.REDEFINE_COLUMN)
    if isinstance(action, exp.RenameColumn):
        return Change(
            Action.RENAME_COLUMN,
            text,
            table=table,
            column=_my_name(action.this),
            name=_my_name(action.args.get("to")),
        )
    if isinstance(action, exp.AlterRename):
        return Change(Action.RENAME_TABLE, text, table=table, name=_my_name(action.this))
    if isinstance(action, exp.AlterColumn):
        column = _my_name(action.this)
        if action.args.get("drop"):
            return Change(Action.DROP_DEFAULT, text, table=table, column=column)
        if action.args.get("default") is not None:
            value = action.args["default"]
            default = Default.CONSTANT if isinstance(value, exp.Literal) else Default.UNKNOWN
            return Change(Action.SET_DEFAULT, text, table=table, column=column, default=default)
        return Change(Action.OTHER, text, table=table, column=column, detail="ALTER COLUMN")
    if isinstance(action, exp.AddConstraint):
        return _my_add_constraint(action, table, text)
    if isinstance(action, exp.Drop):
        kind = str(action.args.get("kind", "")).upper()
        name = _my_name(action.this) or next(
            (_my_name(t) for t in action.args.get("tables") or ()), None
        )
        if kind == "COLUMN" or not kind:
            return Change(Action.DROP_COLUMN, text, table=table, column=name)
        if kind == "INDEX":
            return Change(Action.DROP_INDEX, text, table=table, name=name)
        return Change(Action.DROP_CONSTRAINT, text, table=table, name=name)
    if isinstance(action, exp.AlterSet | exp.Property):
        return Change(Action.HARMLESS, text, table=table)
    return Change(Action.OTHER, text, table=table, detail=type(action).__name__)


def _my_add_constraint(action: Any, table: str | None, text: str) -> Change:
    from sqlglot import exp

    found: list[Constraint] = []
    name = None
    for item in action.expressions or ():
        parts: Sequence[Any] = (item,)
        if isinstance(item, exp.Constraint):
            name = _my_name(item.this)
            parts = item.expressions or ()
        for part in parts:
            if isinstance(part, exp.ForeignKey):
                found.append(Constraint.FOREIGN_KEY)
            elif isinstance(part, exp.UniqueColumnConstraint):
                found.append(Constraint.UNIQUE)
            elif isinstance(part, exp.PrimaryKey | exp.PrimaryKeyColumnConstraint):
                found.append(Constraint.PRIMARY_KEY)
            elif isinstance(part, exp.CheckColumnConstraint | exp.Check):
                found.append(Constraint.CHECK)
            elif isinstance(part, exp.IndexColumnConstraint):
                kind = str(part.args.get("kind") or "").upper()
                unique = kind == "UNIQUE"
                return Change(
                    Action.CREATE_INDEX, text, table=table, name=_my_name(part.this), unique=unique
                )
    return Change(Action.ADD_CONSTRAINT, text, table=table, name=name, constraints=tuple(found))
