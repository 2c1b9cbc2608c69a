"""Deploy phases (expand / contract): classify pending migrations and split a plan by policy.

A deploy replaces old code with new code while both may run against the same database. A
migration is ``pre-deploy`` when old code keeps working after it ran (create a table, add a
nullable column, add an index) and ``post-deploy`` when it breaks old code (drop or rename a
column or table, change a type, add NOT NULL without a database default), so it may only run
once no old code is left.

Everything here is pure: it reads migrations, Django's migration graph and migration state, and
never touches a database, a clock or the environment.

Rules, in order of precedence:

1. A mark on the ``Migration`` class wins: our own ``entrypoint_phase = "pre-deploy"`` or
   ``"post-deploy"``; then django-safemigrate's ``safe`` (``Safe.before_deploy()``,
   ``Safe.after_deploy()``, ``Safe.always()``, the older ``Safe.before_deploy`` enum members and
   the first releases' ``True``/``False``); then django-syzygy's ``stage``
   (``Stage.PRE_DEPLOY``, ``Stage.POST_DEPLOY``). Neither package is imported: their values are
   read by name.
2. Otherwise each operation is classified and the migration takes the latest phase of its
   operations. ``RunPython``, ``RunSQL`` and operations that are not Django's own cannot be
   judged from outside, so they need a mark and count as post-deploy until they have one. An
   operation carrying django-syzygy's ``stage`` attribute is classified by it.
3. An operation that only touches schema created earlier in the same pending plan is
   pre-deploy: old code never saw that schema. Likewise a data operation in an app with no
   migration applied yet: old code never used its tables. A model moved to another app with a
   state-only ``CreateModel`` on a table this plan created stays new too.
4. On a database with no migration applied at all, every migration is pre-deploy, marks
   included: no old code runs against it. So a fresh database applies everything in one phase.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from django.db.models import NOT_PROVIDED
from django.db.models.options import normalize_together

from entrypoint.plan.fields import Change, field_changes, unknown_attributes
from entrypoint.plan.locknotes import LockNote, Server, table_locks
from entrypoint.plan.marks import MARK_SOURCES, migration_mark, syzygy_phase
from entrypoint.plan.reversibility import migration_reversible
from entrypoint.plan.sqljudge import column_type, phase_items
from entrypoint.plan.state import (
    SPECIAL,
    callable_name,
    class_path,
    model_label,
    model_state,
    state_field,
)
from entrypoint.plan.statements import Action, read
from entrypoint.plan.types import (
    MARK_ATTRIBUTE,
    DeployPhase,
    Node,
    OperationPhase,
    OperationSQL,
    PlannedMigration,
    dotted,
)

if TYPE_CHECKING:
    from django.db.migrations.migration import Migration
    from django.db.migrations.state import ProjectState

    from entrypoint.plan.types import Collector, MarkedBy


@dataclass
class _Plan:
    """What the pending plan has created so far, which no old code has ever seen."""

    new_apps: frozenset[str]
    models: set[tuple[str, str]] = field(default_factory=set)
    fields: set[tuple[str, str, str]] = field(default_factory=set)
    #: The tables the plan creates, so that a model moved to another app with a state-only
    #: CreateModel on such a table counts as new too.
    tables: set[str] = field(default_factory=set)
    #: No migration is applied on the database at all: no old code has run against it.
    fresh: bool = False
    #: The project's own marks (settings.ENTRYPOINT_MIGRATION_PHASES).
    overrides: Mapping[str, DeployPhase] = field(default_factory=dict)
    #: The server whose table locks are noted, if any.
    server: Server | None = None
    #: Collects each operation's SQL (see :mod:`entrypoint.engine.sql`), if any.
    collect: Collector | None = None
    #: Whether the migration being classified is atomic.
    atomic: bool = True
    #: The collected SQL of the operation being classified, for its handler.
    sql: OperationSQL | None = None

    def is_new(self, app: str, model: str | None, field_name: str | None = None) -> bool:
        if model is None:
            return False
        if (app, model.lower()) in self.models:
            return True
        return field_name is not None and (app, model.lower(), field_name.lower()) in self.fields


def classify_plan(
    plan: Sequence[tuple[Migration, bool]],
    loader: Any,
    server: Server | None = None,
    overrides: Mapping[str, DeployPhase] | None = None,
    collect: Collector | None = None,
) -> list[PlannedMigration]:
    """Classify a forwards plan from ``MigrationExecutor.migration_plan`` migration by migration.

    ``loader`` is the executor's ``MigrationLoader``: its graph gives the state before the plan,
    which is then carried forward operation by operation (never rendered into model classes).
    With a ``server``, each migration also lists the table-size-bound locks its operations take
    there (see :mod:`entrypoint.plan.locknotes`). ``overrides`` are the project's marks from
    :func:`parse_overrides`. With ``collect``, each operation's SQL on the server is collected
    and read: ``RunSQL`` and third-party operations are judged by their statements, and the
    lock notes name the statements they come from. Raises ValueError on a backwards step and
    ConfigError on a mark it cannot read.
    """
    for migration, backwards in plan:
        if backwards:
            message = (
                f"classify_plan takes a forwards plan; "
                f"{dotted((migration.app_label, migration.name))} is a backwards step"
            )
            raise ValueError(message)
    keys = [(migration.app_label, migration.name) for migration, _ in plan]
    state = _state_before(keys, loader)
    graph = loader.graph
    pending = set(keys)
    apps = {app for app, _ in keys}
    new_apps = frozenset(
        app for app in apps if all(root in pending for root in graph.root_nodes(app))
    )
    # A loader built on a connection knows what is applied; one built without knows nothing.
    applied = getattr(loader, "applied_migrations", None)
    fresh = applied is not None and not applied
    created = _Plan(
        new_apps=new_apps,
        server=server,
        fresh=fresh,
        overrides=overrides or {},
        # A database with nothing applied takes every migration as pre-deploy anyway.
        collect=None if fresh else collect,
    )
    planned = []
    for migration, _ in plan:
        verdict, state = _classify_migration(migration, state, created)
        planned.append(verdict)
    return planned


def _state_before(keys: list[Node], loader: Any) -> ProjectState:
    """The project state with every migration the plan builds on, and none of the plan."""
    from django.db.migrations.state import ProjectState

    pending = set(keys)
    frontier: list[Node] = []
    for key in keys:
        for parent in sorted(loader.graph.node_map[key].parents):
            if parent.key not in pending and parent.key not in frontier:
                frontier.append(parent.key)
    if not frontier:
        return ProjectState(real_apps=set(getattr(loader, "unmigrated_apps", ())))
    state: ProjectState = loader.project_state(frontier, at_end=True)
    return state


def _classify_migration(
    migration: Migration, state: ProjectState, created: _Plan
) -> tuple[PlannedMigration, ProjectState]:
    """The migration's verdict, and the project state after it (``state`` moved on, or the
    state its last collection left)."""
    app = migration.app_label
    verdicts = []
    locks: list[LockNote] = []
    created.atomic = bool(migration.atomic)
    for index, operation in enumerate(migration.operations):
        sql = created.collect(operation, app, state) if created.collect is not None else None
        verdicts.append(_classify_operation(operation, app, state, created, sql))
        if created.server is not None and app not in created.new_apps:
            # After the classification, so a table created by this very operation counts as new.
            found = table_locks(
                operation,
                app,
                state,
                created.server,
                lambda model: created.is_new(app, model),
                sql=sql,
                new_tables=created.tables,
            )
            locks += [replace(note, operation=index) for note in found]
        if sql is not None and sql.after is not None:
            state = sql.after
        else:
            operation.state_forwards(app, state)
    reversible, _ = migration_reversible(migration)
    mark = migration_mark(migration, created.overrides)
    post = [v.reason for v in verdicts if v.phase is DeployPhase.POST_DEPLOY]
    reasons: tuple[str, ...]
    marked_by: MarkedBy | None
    if created.fresh:
        # Nothing applied yet: every table is new and no old code reads any of them.
        phase, marked_by, needs_mark = DeployPhase.PRE_DEPLOY, None, False
        reasons = ("the database has no migration applied yet, so no old code runs against it",)
    elif mark is not None:
        phase, marked_by = mark
        reasons = (f"marked {phase.value} by {MARK_SOURCES[marked_by]}",)
        needs_mark = False
    elif post:
        phase, marked_by = DeployPhase.POST_DEPLOY, None
        reasons = tuple(post)
        needs_mark = any(v.needs_mark for v in verdicts)
    else:
        phase, marked_by = DeployPhase.PRE_DEPLOY, None
        reasons = (_summary(verdicts), *(v.reason for v in verdicts if v.caution))
        needs_mark = False
    planned = PlannedMigration(
        app=app,
        name=migration.name,
        phase=phase,
        reasons=reasons,
        atomic=bool(migration.atomic),
        reversible=reversible,
        marked_by=marked_by,
        needs_mark=needs_mark,
        operations=tuple(verdicts),
        locks=tuple(locks),
    )
    return planned, state


def _summary(verdicts: list[OperationPhase]) -> str:
    if not verdicts:
        return "no operations"
    counts = Counter(v.kind for v in verdicts)
    kinds = ", ".join(kind if n == 1 else f"{kind} x{n}" for kind, n in counts.items())
    return f"safe while old code runs: {kinds}"


Handler = Callable[[Any, str, "ProjectState", _Plan], OperationPhase]


_MODELS = "django.db.migrations.operations.models."


_FIELDS = "django.db.migrations.operations.fields."


_POSTGRES = "django.contrib.postgres.operations."


def _classify_operation(
    operation: Any,
    app: str,
    state: ProjectState,
    created: _Plan,
    sql: OperationSQL | None = None,
) -> OperationPhase:
    cls = type(operation)
    name = cls.__name__
    stage = getattr(operation, "stage", None)
    if stage is not None and (phase := syzygy_phase(stage)) is not None:
        return OperationPhase(phase, f"{name} is marked {phase.value} by its stage", name)
    handler = _handler_for(cls)
    if handler is None:
        if sql is not None and sql.failure is None:
            return _judge_sql(f"{name} ({class_path(cls)})", name, sql, app, created)
        why = "not a Django operation, so its effect on old code is unknown"
        if sql is not None and sql.failure is not None:
            why += f", and its SQL could not be read: {sql.failure}"
        return _needs_mark(app, created, name, class_path(cls), why)
    model, field_name = _target(operation)
    on_new_schema = created.is_new(app, model, field_name)
    outer, created.sql = created.sql, sql
    try:
        verdict = handler(operation, app, state, created)
    finally:
        created.sql = outer
    if sql is not None and sql.failure is not None and name not in _SQL_UNNEEDED:
        reason = (
            f"{verdict.reason} (judged from the operation alone: its SQL could not be "
            f"collected, {sql.failure})"
        )
        verdict = verdict._replace(reason=reason)
    # On schema this plan creates there are no old rows to violate a constraint, nor old code.
    cautious = verdict.phase is DeployPhase.PRE_DEPLOY and verdict.caution
    if on_new_schema and (
        cautious or (verdict.phase is DeployPhase.POST_DEPLOY and not verdict.needs_mark)
    ):
        label = model_label(state, app, model) if model else app
        label += f".{field_name}" if field_name else ""
        reason = f"{name} {label}: touches schema created earlier in this plan"
        return OperationPhase(DeployPhase.PRE_DEPLOY, reason, f"{name} on new schema")
    return verdict


def _handler_for(cls: type) -> Handler | None:
    # Only Django's own classes are matched through their bases (the postgres extension
    # operations subclass CreateExtension); a third-party subclass of a built-in operation may
    # do anything in database_forwards, so it is not taken for its base.
    if not cls.__module__.startswith("django."):
        return None
    for base in cls.__mro__:
        handler = _HANDLERS.get(class_path(base))
        if handler is not None:
            return handler
    return None


def _target(operation: Any) -> tuple[str | None, str | None]:
    """The model, and the field if any, that an operation changes (for the same-plan rule)."""
    from django.db.migrations.operations.fields import FieldOperation
    from django.db.migrations.operations.models import ModelOperation

    if isinstance(operation, ModelOperation):
        return operation.name, None
    if isinstance(operation, FieldOperation):
        field_name = operation.old_name if hasattr(operation, "old_name") else operation.name
        return operation.model_name, field_name
    model = getattr(operation, "model_name", None)
    return (model if isinstance(model, str) else None), None


#: Operations whose judgment never needs their SQL (and RunPython has none).
_SQL_UNNEEDED = frozenset({"RunPython", "SeparateDatabaseAndState"})


def _judge_sql(
    subject: str, kind: str, sql: OperationSQL, app: str, created: _Plan
) -> OperationPhase:
    """An operation judged by the statements it will run."""
    changes = read(sql.statements, sql.vendor)
    items = phase_items(
        changes,
        sql.columns,
        vendor=sql.vendor,
        atomic=created.atomic,
        new_tables=created.tables,
    )
    created.tables.update(
        change.table for change in changes if change.action is Action.CREATE_TABLE and change.table
    )
    if not items:
        what = "runs no SQL on this database" if not changes else "its SQL only reads or sets"
        return _pre(f"{subject}: {what}", kind)
    marks = [item.text for item in items if item.needs_mark]
    if marks:
        return _needs_mark(app, created, kind, subject, folded(marks))
    post = [item.text for item in items if item.phase is DeployPhase.POST_DEPLOY]
    if post:
        return _post(f"{subject}: {folded(post)}", kind)
    caution = any(item.caution for item in items)
    return _pre(f"{subject}: {folded([item.text for item in items])}", kind, caution=caution)


def folded(texts: Sequence[str]) -> str:
    """Texts joined with ``; ``, each one once, with ``xN`` after those that repeat."""
    counts = Counter(texts)
    return "; ".join(text if counts[text] == 1 else f"{text} x{counts[text]}" for text in counts)


def _needs_mark(app: str, created: _Plan, kind: str, subject: str, why: str) -> OperationPhase:
    if app in created.new_apps:
        reason = f"{subject}: app {app} is new to this database, so old code never used its data"
        return OperationPhase(DeployPhase.PRE_DEPLOY, reason, f"{kind} in a new app", caution=True)
    reason = f"{subject} needs an explicit mark ({MARK_ATTRIBUTE}): {why}"
    return OperationPhase(DeployPhase.POST_DEPLOY, reason, kind, needs_mark=True)


def _pre(reason: str, kind: str, *, caution: bool = False) -> OperationPhase:
    return OperationPhase(DeployPhase.PRE_DEPLOY, reason, kind, caution=caution)


def _post(reason: str, kind: str) -> OperationPhase:
    return OperationPhase(DeployPhase.POST_DEPLOY, reason, kind)


def _without_table(state: ProjectState, app: str, model: str) -> bool:
    found = model_state(state, app, model)
    if found is None:
        return False
    options = found.options
    return bool(options.get("proxy")) or options.get("managed", True) is False


def _no_table_verdict(kind: str, label: str) -> OperationPhase:
    return _pre(f"{kind} {label}: a proxy or unmanaged model, no database change", kind)


def _table_name(app: str, model_lower: str, options: dict[str, Any]) -> str:
    return str(options.get("db_table") or f"{app}_{model_lower}")


def _create_model(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    created.models.add((app, op.name_lower))
    created.tables.add(_table_name(app, op.name_lower, op.options))
    return _pre(f"CreateModel {app}.{op.name}: a new table, unknown to old code", "CreateModel")


def _delete_model(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    label = model_label(state, app, op.name)
    if _without_table(state, app, op.name):
        return _no_table_verdict("DeleteModel", label)
    return _post(f"DeleteModel {label}: drops a table old code still queries", "DeleteModel")


def _rename_model(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    old, new = op.old_name_lower, op.new_name_lower
    if (app, old) in created.models:
        created.models.add((app, new))
    for field_app, model, field_name in list(created.fields):
        if (field_app, model) == (app, old):
            created.fields.add((app, new, field_name))
    label = model_label(state, app, op.old_name)
    if _without_table(state, app, op.old_name):
        return _no_table_verdict("RenameModel", label)
    reason = (
        f"RenameModel {label} to {op.new_name}: renames its table (and join-table columns named "
        "after it), which old code uses by the old names"
    )
    return _post(reason, "RenameModel")


def _alter_model_table(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    if (app, op.name_lower) in created.models:
        created.tables.add(_table_name(app, op.name_lower, {"db_table": op.table}))
    label = model_label(state, app, op.name)
    found = model_state(state, app, op.name)
    old_table = found.options.get("db_table") if found is not None else None
    if old_table == op.table or _without_table(state, app, op.name):
        return _pre(f"AlterModelTable {label}: the table name does not change", "AlterModelTable")
    reason = f"AlterModelTable {label}: renames the table old code queries by its old name"
    return _post(reason, "AlterModelTable")


def _alter_table_comment(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    label = model_label(state, app, op.name)
    return _pre(f"AlterModelTableComment {label}: a comment only", "AlterModelTableComment")


def _alter_unique_together(
    op: Any, app: str, state: ProjectState, created: _Plan
) -> OperationPhase:
    label = model_label(state, app, op.name)
    found = model_state(state, app, op.name)
    old = set(normalize_together(found.options.get("unique_together", ()) if found else ()))
    added = [group for group in normalize_together(op.option_value) if tuple(group) not in old]
    if added:
        columns = "; ".join(", ".join(group) for group in added)
        reason = (
            f"AlterUniqueTogether {label}: adds unique ({columns}), which fails on existing "
            "duplicates and rejects duplicate writes from old code"
        )
        return _pre(reason, "AlterUniqueTogether", caution=True)
    reason = f"AlterUniqueTogether {label}: only drops unique constraints"
    return _pre(reason, "AlterUniqueTogether")


def _alter_index_together(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    label = model_label(state, app, op.name)
    return _pre(f"AlterIndexTogether {label}: indexes only", "AlterIndexTogether")


def _alter_order_with_respect_to(
    op: Any, app: str, state: ProjectState, created: _Plan
) -> OperationPhase:
    label = model_label(state, app, op.name)
    found = model_state(state, app, op.name)
    old = found.options.get("order_with_respect_to") if found is not None else None
    new = op.order_with_respect_to
    kind = "AlterOrderWithRespectTo"
    if bool(old) == bool(new) or _without_table(state, app, op.name):
        return _pre(f"{kind} {label}: the _order column stays as it is", kind)
    if new:
        reason = (
            f"{kind} {label}: adds the NOT NULL _order column without a database default, "
            "so inserts from old code fail"
        )
        return _post(reason, kind)
    return _post(f"{kind} {label}: drops the _order column old code still writes", kind)


def _python_options(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    kind = type(op).__name__
    label = model_label(state, app, op.name)
    return _pre(f"{kind} {label}: Python-side options only, no database change", kind)


def _add_index(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    kind = type(op).__name__
    label = model_label(state, app, op.model_name)
    return _pre(f"{kind} {label} {op.index.name}: a new index; old code is unaffected", kind)


def _remove_index(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    kind = type(op).__name__
    label = model_label(state, app, op.model_name)
    reason = f"{kind} {label} {op.name}: old code works without it (queries may get slower)"
    return _pre(reason, kind)


def _rename_index(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    label = model_label(state, app, op.model_name)
    return _pre(
        f"RenameIndex {label} to {op.new_name}: old code does not name indexes", "RenameIndex"
    )


def _add_constraint(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    kind = type(op).__name__
    label = model_label(state, app, op.model_name)
    checked = "new rows" if kind == "AddConstraintNotValid" else "existing rows"
    reason = (
        f"{kind} {label} {op.constraint.name}: fails if {checked} violate it, and rejects "
        "writes from old code that violate it"
    )
    return _pre(reason, kind, caution=True)


def _remove_constraint(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    label = model_label(state, app, op.model_name)
    reason = f"RemoveConstraint {label} {op.name}: old code does not need it to write"
    return _pre(reason, "RemoveConstraint")


def _alter_constraint(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    label = model_label(state, app, op.model_name)
    reason = f"AlterConstraint {label} {op.name}: attributes Django checks in Python only"
    return _pre(reason, "AlterConstraint")


def _validate_constraint(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    label = model_label(state, app, op.model_name)
    reason = f"ValidateConstraint {label} {op.name}: fails if existing rows violate it"
    return _pre(reason, "ValidateConstraint", caution=True)


def _create_extension(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    kind = type(op).__name__
    return _pre(f"{kind} {op.name}: old code is unaffected", kind)


def _create_collation(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    return _pre(f"CreateCollation {op.name}: old code is unaffected", "CreateCollation")


def _remove_collation(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    return _post(f"RemoveCollation {op.name}: old code may still use it", "RemoveCollation")


def _add_field(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    created.fields.add((app, op.model_name_lower, op.name_lower))
    new = op.field
    label = f"{model_label(state, app, op.model_name)}.{op.name}"
    if _without_table(state, app, op.model_name):
        return _no_table_verdict("AddField", label)
    if new.many_to_many:
        return _pre(f"AddField {label}: a many-to-many relation, a new table", "AddField")
    if getattr(new, "generated", False):
        return _pre(f"AddField {label}: a column the database computes", "AddField")
    if new.null:
        return _pre(f"AddField {label}: a nullable column; old code is unaffected", "AddField")
    if new.db_default is not NOT_PROVIDED:
        reason = f"AddField {label}: a column with a database default; old code is unaffected"
        return _pre(reason, "AddField")
    reason = (
        f"AddField {label}: NOT NULL without db_default; Django drops the column default after "
        "filling existing rows, so inserts from old code, which omit the column, fail; add it "
        "with db_default, or nullable first"
    )
    return _post(reason, "AddField")


def _remove_field(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    label = f"{model_label(state, app, op.model_name)}.{op.name}"
    old = state_field(state, app, op.model_name, op.name)
    if _without_table(state, app, op.model_name):
        return _no_table_verdict("RemoveField", label)
    if old is not None and old.many_to_many:
        if old.remote_field.through is not None:
            reason = f"RemoveField {label}: the through model keeps its table"
            return _pre(reason, "RemoveField")
        return _post(f"RemoveField {label}: drops a table old code still uses", "RemoveField")
    return _post(
        f"RemoveField {label}: drops a column old code still reads and writes", "RemoveField"
    )


def _rename_field(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    model = op.model_name_lower
    if created.is_new(app, model, op.old_name):
        created.fields.add((app, model, op.new_name_lower))
    label = f"{model_label(state, app, op.model_name)}.{op.old_name}"
    old = state_field(state, app, op.model_name, op.old_name)
    if _without_table(state, app, op.model_name):
        return _no_table_verdict("RenameField", label)
    if old is not None and old.db_column and not old.many_to_many:
        reason = f"RenameField {label} to {op.new_name}: db_column keeps the column name"
        return _pre(reason, "RenameField")
    reason = f"RenameField {label} to {op.new_name}: renames a column old code uses"
    return _post(reason, "RenameField")


def _alter_field(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    label = f"{model_label(state, app, op.model_name)}.{op.name}"
    if _without_table(state, app, op.model_name):
        return _no_table_verdict("AlterField", label)
    old = state_field(state, app, op.model_name, op.name)
    if old is None:
        return _post(f"AlterField {label}: the field is not in the state before it", "AlterField")
    collected = created.sql
    if collected is not None and collected.failure is None:
        changes = _field_changes_with_sql(op, app, state, old, sql=collected, created=created)
    else:
        changes = field_changes(op.name, old, op.field)
    if not changes:
        return _pre(f"AlterField {label}: Python-side attributes only", "AlterField")
    post = [text for phase, text, _ in changes if phase is DeployPhase.POST_DEPLOY]
    if post:
        return _post(f"AlterField {label}: {'; '.join(post)}", "AlterField")
    texts = "; ".join(text for _, text, _ in changes)
    caution = any(caution for _, _, caution in changes)
    return _pre(f"AlterField {label}: {texts}", "AlterField", caution=caution)


def _field_changes_with_sql(
    op: Any, app: str, state: ProjectState, old: Any, *, sql: OperationSQL, created: _Plan
) -> list[Change]:
    """The field diff checked against the statements: a change of field class is a type change
    only when the SQL changes the column's type, and attributes the diff does not know are
    judged by the statements they produce."""
    changes = read(sql.statements, sql.vendor)
    found = model_state(state, app, op.model_name)
    table = _table_name(app, op.model_name_lower, found.options if found else {})
    column = _column_name(op.name, old)
    before = sql.columns.get((table, column))
    retyped = False
    names = {column}  # the column, under each name its statements give it in turn
    for change in changes:
        if change.table != table or change.column not in names:
            continue
        if change.action is Action.RENAME_COLUMN and change.name:
            names.add(change.name)
        elif change.action is Action.ALTER_TYPE:
            retyped = True
        elif change.action is Action.REDEFINE_COLUMN:
            old_type = column_type(before, sql.vendor) if before is not None else None
            retyped = retyped or old_type is None or old_type != change.type
    diff = field_changes(op.name, old, op.field, retyped=retyped, judge_unknown=False)
    unknown = unknown_attributes(op.name, old, op.field)
    if unknown:
        items = phase_items(
            changes, sql.columns, vendor=sql.vendor, atomic=created.atomic, new_tables=()
        )
        post = [item.text for item in items if item.phase is DeployPhase.POST_DEPLOY]
        if post:
            diff.append(
                (DeployPhase.POST_DEPLOY, f"changes {', '.join(unknown)}: {folded(post)}", False)
            )
        else:
            text = f"changes {', '.join(unknown)}, which its SQL shows old code does not notice"
            diff.append((DeployPhase.PRE_DEPLOY, text, False))
    return diff


def _column_name(name: str, field: Any) -> str:
    """The column of field ``name`` as the schema editor names it."""
    if field.db_column:
        return str(field.db_column)
    if field.is_relation and (field.many_to_one or field.one_to_one):
        return f"{name}_id"
    return name


def _separate(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    from django.db.migrations.operations.models import CreateModel

    kind = "SeparateDatabaseAndState"
    for state_op in op.state_operations:
        # A model moved here from another app: its table may be one this plan created.
        if type(state_op) is CreateModel:
            table = _table_name(app, state_op.name_lower, state_op.options)
            if table in created.tables:
                created.models.add((app, state_op.name_lower))
    if not op.database_operations:
        return _pre(f"{kind}: changes Django's state only, not the database", kind)
    # The database operations run against their own chain of states starting from the state
    # before this operation; the state operations alone move the project state on.
    inner_state = state.clone()
    verdicts = []
    for inner in op.database_operations:
        sql = created.collect(inner, app, inner_state) if created.collect is not None else None
        verdicts.append(_classify_operation(inner, app, inner_state, created, sql))
        inner.state_forwards(app, inner_state)
    post = [v for v in verdicts if v.phase is DeployPhase.POST_DEPLOY]
    if post:
        reason = f"{kind}: {'; '.join(v.reason for v in post)}"
        return OperationPhase(
            DeployPhase.POST_DEPLOY, reason, kind, needs_mark=any(v.needs_mark for v in post)
        )
    reason = f"{kind}: {'; '.join(v.reason for v in verdicts)}"
    return _pre(reason, kind, caution=any(v.caution for v in verdicts))


def _run_python(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    from django.db.migrations.operations.special import RunPython

    name = callable_name(op.code)
    if op.code is RunPython.noop:
        return _pre("RunPython noop: does nothing forwards", "RunPython")
    why = "what it does to data cannot be judged from outside"
    return _needs_mark(app, created, "RunPython", f"RunPython {name}", why)


def _run_sql(op: Any, app: str, state: ProjectState, created: _Plan) -> OperationPhase:
    sql = op.sql
    if not sql or (isinstance(sql, list | tuple) and not any(sql)):
        return _pre("RunSQL noop: does nothing forwards", "RunSQL")
    collected = created.sql
    if collected is not None and collected.failure is None:
        return _judge_sql("RunSQL", "RunSQL", collected, app, created)
    why = "what its SQL does cannot be judged from outside"
    if collected is not None and collected.failure is not None:
        why = f"its SQL could not be read ({collected.failure})"
    return _needs_mark(app, created, "RunSQL", "RunSQL", why)


_HANDLERS: dict[str, Handler] = {
    _MODELS + "CreateModel": _create_model,
    _MODELS + "DeleteModel": _delete_model,
    _MODELS + "RenameModel": _rename_model,
    _MODELS + "AlterModelTable": _alter_model_table,
    _MODELS + "AlterModelTableComment": _alter_table_comment,
    _MODELS + "AlterUniqueTogether": _alter_unique_together,
    _MODELS + "AlterIndexTogether": _alter_index_together,
    _MODELS + "AlterOrderWithRespectTo": _alter_order_with_respect_to,
    _MODELS + "AlterModelOptions": _python_options,
    _MODELS + "AlterModelManagers": _python_options,
    _MODELS + "AddIndex": _add_index,
    _MODELS + "RemoveIndex": _remove_index,
    _MODELS + "RenameIndex": _rename_index,
    _MODELS + "AddConstraint": _add_constraint,
    _MODELS + "RemoveConstraint": _remove_constraint,
    _MODELS + "AlterConstraint": _alter_constraint,
    _FIELDS + "AddField": _add_field,
    _FIELDS + "RemoveField": _remove_field,
    _FIELDS + "AlterField": _alter_field,
    _FIELDS + "RenameField": _rename_field,
    SPECIAL + "SeparateDatabaseAndState": _separate,
    SPECIAL + "RunPython": _run_python,
    SPECIAL + "RunSQL": _run_sql,
    _POSTGRES + "CreateExtension": _create_extension,
    _POSTGRES + "CreateCollation": _create_collation,
    _POSTGRES + "RemoveCollation": _remove_collation,
    _POSTGRES + "ValidateConstraint": _validate_constraint,
}
