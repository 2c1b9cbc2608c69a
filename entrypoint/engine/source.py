"""Where a migration and its operations are written: the file and the line of each operation,
for annotations on a pull request (``check --format github``)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any


def migration_file(migration: Any) -> Path | None:
    """The file a migration was loaded from, when it is a file on disk."""
    module = sys.modules.get(type(migration).__module__)
    path = getattr(module, "__file__", None)
    return Path(path).resolve() if path else None


def operation_lines(migration: Any) -> list[int]:
    """The line of each of the migration's operations in its file, in order.

    Read from the file's syntax tree: the elements of the ``operations`` list of the migration
    class. Where that cannot be told (operations built at import time, a file that is gone) each
    operation gets the line of the class, or 1.
    """
    count = len(getattr(migration, "operations", []))
    path = migration_file(migration)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8")) if path else None
    except (OSError, SyntaxError, ValueError):
        tree = None
    if tree is None:
        return [1] * count
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    chosen = next((c for c in classes if c.name == type(migration).__name__), None)
    if chosen is None:
        return [1] * count
    for statement in chosen.body:
        targets = []
        if isinstance(statement, ast.Assign):
            targets = [t.id for t in statement.targets if isinstance(t, ast.Name)]
            value: ast.expr | None = statement.value
        elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            targets, value = [statement.target.id], statement.value
        else:
            continue
        if "operations" in targets and isinstance(value, ast.List | ast.Tuple):
            lines = [element.lineno for element in value.elts]
            if len(lines) == count:
                return lines
    return [chosen.lineno] * count
