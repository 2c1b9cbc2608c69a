"""Everything the CLI prints for people and for programs: plans, check problems, the audit
trail, rollback outcomes. Standard output carries only this; log events go to standard error.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from entrypoint.audit.rows import Kind, RunRow, Status
from entrypoint.engine.check import Problem
from entrypoint.plan.types import dotted


def out(text: str = "") -> None:
    """One line (or block) on standard output, flushed."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def not_ready(url: str, reason: str) -> None:
    """``probe``'s one line on standard error when readiness is not 200."""
    sys.stderr.write(f"django-entrypoint: probe: {url} is not ready: {reason}\n")
    sys.stderr.flush()


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
        lines += [f"    - {reason}" for reason in folded(row["reasons"])]
        lines += [f"    ! {note}" for note in folded([lock["note"] for lock in row["locks"]])]
    if lines:
        out("\n".join(lines))


def folded(texts: Sequence[str]) -> list[str]:
    """Each text once, in order, with `` xN`` after one that repeats: eight identical reasons of
    one migration read as one line."""
    counts = Counter(texts)
    return [text if n == 1 else f"{text} x{n}" for text, n in counts.items()]


def problems(found: Sequence[Problem], fmt: str, databases: Sequence[str]) -> None:
    """The ``check`` output: JSON, or one line per problem (``ok: ...`` when none)."""
    if fmt == "json":
        out(json.dumps([problem.to_dict() for problem in found], indent=2))
        return
    for problem in found:
        out(f"{problem.database}: {problem.kind}: {problem.message}")
    if not found:
        out(f"ok: no problem found on {', '.join(databases)}")


_TITLES = {
    "unapplied": "Unapplied migration",
    "missing": "Model changes without a migration",
    "conflict": "Conflicting migrations",
    "policy": "Deploy phase",
    "table-lock": "Table lock",
    "unmarked": "Deploy phase mark",
    "upstream": "Model changes without a migration, in an installed package",
}


def github_problems(
    found: Sequence[Problem], databases: Sequence[str], advice: Sequence[Problem] = ()
) -> None:
    """``check --format github``: one workflow annotation per problem (an error), then one per
    piece of ``advice`` (a warning: a table lock, a missing mark the policy does not ask for),
    each on the migration's file and the line of its operation, which GitHub shows on the pull
    request."""
    lines = [
        annotation(
            level,
            problem.message,
            _TITLES.get(problem.kind, problem.kind),
            problem.file,
            problem.line,
        )
        for level, shown in (("error", found), ("warning", advice))
        for problem in shown
    ]
    if not found:
        lines.append(
            annotation(
                "notice", f"no problem found on {', '.join(databases)}", "django-entrypoint check"
            )
        )
    out("\n".join(lines))


def annotation(
    level: str, message: str, title: str, file: str | None = None, line: int | None = None
) -> str:
    """One GitHub workflow command (``::error file=...,line=...,title=...::message``), its
    properties and message escaped as the runner reads them."""
    properties = []
    if file:
        properties.append(f"file={_escape_property(workspace_path(file))}")
        if line:
            properties.append(f"line={line}")
    properties.append(f"title={_escape_property(title)}")
    return f"::{level} {','.join(properties)}::{_escape_data(message)}"


def workspace_path(path: str) -> str:
    """``path`` relative to the repository root, as annotations name files: GITHUB_WORKSPACE
    when set, else the git work tree holding the file, else as given."""
    resolved = Path(path).resolve()
    roots = [os.environ.get("GITHUB_WORKSPACE")]
    roots += [str(parent) for parent in resolved.parents if (parent / ".git").exists()][:1]
    for root in filter(None, roots):
        if resolved.is_relative_to(Path(root).resolve()):
            return resolved.relative_to(Path(root).resolve()).as_posix()
    return path


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def plan_markdown(rows: Sequence[dict[str, Any]], policy: str) -> None:
    """``plan --format markdown``: the pending migrations for a job summary, each with its
    deploy phase, the reasons, and the table locks it takes."""
    if not rows:
        out("### Migrations\n\nNothing to migrate.")
        return
    post = sum(1 for row in rows if row["phase"] == "post-deploy")
    locks = sum(len(row["locks"]) for row in rows)
    held = sum(1 for row in rows if row["held"])
    lines = [
        "### Migrations",
        "",
        f"{len(rows)} pending: {len(rows) - post} pre-deploy, {post} post-deploy"
        + (f", {held} held by `ENTRYPOINT_PHASE={policy}`" if held else "")
        + (f"; {locks} table-lock note(s)" if locks else ""),
        "",
        "| database | migration | phase | atomic | reversible |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        phase = f"**{row['phase']}**" if row["phase"] == "post-deploy" else row["phase"]
        if row["held"]:
            phase += " (held)"
        cells = (
            row["database"],
            f"`{row['app']}.{row['name']}`",
            phase,
            "yes" if row["atomic"] else "no",
            "yes" if row["reversible"] else "no",
        )
        lines.append("| " + " | ".join(cells) + " |")
    for row in rows:
        lines += ["", f"#### `{row['app']}.{row['name']}`: {row['phase']}", ""]
        lines += [f"- {_markdown(reason)}" for reason in row["reasons"]]
        lines += [f"- :warning: {_markdown(lock['note'])}" for lock in row["locks"]]
    out("\n".join(lines))


def _markdown(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


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
