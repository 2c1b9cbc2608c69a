"""What a failed migration leaves behind on a database that cannot roll back DDL (MySQL/MariaDB).

There, Django runs a migration without a transaction around it: each ``CREATE``/``ALTER``
commits on its own, so a migration that fails after its first change is left partly applied
while ``django_migrations`` does not record it. A failing statement itself is undone by the
server (an ``ALTER TABLE`` that fails leaves the table as it was), so a migration that failed
before any statement of its own had completed left nothing behind and is safe to run again.

:class:`WriteCounter` counts the statements of the current migration that completed and could
have changed something; :func:`failing_operation` finds, from the error's traceback, which
operation of the migration raised.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Statements that change nothing a later run could trip over.
_READ_ONLY = re.compile(
    r"^\s*(SELECT|SHOW|DESCRIBE|DESC|EXPLAIN|SAVEPOINT|RELEASE|ROLLBACK|SET)\b", re.IGNORECASE
)


class WriteCounter:
    """A Django ``execute_wrapper`` counting completed statements that may have changed data."""

    def __init__(self) -> None:
        self.count = 0

    def reset(self) -> None:
        """Start counting for the next migration."""
        self.count = 0

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        """Run the statement; count it once it completed, unless it only reads."""
        result = execute(sql, params, many, context)
        if not _READ_ONLY.match(str(sql)):
            self.count += 1
        return result


@dataclass(frozen=True)
class FailedOperation:
    """Which operation of a migration raised: 1-based position, count and description."""

    position: int
    total: int
    description: str


def failing_operation(exc: BaseException) -> FailedOperation | None:
    """The operation that raised ``exc``, read from the frames of Django's ``Migration.apply``.

    None when the error came from elsewhere (deferred SQL at the end of the migration, the
    recorder) or Django changed shape.
    """
    found = None
    trace = exc.__traceback__
    while trace is not None:
        frame = trace.tb_frame
        path = Path(frame.f_code.co_filename)
        if frame.f_code.co_name == "apply" and path.parts[-2:] == ("migrations", "migration.py"):
            migration = frame.f_locals.get("self")
            operation = frame.f_locals.get("operation")
            operations = list(getattr(migration, "operations", []))
            for index, candidate in enumerate(operations):
                if candidate is operation:
                    found = FailedOperation(index + 1, len(operations), _describe(operation))
        trace = trace.tb_next
    return found


def left_behind(operation: FailedOperation | None) -> str:
    """What may be left of a migration that failed after changing something, for people."""
    prefix = "this database cannot roll back DDL, so"
    if operation is None:
        return f"{prefix} the migration may be partly applied"
    failed = f"operation {operation.position} of {operation.total} ({operation.description})"
    if operation.position == 1:
        return f"{prefix} {failed} may be partly applied"
    done = (
        "operation 1 stays applied"
        if operation.position == 2
        else f"operations 1 to {operation.position - 1} stay applied"
    )
    return f"{prefix} {done} and {failed} may be partly applied"


def _describe(operation: Any) -> str:
    try:
        return str(operation.describe())
    except Exception:  # a third-party operation without a working describe()
        return type(operation).__name__


# MySQL/MariaDB's "Lock wait timeout exceeded" (a metadata or a row lock).
_MYSQL_LOCK_WAIT_TIMEOUT = 1205


def is_lock_timeout(exc: BaseException) -> bool:
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


# MySQL/MariaDB's "command denied", "access denied to database" and "you need the privilege".
_MYSQL_PRIVILEGE_ERRORS = frozenset({1142, 1143, 1044, 1227})
_PG_SCHEMA = re.compile(r"permission denied for schema (\S+)")
_PG_OWNER = re.compile(r"must be owner of (\w+(?: \w+)?) (\S+)")
_PG_OBJECT = re.compile(r"permission denied for (\w+) (\S+)")
_MYSQL_COMMAND = re.compile(r"(\w+) command denied to user")


def missing_privilege(exc: BaseException) -> str | None:
    """The privilege the database refused a statement for, in words (``CREATE on schema
    public``, ``ownership of table shop_product``), when ``exc`` or its cause is PostgreSQL's
    insufficient_privilege (42501) or MySQL's command or access denied; else None."""
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen).splitlines()[0] if str(seen) else ""
        if getattr(seen, "sqlstate", None) == "42501":
            for pattern, words in (
                (_PG_SCHEMA, "CREATE on schema {0}"),
                (_PG_OWNER, "ownership of {0} {1}"),
                (_PG_OBJECT, "a privilege on {0} {1}"),
            ):
                found = pattern.search(text)
                if found:
                    return words.format(*found.groups())
            return "a privilege the statement needs"
        if (
            type(seen).__module__.startswith("MySQLdb")
            and seen.args[:1]
            and (seen.args[0] in _MYSQL_PRIVILEGE_ERRORS)
        ):
            found = _MYSQL_COMMAND.search(str(seen.args[1]) if len(seen.args) > 1 else "")
            return f"the {found.group(1)} privilege" if found else "a privilege the statement needs"
        seen = seen.__cause__
    return None


def privilege_fix(privilege: str, role: str | None) -> str:
    """What to do when a migration hit a privilege its role lacks: the Job's role migrates."""
    who = f"the role {role!r}" if role else "this role"
    where = f"as {role!r}" if role else "with this role"
    return (
        f"{who} lacks {privilege}, which only the schema owner should have: run migrate with "
        f"the owner's role (the migration Job), and set ENTRYPOINT_MIGRATE=wait on the "
        f"containers that run {where}"
    )
