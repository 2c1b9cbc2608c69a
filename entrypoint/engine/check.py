"""The read-only CI gate behind ``check``: what would stop a safe deploy, one problem per line.

Everything is read through Django's public migration APIs on the database's own connection.
Nothing is written: no lock, no ``django_migrations`` table (when it is missing, every migration
is unapplied), no audit row.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from django.db.migrations.questioner import NonInteractiveMigrationQuestioner

from entrypoint.engine.graph import app_conflict_message, history_mismatch_message, phase_overrides
from entrypoint.engine.sql import collector_for
from entrypoint.errors import ConfigError
from entrypoint.plan.classify import classify_plan
from entrypoint.plan.locknotes import server_of
from entrypoint.plan.policy import split_plan
from entrypoint.plan.types import (
    MARK_ATTRIBUTE,
    DeployPhase,
    PlanCannotBeSplit,
    PlannedMigration,
    Policy,
)

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

ProblemKind = Literal[
    "unapplied", "missing", "conflict", "policy", "table-lock", "unmarked", "upstream"
]

#: What ``check`` shows as warnings, without failing: a table-size-bound lock a pending
#: operation takes, and a migration that needs a mark the policy does not ask for (both with
#: ``--format github`` only), and model changes without a migration in an app whose migrations
#: come from an installed package (``upstream``: not the project's to write).
ADVISORY_KINDS = frozenset({"table-lock", "unmarked", "upstream"})

#: How many detected operations a "missing migration" line names before it says how many more.
_SHOWN_CHANGES = 3


@dataclass(frozen=True)
class Problem:
    """One reason ``check`` fails, with a one-line message that names the fix."""

    kind: ProblemKind
    database: str
    message: str
    app: str | None = None
    name: str | None = None
    #: The operation of the migration it is about (its index in ``operations``), if one.
    operation: int | None = None
    #: Where to show it: the migration's file (or the app's models) and the operation's line.
    file: str | None = None
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by ``check --format json``."""
        return {
            "kind": self.kind,
            "database": self.database,
            "app": self.app,
            "name": self.name,
            "message": self.message,
        }


def placed(problems: list[Problem], loader: Any) -> list[Problem]:
    """The problems with the file and line they are about: the migration's file and the line of
    its operation (or of the class), else the app's models module or migrations package."""
    import dataclasses

    from django.apps import apps

    from entrypoint.engine.source import migration_file, operation_lines

    out = []
    for problem in problems:
        if problem.kind == "upstream":  # an installed package's files are no file of the change
            out.append(problem)
            continue
        file: Path | None = None
        line = None
        node = (problem.app, problem.name)
        if problem.app and problem.name and node in loader.graph.nodes:
            migration = loader.graph.nodes[node]
            file = migration_file(migration)
            lines = operation_lines(migration)
            index = problem.operation if problem.operation is not None else 0
            line = lines[index] if 0 <= index < len(lines) else 1
        elif problem.app and problem.app in apps.app_configs:
            config = apps.get_app_config(problem.app)
            models = Path(config.path) / "models.py"
            file = models if models.exists() else Path(config.path)
        out.append(dataclasses.replace(problem, file=str(file) if file else None, line=line))
    return out


def find_problems(
    alias: str,
    policy: Policy | None,
    *,
    executor: Any = None,
    offline: bool = False,
    advise: bool = False,
    server: Any = None,
) -> list[Problem]:
    """Everything that should stop a deploy to database ``alias``, in a stable order.

    Conflicts first (several leaf nodes in one app, or a recorded history that does not fit the
    graph), then model changes without a migration (what ``makemigrations --check`` finds;
    skipped while there are conflicts), then unapplied migrations in plan order, then what the
    deploy-phase ``policy`` would hold or refuse. A policy of ``pre-deploy`` or ``post-deploy``
    also reports data migrations and third-party operations that carry no phase mark; ``all``
    or None reports no policy problems. Django must be set up; raises ConfigError for an alias
    that is not in ``DATABASES``.

    ``offline`` (``check --base``, with ``executor`` planning against the migrations at a git
    revision): no database is read, so neither the recorded history nor unapplied migrations
    are reported (what is pending is what the change adds, and is classified instead).

    ``advise`` adds, after the problems, the pending migrations' table-lock notes on ``server``
    (the connection's own when None) and, under a policy that does not report them, their
    missing marks: :data:`ADVISORY_KINDS`, which do not fail the gate.
    """
    from django.db import connections
    from django.db.migrations.executor import MigrationExecutor
    from django.utils.connection import ConnectionDoesNotExist

    try:
        connection = connections[alias]
    except ConnectionDoesNotExist:
        known = ", ".join(sorted(connections.settings)) or "none"
        message = f"database alias {alias!r} is not in DATABASES (configured: {known})"
        raise ConfigError(message) from None
    if executor is None:
        executor = MigrationExecutor(connection)
    loader = executor.loader
    overrides = phase_overrides(loader)  # a bad entry is a configuration error, phase or not
    problems = _conflicts(alias, loader, None if offline else connection)
    if not problems:
        # Like makemigrations, which refuses to run until conflicts are merged.
        problems += _missing(alias, loader)
    plan = executor.migration_plan(loader.graph.leaf_nodes())
    problems += [
        Problem(
            "unapplied",
            alias,
            f"{migration.app_label}.{migration.name} is not applied on database {alias!r}; "
            "apply it with 'django-entrypoint migrate'",
            migration.app_label,
            migration.name,
        )
        for migration, _ in plan
        if not offline
    ]
    judged = policy is not None and policy is not Policy.ALL
    if plan and (judged or advise):
        if advise and server is None and not offline:
            server = server_of(connection)
        planned = classify_plan(
            plan,
            loader,
            server=server if advise else None,
            overrides=overrides,
            collect=collector_for(connection),
        )
        if policy is not None and judged:
            problems += _policy_problems(alias, policy, planned, loader.graph)
        if advise:
            problems += _advisories(alias, planned, marks_reported=judged)
    return placed(problems, loader)


def _advisories(
    alias: str, planned: list[PlannedMigration], *, marks_reported: bool
) -> list[Problem]:
    advice = []
    for p in planned:
        if p.needs_mark and not marks_reported:
            unjudged = [op.reason for op in p.operations if op.needs_mark]
            first = next(i for i, op in enumerate(p.operations) if op.needs_mark)
            message = (
                f"{p.app}.{p.name}: {'; '.join(unjudged)}; set {MARK_ATTRIBUTE} = "
                '"pre-deploy" or "post-deploy" on its Migration class before a deploy in '
                "phases (ENTRYPOINT_PHASE=pre-deploy refuses it)"
            )
            advice.append(Problem("unmarked", alias, message, p.app, p.name, operation=first))
        advice += [
            Problem(
                "table-lock",
                alias,
                f"{p.app}.{p.name}: {note.text}",
                p.app,
                p.name,
                operation=note.operation,
            )
            for note in p.locks
        ]
    return advice


def _conflicts(alias: str, loader: Any, connection: BaseDatabaseWrapper | None) -> list[Problem]:
    from django.db.migrations.exceptions import InconsistentMigrationHistory

    problems = [
        Problem("conflict", alias, app_conflict_message(app, names), app)
        for app, names in sorted(loader.detect_conflicts().items())
    ]
    if connection is None:
        return problems
    try:
        loader.check_consistent_history(connection)
    except InconsistentMigrationHistory as exc:
        problems.append(Problem("conflict", alias, history_mismatch_message(alias, exc)))
    return problems


class _ReadOnlyQuestioner(NonInteractiveMigrationQuestioner):
    """Answers the autodetector's questions without exiting: a dry run only needs to know
    that a migration is missing, not what default it would get."""

    def __init__(self) -> None:
        super().__init__(specified_apps=set(), dry_run=True, verbosity=0, log=lambda _: None)

    def ask_not_null_addition(self, field_name: str, model_name: str) -> None:
        return None

    def ask_auto_now_add_addition(self, field_name: str, model_name: str) -> None:
        return None


def _missing(alias: str, loader: Any) -> list[Problem]:
    """Model changes without a migration, as the project's own ``makemigrations --check`` sees them.

    Django's change detector runs with translations off, as makemigrations runs it (a translated
    verbose_name is not a change). A project that overrides the makemigrations command (to
    ignore some attributes, say) is asked through that command instead.
    """
    from django.core.management import get_commands
    from django.utils import translation

    if get_commands().get("makemigrations", "django.core") != "django.core":
        found = _project_makemigrations()
    else:
        from django.apps import apps
        from django.db.migrations.autodetector import MigrationAutodetector
        from django.db.migrations.state import ProjectState

        with translation.override(None):
            autodetector = MigrationAutodetector(
                loader.project_state(), ProjectState.from_apps(apps), _ReadOnlyQuestioner()
            )
            changes = autodetector.changes(graph=loader.graph)
            found = {
                app: [op.describe() for migration in migrations for op in migration.operations]
                for app, migrations in changes.items()
            }
    problems = []
    for app, described in sorted(found.items()):
        shown = "; ".join(described[:_SHOWN_CHANGES]) or "see makemigrations --check --dry-run"
        if len(described) > _SHOWN_CHANGES:
            shown += f"; and {len(described) - _SHOWN_CHANGES} more"
        package = _installed_package(app, loader)
        if package is not None:
            message = (
                f"{app} has model changes without a migration ({shown}), but its migrations "
                f"come from an installed package ({package}), which are its maintainers' to "
                "write; not counted: upgrade the package, or set MIGRATION_MODULES for "
                f"{app!r} to migrations of your own"
            )
            problems.append(Problem("upstream", alias, message, app))
            continue
        message = (
            f"{app} has model changes without a migration ({shown}); "
            f"run 'python manage.py makemigrations {app}' and commit the migration"
        )
        problems.append(Problem("missing", alias, message, app))
    return problems


def _installed_package(app: str, loader: Any) -> str | None:
    """Where the migrations of app ``app`` live, when that is an installed distribution's
    directory (site-packages, dist-packages) rather than the project's: a migration written
    there would be lost with the next install. None for the project's own migrations (an
    editable install included: its files are the project's)."""
    import importlib.util
    import site
    import sys
    import sysconfig

    from django.apps import apps

    module, _ = loader.migrations_module(app)
    where = None
    if module:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin:
            where = Path(spec.origin).parent
        elif spec is not None and spec.submodule_search_locations:  # a namespace package
            where = Path(next(iter(spec.submodule_search_locations)))
    if where is None:
        try:
            where = Path(apps.get_app_config(app).path)
        except LookupError:
            return None
    roots = {
        *getattr(site, "getsitepackages", list)(),
        getattr(site, "getusersitepackages", str)(),
        *(sysconfig.get_paths().get(key, "") for key in ("purelib", "platlib")),
        *(entry for entry in sys.path if Path(entry).name in ("site-packages", "dist-packages")),
    }
    resolved = where.resolve()
    for root in sorted(filter(None, roots)):
        try:
            resolved.relative_to(Path(root).resolve())
        except ValueError:
            continue
        return str(where)
    return None


_HEADING = re.compile(r"^Migrations for '(?P<app>[^']+)':")
_OPERATION = re.compile(r"^ {4}(?:[-+~*x] )?(?P<text>\S.*)$")


def _project_makemigrations() -> dict[str, list[str]]:
    """Run the project's own makemigrations with --check --dry-run; the changes it prints, by app.

    It writes nothing (--dry-run), and exits 1 through SystemExit when it finds a change.
    """
    from django.core.management import call_command

    out = io.StringIO()
    try:
        call_command(
            "makemigrations",
            check=True,
            dry_run=True,
            interactive=False,
            no_color=True,
            verbosity=1,
            stdout=out,
            stderr=io.StringIO(),
        )
    except SystemExit as exc:
        if exc.code not in (0, 1, None):
            msg = f"the project's makemigrations --check --dry-run exited {exc.code}"
            raise ConfigError(msg) from None
    found: dict[str, list[str]] = {}
    app: str | None = None
    for line in out.getvalue().splitlines():
        heading = _HEADING.match(line)
        if heading:
            app = heading["app"]
            found.setdefault(app, [])
        elif app is not None and (operation := _OPERATION.match(line)):
            found[app].append(operation["text"].strip())
    return found


def _policy_problems(
    alias: str, policy: Policy, planned: list[PlannedMigration], graph: Any
) -> list[Problem]:
    problems = []
    for p in planned:
        unjudged = [op.reason for op in p.operations if op.needs_mark]
        if p.needs_mark and unjudged:
            message = (
                f"{p.app}.{p.name}: {'; '.join(unjudged)}; set {MARK_ATTRIBUTE} = "
                '"pre-deploy" or "post-deploy" on its Migration class'
            )
            first = next(i for i, op in enumerate(p.operations) if op.needs_mark)
            problems.append(Problem("policy", alias, message, p.app, p.name, operation=first))
    try:
        _, held = split_plan(planned, policy, graph)
    except PlanCannotBeSplit as exc:
        app, name = exc.migration
        return [*problems, Problem("policy", alias, str(exc), app, name)]
    problems += [
        Problem(
            "policy",
            alias,
            f"{p.app}.{p.name} is post-deploy and ENTRYPOINT_PHASE=pre-deploy holds it "
            f"({'; '.join(p.reasons)}); apply it with ENTRYPOINT_PHASE=post-deploy once no "
            "old code runs",
            p.app,
            p.name,
            operation=_first_post_deploy(p),
        )
        for p in held
        # An unmarked one is already reported above, with the fix that comes first.
        if not p.needs_mark
    ]
    return problems


def _first_post_deploy(migration: PlannedMigration) -> int | None:
    """The index of the migration's first post-deploy operation, if one is."""
    for index, operation in enumerate(migration.operations):
        if operation.phase is DeployPhase.POST_DEPLOY:
            return index
    return None
