"""Whether a migration can be unapplied: every operation reversible (``RunPython`` and ``RunSQL``
with reverse code).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from entrypoint.plan.state import SPECIAL, callable_name, class_path

if TYPE_CHECKING:
    from django.db.migrations.migration import Migration

from typing import Any


def migration_reversible(migration: Migration) -> tuple[bool, list[str]]:
    """Whether the migration can be unapplied, with one reason per operation that cannot."""
    reasons: list[str] = []
    for operation in migration.operations:
        reasons += _irreversible(operation)
    return not reasons, reasons


def _irreversible(operation: Any) -> list[str]:
    kind = class_path(type(operation))
    if kind == SPECIAL + "RunPython":
        if operation.reverse_code is None:
            return [f"RunPython {callable_name(operation.code)} has no reverse_code"]
        return []
    if kind == SPECIAL + "RunSQL":
        return [] if operation.reverse_sql is not None else ["RunSQL has no reverse_sql"]
    if kind == SPECIAL + "SeparateDatabaseAndState":
        found: list[str] = []
        for inner in operation.database_operations:
            found += _irreversible(inner)
        return found
    if not getattr(operation, "reversible", True):
        return [f"{type(operation).__name__} is not reversible"]
    return []
