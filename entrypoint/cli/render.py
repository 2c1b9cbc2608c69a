"""Everything the CLI prints for people and for programs: plans, check problems, the audit
trail, rollback outcomes. Standard output carries only this; log events go to standard error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from entrypoint.audit.rows import Kind, RunRow, Status
from entrypoint.engine.check import Problem
from entrypoint.plan.types import dotted


def out(text: str = "") -> None:
    """One line (or block) on standard output, flushed."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def plan_rows(rows: Sequence[dict[str, Any]], fmt: str, policy: str) -> None:
    """The ``plan`` output: JSON, or one line per migration with its reasons and lock notes."""
    if fmt == "json":
        out(json.dumps(list(rows), indent=2))
        return
    if not rows:
        out("nothing to migrate")
    lines = []
    for row in rows:
        flags = ", ".join(
            word
            for word, on in (
                ("atomic" if row["atomic"] else "non-atomic", True),
                ("irreversible", not row["reversible"]),
                (f"held by ENTRYPOINT_PHASE={policy}", row["held"]),
            )
            if on
        )
        lines.append(
            f"{row['database']}  {row['phase']:<11}  {row['app']}.{row['name']}  ({flags})"
        )
        lines += [f"    - {reason}" for reason in row["reasons"]]
        lines += [f"    ! {lock['note']}" for lock in row["locks"]]
    if lines:
        out("\n".join(lines))


def problems(found: Sequence[Problem], fmt: str, databases: Sequence[str]) -> None:
    """The ``check`` output: JSON, or one line per problem (``ok: ...`` when none)."""
    if fmt == "json":
        out(json.dumps([problem.to_dict() for problem in found], indent=2))
        return
    for problem in found:
        out(f"{problem.database}: {problem.kind}: {problem.message}")
    if not found:
        out(f"ok: no problem found on {', '.join(databases)}")


def history(rows: Sequence[RunRow], fmt: str, pruned: Mapping[str, int] | None = None) -> None:
    """The ``history`` output: JSON, or the table of :func:`format_runs` followed by one line
    per database whose older runs were pruned."""
    if fmt == "json":
        out(json.dumps([row.to_dict() for row in rows], indent=2))
        return
    lines = format_runs(rows)
    for alias, count in (pruned or {}).items():
        if count:
            lines.append(pruned_line(alias, count))
    out("\n".join(lines))


def pruned_line(alias: str, count: int) -> str:
    """What ``history`` says of the runs no longer in the table of one database."""
    runs = "run is" if count == 1 else "runs are"
    return (
        f"({count} earlier {runs} no longer recorded on database {alias!r}: pruned under "
        "ENTRYPOINT_HISTORY_KEEP, which only lets go of succeeded runs that changed nothing)"
    )


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
        cells = (row.id, row.kind, row.status, row.database, row.release or "-", started, took)
        table.append((*cells, _summary(row)))
        details.append(_details(row))
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    lines = []
    for index, line in enumerate(table):
        padded = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        lines.append("  ".join([*padded, line[-1]]).rstrip())
        if index:
            lines += details[index - 1]
    return lines


def _summary(row: RunRow) -> str:
    if row.kind is Kind.ROLLBACK:
        of = f"rollback of run {row.rollback_of}: " if row.rollback_of else ""
        return f"{of}unapplied {len(row.applied)} of {len(row.planned)}"
    if not row.planned and row.status is Status.SUCCEEDED:
        return "nothing pending"
    return f"applied {len(row.applied)} of {len(row.planned)}"


def _details(row: RunRow) -> list[str]:
    sign = "-" if row.kind is Kind.ROLLBACK else "+"
    lines = [f"    {sign} {step.app}.{step.name} ({step.duration_ms} ms)" for step in row.applied]
    if row.current_migration is not None and row.status is not Status.SUCCEEDED:
        atomic = "" if row.current_atomic is not False else " (not atomic)"
        unfinished = row.status in {Status.RUNNING, Status.INTERRUPTED}
        word = "in progress" if unfinished else "failed"
        lines.append(f"    ! {word}: {dotted(row.current_migration)}{atomic}")
    if row.error:
        lines.append(f"    error: {row.error}")
    if row.resolved_by:
        word = "rolled back by" if row.status is Status.ROLLED_BACK else "gone past by"
        lines.append(f"    {word} run {row.resolved_by}")
    return lines
