"""Deploy-phase classification, marks, the same-plan rule and the pre-deploy split.

Migrations are built in memory on top of one applied initial migration, so each row of the
classification table is one pending migration with one operation. No database is involved:
classification reads Django's migration state only.
"""

from __future__ import annotations

import enum
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.postgres import operations as pg
from django.db import migrations, models
from django.db.migrations.graph import MigrationGraph
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.migration import Migration
from django.db.migrations.operations.base import Operation

from entrypoint.errors import EX_DATAERR, EX_USAGE, ConfigError
from entrypoint.plan.classify import classify_plan
from entrypoint.plan.locknotes import Effect, Server
from entrypoint.plan.marks import migration_mark, parse_overrides
from entrypoint.plan.policy import plan_targets, split_plan
from entrypoint.plan.reversibility import migration_reversible
from entrypoint.plan.statements import follow_renames, read
from entrypoint.plan.types import (
    ColumnBefore,
    DeployPhase,
    OperationSQL,
    PlanCannotBeSplit,
    PlannedMigration,
    Policy,
)
from tests.support.paths import PHASEPROJ

PRE, POST = DeployPhase.PRE_DEPLOY, DeployPhase.POST_DEPLOY


pytestmark = pytest.mark.usefixtures("empty_app_registry")


def migration(
    app: str, name: str, *operations: Operation, deps: Sequence[tuple[str, str]] = (), **attrs: Any
) -> Migration:
    """A Migration instance as the loader would make it from a module."""
    attributes = {"operations": list(operations), "dependencies": list(deps), **attrs}
    built: Migration = type("Migration", (migrations.Migration,), attributes)(name, app)
    return built


def loader_for(*all_migrations: Migration) -> MigrationLoader:
    """A loader whose graph holds exactly these migrations (nothing read from disk)."""
    graph = MigrationGraph()
    for m in all_migrations:
        graph.add_node((m.app_label, m.name), m)
    for m in all_migrations:
        for parent in m.dependencies:
            graph.add_dependency(m, (m.app_label, m.name), parent)
    loader = MigrationLoader(None, load=False)
    loader.graph = graph
    loader.unmigrated_apps = set()
    return loader


def classify(applied: Sequence[Migration], pending: Sequence[Migration]) -> list[PlannedMigration]:
    """Classify ``pending`` as the plan on a database where ``applied`` already ran."""
    loader = loader_for(*applied, *pending)
    return classify_plan([(m, False) for m in pending], loader)


def pk() -> models.Field[Any, Any]:
    return models.BigAutoField(primary_key=True)


INITIAL = migration(
    "shop",
    "0001_initial",
    migrations.CreateModel("Category", [("id", pk()), ("name", models.CharField(max_length=50))]),
    migrations.CreateModel("Supplier", [("id", pk())]),
    migrations.CreateModel(
        "Product",
        [
            ("id", pk()),
            ("name", models.CharField(max_length=100)),
            ("sku", models.CharField(max_length=32)),
            ("price", models.DecimalField(max_digits=8, decimal_places=2)),
            ("qty", models.IntegerField()),
            ("note", models.TextField(null=True)),
            ("code", models.CharField(max_length=20, db_column="product_code")),
            ("starts", models.IntegerField(db_default=0)),
            ("category", models.ForeignKey("shop.category", on_delete=models.CASCADE)),
            ("tags", models.ManyToManyField("shop.category", related_name="+")),
            ("suppliers", models.ManyToManyField("shop.supplier", through="shop.Supply")),
        ],
        options={
            "unique_together": {("name", "sku")},
            "constraints": [
                models.CheckConstraint(condition=models.Q(qty__gte=0), name="qty_positive")
            ],
            "indexes": [models.Index(fields=["name"], name="product_name_idx")],
        },
    ),
    migrations.CreateModel(
        "Supply",
        [
            ("id", pk()),
            ("product", models.ForeignKey("shop.product", on_delete=models.CASCADE)),
            ("supplier", models.ForeignKey("shop.supplier", on_delete=models.CASCADE)),
        ],
    ),
    migrations.CreateModel(
        "Step",
        [("id", pk()), ("category", models.ForeignKey("shop.category", on_delete=models.CASCADE))],
        options={"order_with_respect_to": "category"},
    ),
    migrations.CreateModel("Report", [("id", pk())], options={"managed": False}),
)


def after_initial(*operations: Operation, **attrs: Any) -> PlannedMigration:
    """Classify one pending migration shop.0002_change on top of the applied initial one."""
    pending = migration("shop", "0002_change", *operations, deps=[INITIAL_KEY], **attrs)
    [planned] = classify([INITIAL], [pending])
    return planned


INITIAL_KEY = ("shop", "0001_initial")


class ColourField(models.CharField):  # type: ignore[type-arg]
    """A third-party field with a keyword argument this project knows nothing about."""

    def __init__(self, *args: Any, palette: str = "web", **kwargs: Any) -> None:
        self.palette = palette
        kwargs.setdefault("max_length", 20)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["palette"] = self.palette
        return name, path, args, kwargs


class AddTrigger(Operation):
    """A third-party operation: its effect on old code cannot be known."""

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass


class PreservingAddField(migrations.AddField):
    """A third-party subclass of a built-in operation; it may do anything in the database."""


class StagedRemoveField(migrations.RemoveField):
    """An operation carrying django-syzygy's per-operation ``stage``."""

    stage = "pre_deploy"


def backfill(apps: Any, schema_editor: Any) -> None:
    """Stands in for a data migration's forwards function."""


def _m(path: str) -> str:
    return f"{__name__}.{path}"


S = "shop.Product"
NOT_NULL_ADD = (
    "NOT NULL without db_default; Django drops the column default after filling existing rows, "
    "so inserts from old code, which omit the column, fail; add it with db_default, or "
    "nullable first"
)
CLASSIFICATION: list[tuple[str, Operation, DeployPhase, str]] = [
    # models
    (
        "create model",
        migrations.CreateModel("Coupon", [("id", pk())]),
        PRE,
        "CreateModel shop.Coupon: a new table, unknown to old code",
    ),
    (
        "delete model",
        migrations.DeleteModel("Category"),
        POST,
        "DeleteModel shop.Category: drops a table old code still queries",
    ),
    (
        "delete unmanaged model",
        migrations.DeleteModel("Report"),
        PRE,
        "DeleteModel shop.Report: a proxy or unmanaged model, no database change",
    ),
    (
        "rename model",
        migrations.RenameModel("Category", "Section"),
        POST,
        "RenameModel shop.Category to Section: renames its table (and join-table columns named "
        "after it), which old code uses by the old names",
    ),
    (
        "alter model table",
        migrations.AlterModelTable("Product", "products"),
        POST,
        f"AlterModelTable {S}: renames the table old code queries by its old name",
    ),
    (
        "alter model table, same name",
        migrations.AlterModelTable("Product", None),
        PRE,
        f"AlterModelTable {S}: the table name does not change",
    ),
    (
        "alter model table comment",
        migrations.AlterModelTableComment("Product", "what we sell"),
        PRE,
        f"AlterModelTableComment {S}: a comment only",
    ),
    (
        "add unique together",
        migrations.AlterUniqueTogether("Product", {("name", "sku"), ("name", "qty")}),
        PRE,
        f"AlterUniqueTogether {S}: adds unique (name, qty), which fails on existing duplicates "
        "and rejects duplicate writes from old code",
    ),
    (
        "drop unique together",
        migrations.AlterUniqueTogether("Product", set()),
        PRE,
        f"AlterUniqueTogether {S}: only drops unique constraints",
    ),
    (
        "alter index together",
        migrations.AlterIndexTogether("Product", {("name", "qty")}),
        PRE,
        f"AlterIndexTogether {S}: indexes only",
    ),
    (
        "add order with respect to",
        migrations.AlterOrderWithRespectTo("Product", "category"),
        POST,
        f"AlterOrderWithRespectTo {S}: adds the NOT NULL _order column without a database "
        "default, so inserts from old code fail",
    ),
    (
        "drop order with respect to",
        migrations.AlterOrderWithRespectTo("Step", None),
        POST,
        "AlterOrderWithRespectTo shop.Step: drops the _order column old code still writes",
    ),
    (
        "alter model options",
        migrations.AlterModelOptions("Product", {"ordering": ["name"]}),
        PRE,
        f"AlterModelOptions {S}: Python-side options only, no database change",
    ),
    (
        "alter model managers",
        migrations.AlterModelManagers("Product", []),
        PRE,
        f"AlterModelManagers {S}: Python-side options only, no database change",
    ),
    # indexes and constraints
    (
        "add index",
        migrations.AddIndex("product", models.Index(fields=["sku"], name="sku_idx")),
        PRE,
        f"AddIndex {S} sku_idx: a new index; old code is unaffected",
    ),
    (
        "remove index",
        migrations.RemoveIndex("product", "product_name_idx"),
        PRE,
        f"RemoveIndex {S} product_name_idx: old code works without it (queries may get slower)",
    ),
    (
        "rename index",
        migrations.RenameIndex("product", new_name="name_idx", old_name="product_name_idx"),
        PRE,
        f"RenameIndex {S} to name_idx: old code does not name indexes",
    ),
    (
        "add constraint",
        migrations.AddConstraint(
            "product", models.CheckConstraint(condition=models.Q(price__gte=0), name="price_ok")
        ),
        PRE,
        f"AddConstraint {S} price_ok: fails if existing rows violate it, and rejects writes "
        "from old code that violate it",
    ),
    (
        "remove constraint",
        migrations.RemoveConstraint("product", "qty_positive"),
        PRE,
        f"RemoveConstraint {S} qty_positive: old code does not need it to write",
    ),
    (
        "alter constraint",
        migrations.AlterConstraint(
            "product",
            "qty_positive",
            models.CheckConstraint(
                condition=models.Q(qty__gte=0), name="qty_positive", violation_error_message="no"
            ),
        ),
        PRE,
        f"AlterConstraint {S} qty_positive: attributes Django checks in Python only",
    ),
    # django.contrib.postgres
    (
        "add index concurrently",
        pg.AddIndexConcurrently("product", models.Index(fields=["sku"], name="sku_idx")),
        PRE,
        f"AddIndexConcurrently {S} sku_idx: a new index; old code is unaffected",
    ),
    (
        "remove index concurrently",
        pg.RemoveIndexConcurrently("product", "product_name_idx"),
        PRE,
        f"RemoveIndexConcurrently {S} product_name_idx: old code works without it "
        "(queries may get slower)",
    ),
    (
        "add constraint not valid",
        pg.AddConstraintNotValid(
            "product", models.CheckConstraint(condition=models.Q(price__gte=0), name="price_ok")
        ),
        PRE,
        f"AddConstraintNotValid {S} price_ok: fails if new rows violate it, and rejects writes "
        "from old code that violate it",
    ),
    (
        "validate constraint",
        pg.ValidateConstraint("product", "qty_positive"),
        PRE,
        f"ValidateConstraint {S} qty_positive: fails if existing rows violate it",
    ),
    (
        "create extension",
        pg.HStoreExtension(),
        PRE,
        "HStoreExtension hstore: old code is unaffected",
    ),
    (
        "create collation",
        pg.CreateCollation("german", "de-u-ks-primary", provider="icu"),
        PRE,
        "CreateCollation german: old code is unaffected",
    ),
    (
        "remove collation",
        pg.RemoveCollation("german", "de-u-ks-primary", provider="icu"),
        POST,
        "RemoveCollation german: old code may still use it",
    ),
    # adding fields
    (
        "add nullable field",
        migrations.AddField("product", "flag", models.BooleanField(null=True)),
        PRE,
        f"AddField {S}.flag: a nullable column; old code is unaffected",
    ),
    (
        "add field with db_default",
        migrations.AddField("product", "flag", models.BooleanField(db_default=False)),
        PRE,
        f"AddField {S}.flag: a column with a database default; old code is unaffected",
    ),
    (
        "add NOT NULL field with a Python default only",
        migrations.AddField("product", "flag", models.BooleanField(default=False)),
        POST,
        f"AddField {S}.flag: {NOT_NULL_ADD}",
    ),
    (
        "add NOT NULL field with a one-off default",
        migrations.AddField(
            "product", "flag", models.BooleanField(default=True), preserve_default=False
        ),
        POST,
        f"AddField {S}.flag: {NOT_NULL_ADD}",
    ),
    (
        "add many-to-many field",
        migrations.AddField("product", "related", models.ManyToManyField("shop.product")),
        PRE,
        f"AddField {S}.related: a many-to-many relation, a new table",
    ),
    (
        "add generated field",
        migrations.AddField(
            "product",
            "double",
            models.GeneratedField(
                expression=models.F("qty") * 2, output_field=models.IntegerField(), db_persist=True
            ),
        ),
        PRE,
        f"AddField {S}.double: a column the database computes",
    ),
    (
        "add field to an unmanaged model",
        migrations.AddField("report", "total", models.IntegerField()),
        PRE,
        "AddField shop.Report.total: a proxy or unmanaged model, no database change",
    ),
    # removing and renaming fields
    (
        "remove field",
        migrations.RemoveField("product", "sku"),
        POST,
        f"RemoveField {S}.sku: drops a column old code still reads and writes",
    ),
    (
        "remove many-to-many field",
        migrations.RemoveField("product", "tags"),
        POST,
        f"RemoveField {S}.tags: drops a table old code still uses",
    ),
    (
        "remove many-to-many field with a through model",
        migrations.RemoveField("product", "suppliers"),
        PRE,
        f"RemoveField {S}.suppliers: the through model keeps its table",
    ),
    (
        "rename field",
        migrations.RenameField("product", "sku", "ref"),
        POST,
        f"RenameField {S}.sku to ref: renames a column old code uses",
    ),
    (
        "rename field with db_column",
        migrations.RenameField("product", "code", "ref"),
        PRE,
        f"RenameField {S}.code to ref: db_column keeps the column name",
    ),
    # altering fields
    (
        "alter field: help_text, verbose_name, choices, validators, default",
        migrations.AlterField(
            "product",
            "sku",
            models.CharField(
                max_length=32,
                help_text="stock keeping unit",
                verbose_name="SKU",
                choices=[("a", "A")],
                validators=[lambda value: None],
                default="a",
                blank=True,
            ),
        ),
        PRE,
        f"AlterField {S}.sku: Python-side attributes only",
    ),
    (
        "alter field: same column type, other validation class",
        migrations.AlterField("product", "sku", models.SlugField(max_length=32, db_index=False)),
        PRE,
        f"AlterField {S}.sku: Python-side attributes only",
    ),
    (
        "alter field: longer varchar",
        migrations.AlterField("product", "sku", models.CharField(max_length=64)),
        PRE,
        f"AlterField {S}.sku: raises max_length from 32 to 64",
    ),
    (
        "alter field: shorter varchar",
        migrations.AlterField("product", "sku", models.CharField(max_length=16)),
        POST,
        f"AlterField {S}.sku: lowers max_length from 32 to 16; old code may write longer values",
    ),
    (
        "alter field: varchar to text",
        migrations.AlterField("product", "sku", models.TextField()),
        PRE,
        f"AlterField {S}.sku: widens CharField to TextField",
    ),
    (
        "alter field: text to varchar",
        migrations.AlterField("product", "note", models.CharField(max_length=200, null=True)),
        POST,
        f"AlterField {S}.note: changes the column type from TextField to CharField, which old "
        "code reads and writes",
    ),
    (
        "alter field: type change",
        migrations.AlterField("product", "sku", models.IntegerField()),
        POST,
        f"AlterField {S}.sku: changes the column type from CharField to IntegerField, which "
        "old code reads and writes",
    ),
    (
        "alter field: larger integer",
        migrations.AlterField("product", "qty", models.BigIntegerField()),
        PRE,
        f"AlterField {S}.qty: widens IntegerField to BigIntegerField",
    ),
    (
        "alter field: integer made positive",
        migrations.AlterField("product", "qty", models.PositiveIntegerField()),
        POST,
        f"AlterField {S}.qty: changes the column type from IntegerField to "
        "PositiveIntegerField, which old code reads and writes",
    ),
    (
        "alter field: more decimal digits",
        migrations.AlterField(
            "product", "price", models.DecimalField(max_digits=10, decimal_places=3)
        ),
        PRE,
        f"AlterField {S}.price: widens max_digits/decimal_places from 8/2 to 10/3",
    ),
    (
        "alter field: fewer integer digits",
        migrations.AlterField(
            "product", "price", models.DecimalField(max_digits=8, decimal_places=3)
        ),
        POST,
        f"AlterField {S}.price: narrows max_digits/decimal_places from 8/2 to 8/3; old code may "
        "write values that no longer fit",
    ),
    (
        "alter field: null to NOT NULL",
        migrations.AlterField("product", "note", models.TextField(default="")),
        POST,
        f"AlterField {S}.note: makes the column NOT NULL; old code may still write NULL",
    ),
    (
        "alter field: NOT NULL to null",
        migrations.AlterField("product", "sku", models.CharField(max_length=32, null=True)),
        PRE,
        f"AlterField {S}.sku: makes the column nullable",
    ),
    (
        "alter field: add db_index",
        migrations.AlterField("product", "sku", models.CharField(max_length=32, db_index=True)),
        PRE,
        f"AlterField {S}.sku: adds an index",
    ),
    (
        "alter field: add unique",
        migrations.AlterField("product", "sku", models.CharField(max_length=32, unique=True)),
        PRE,
        f"AlterField {S}.sku: adds a unique constraint, which fails on existing duplicates and "
        "rejects duplicate writes from old code",
    ),
    (
        "alter field: add db_default",
        migrations.AlterField("product", "qty", models.IntegerField(db_default=0)),
        PRE,
        f"AlterField {S}.qty: adds a database default",
    ),
    (
        "alter field: drop the db_default of a NOT NULL column",
        migrations.AlterField("product", "starts", models.IntegerField()),
        POST,
        f"AlterField {S}.starts: drops the database default of a NOT NULL column, which old "
        "code relies on",
    ),
    (
        "alter field: comment",
        migrations.AlterField("product", "sku", models.CharField(max_length=32, db_comment="x")),
        PRE,
        f"AlterField {S}.sku: changes the column comment",
    ),
    (
        "alter field: collation",
        migrations.AlterField(
            "product", "sku", models.CharField(max_length=32, db_collation="german")
        ),
        PRE,
        f"AlterField {S}.sku: changes the collation, so ordering and comparisons change for "
        "old code too",
    ),
    (
        "alter field: column name",
        migrations.AlterField("product", "code", models.CharField(max_length=20)),
        POST,
        f"AlterField {S}.code: renames the column from product_code to code, which old code uses",
    ),
    (
        "alter field: foreign key on_delete and related_name",
        migrations.AlterField(
            "product",
            "category",
            models.ForeignKey("shop.category", on_delete=models.PROTECT, related_name="products"),
        ),
        PRE,
        f"AlterField {S}.category: Python-side attributes only",
    ),
    (
        "alter field: foreign key to another model",
        migrations.AlterField(
            "product", "category", models.ForeignKey("shop.supplier", on_delete=models.CASCADE)
        ),
        POST,
        f"AlterField {S}.category: points the relation elsewhere, which changes what old code "
        "reads",
    ),
    (
        "alter field: foreign key constraint dropped",
        migrations.AlterField(
            "product",
            "category",
            models.ForeignKey("shop.category", on_delete=models.CASCADE, db_constraint=False),
        ),
        PRE,
        f"AlterField {S}.category: drops the foreign key constraint",
    ),
    (
        "alter field: to a third-party field class",
        migrations.AlterField("product", "sku", ColourField(max_length=32, palette="print")),
        POST,
        f"AlterField {S}.sku: changes the column type from CharField to ColourField, which old "
        "code reads and writes; changes palette, not known to be safe for old code",
    ),
    # special operations
    (
        "run python",
        migrations.RunPython(backfill),
        POST,
        "RunPython backfill needs an explicit mark (entrypoint_phase): what it does to data "
        "cannot be judged from outside",
    ),
    (
        "run python noop",
        migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop),
        PRE,
        "RunPython noop: does nothing forwards",
    ),
    (
        "run sql",
        migrations.RunSQL("UPDATE shop_product SET qty = 0", migrations.RunSQL.noop),
        POST,
        "RunSQL needs an explicit mark (entrypoint_phase): what its SQL does cannot be judged "
        "from outside",
    ),
    (
        "run sql noop",
        migrations.RunSQL(migrations.RunSQL.noop, migrations.RunSQL.noop),
        PRE,
        "RunSQL noop: does nothing forwards",
    ),
    (
        "separate database and state: state only",
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.RemoveField("product", "sku")]
        ),
        PRE,
        "SeparateDatabaseAndState: changes Django's state only, not the database",
    ),
    (
        "separate database and state: database operations",
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AddField("product", "flag", models.BooleanField(null=True)),
                migrations.RemoveField("product", "sku"),
            ]
        ),
        POST,
        f"SeparateDatabaseAndState: RemoveField {S}.sku: drops a column old code still reads "
        "and writes",
    ),
    (
        "separate database and state: harmless database operations",
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.AlterModelTable("Product", "shop_product")],
            state_operations=[migrations.AlterModelTable("Product", None)],
        ),
        POST,
        f"SeparateDatabaseAndState: AlterModelTable {S}: renames the table old code queries by "
        "its old name",
    ),
    (
        "third-party operation",
        AddTrigger(),
        POST,
        f"{_m('AddTrigger')} needs an explicit mark (entrypoint_phase): not a Django "
        "operation, so its effect on old code is unknown",
    ),
    (
        "third-party subclass of a built-in operation",
        PreservingAddField("product", "flag", models.BooleanField(null=True)),
        POST,
        f"{_m('PreservingAddField')} needs an explicit mark (entrypoint_phase): not a Django "
        "operation, so its effect on old code is unknown",
    ),
    (
        "operation with django-syzygy's stage",
        StagedRemoveField("product", "sku"),
        PRE,
        "StagedRemoveField is marked pre-deploy by its stage",
    ),
]


@pytest.mark.parametrize(
    ("operation", "phase", "reason"),
    [row[1:] for row in CLASSIFICATION],
    ids=[row[0] for row in CLASSIFICATION],
)
def test_classification_table(operation: Operation, phase: DeployPhase, reason: str) -> None:
    """Each kind of operation gets its phase and a reason that says what old code would hit."""
    planned = after_initial(operation)
    assert [(op.phase, op.reason) for op in planned.operations] == [(phase, reason)]
    assert planned.phase is phase


def test_alter_field_with_an_unknown_database_attribute_is_post_deploy() -> None:
    """A keyword of a third-party field that the comparison does not know counts as unsafe."""
    colour = migrations.AddField("product", "colour", ColourField())
    recolour = migrations.AlterField("product", "colour", ColourField(palette="print"))
    applied = [INITIAL, migration("shop", "0002_colour", colour, deps=[INITIAL_KEY])]
    pending = migration("shop", "0003_recolour", recolour, deps=[("shop", "0002_colour")])
    [planned] = classify(applied, [pending])
    assert planned.reasons == (
        f"AlterField {S}.colour: changes palette, not known to be safe for old code",
    )


def test_unmarked_data_and_third_party_operations_need_a_mark() -> None:
    """RunPython, RunSQL and unknown operations are post-deploy and flagged as needing a mark."""
    for operation in (migrations.RunPython(backfill), migrations.RunSQL("SELECT 1"), AddTrigger()):
        planned = after_initial(operation)
        assert (planned.phase, planned.needs_mark, planned.marked_by) == (POST, True, None)
    assert not after_initial(migrations.RemoveField("product", "sku")).needs_mark


def test_needs_mark_inside_separate_database_and_state() -> None:
    """Unmarked SQL among SeparateDatabaseAndState's database operations needs a mark too."""
    operation = migrations.SeparateDatabaseAndState(
        database_operations=[migrations.RunSQL("ALTER TABLE shop_product ADD x int")]
    )
    planned = after_initial(operation)
    assert (planned.phase, planned.needs_mark) == (POST, True)


def test_migration_takes_the_latest_phase_and_lists_post_deploy_reasons() -> None:
    """One post-deploy operation makes the migration post-deploy; reasons name only those."""
    planned = after_initial(
        migrations.AddField("product", "flag", models.BooleanField(null=True)),
        migrations.RemoveField("product", "sku"),
        migrations.RenameField("product", "name", "title"),
    )
    assert planned.phase is POST
    assert planned.reasons == (
        f"RemoveField {S}.sku: drops a column old code still reads and writes",
        f"RenameField {S}.name to title: renames a column old code uses",
    )


def test_pre_deploy_migration_reasons_summarise_and_keep_cautions() -> None:
    """A pre-deploy migration's reasons count its operations and repeat anything to watch."""
    planned = after_initial(
        migrations.CreateModel("Coupon", [("id", pk())]),
        migrations.CreateModel("Voucher", [("id", pk())]),
        migrations.AddConstraint(
            "product", models.CheckConstraint(condition=models.Q(price__gte=0), name="price_ok")
        ),
    )
    assert planned.phase is PRE
    assert planned.reasons == (
        "safe while old code runs: CreateModel x2, AddConstraint",
        f"AddConstraint {S} price_ok: fails if existing rows violate it, and rejects writes "
        "from old code that violate it",
    )


def test_empty_migration_is_pre_deploy() -> None:
    """A migration without operations changes nothing and is pre-deploy."""
    planned = after_initial()
    assert (planned.phase, planned.reasons) == (PRE, ("no operations",))


# --- the same-plan rule ------------------------------------------------------------------------


def test_fresh_database_applies_everything_in_one_phase() -> None:
    """On an empty database every later change touches schema the plan itself created."""
    later = [
        migration("shop", "0002_a", migrations.RemoveField("product", "sku"), deps=[INITIAL_KEY]),
        migration(
            "shop",
            "0003_b",
            migrations.RenameField("product", "name", "title"),
            deps=[("shop", "0002_a")],
        ),
        migration(
            "shop",
            "0004_c",
            migrations.AddField("product", "flag", models.BooleanField(default=False)),
            migrations.AlterField("product", "qty", models.CharField(max_length=10)),
            migrations.DeleteModel("Step"),
            migrations.RunPython(backfill),
            deps=[("shop", "0003_b")],
        ),
    ]
    planned = classify([], [INITIAL, *later])
    assert [p.phase for p in planned] == [PRE] * 4
    assert [op.reason for op in planned[3].operations] == [
        f"AddField {S}.flag: touches schema created earlier in this plan",
        f"AlterField {S}.qty: touches schema created earlier in this plan",
        "DeleteModel shop.Step: touches schema created earlier in this plan",
        "RunPython backfill: app shop is new to this database, so old code never used its data",
    ]
    assert planned[3].reasons == (
        "safe while old code runs: AddField on new schema, AlterField on new schema, "
        "DeleteModel on new schema, RunPython in a new app",
        "RunPython backfill: app shop is new to this database, so old code never used its data",
    )


def test_field_added_earlier_in_the_plan_may_be_changed_pre_deploy() -> None:
    """Making a field NOT NULL right after the plan added it cannot break old code."""
    add = migration(
        "shop",
        "0002_flag",
        migrations.AddField("product", "flag", models.BooleanField(null=True)),
        deps=[INITIAL_KEY],
    )
    tighten = migration(
        "shop",
        "0003_flag_not_null",
        migrations.AlterField("product", "flag", models.BooleanField(default=False)),
        migrations.RenameField("product", "flag", "enabled"),
        migrations.RemoveField("product", "enabled"),
        deps=[("shop", "0002_flag")],
    )
    planned = classify([INITIAL], [add, tighten])
    assert [p.phase for p in planned] == [PRE, PRE]
    assert [op.reason for op in planned[1].operations] == [
        f"AlterField {S}.flag: touches schema created earlier in this plan",
        f"RenameField {S}.flag: touches schema created earlier in this plan",
        f"RemoveField {S}.enabled: touches schema created earlier in this plan",
    ]


def test_model_renamed_within_the_plan_is_still_new() -> None:
    """A model created and renamed in the plan may be changed freely under its new name."""
    create = migration(
        "shop",
        "0002_coupon",
        migrations.CreateModel("Coupon", [("id", pk()), ("code", models.CharField(max_length=9))]),
        migrations.RenameModel("Coupon", "Voucher"),
        migrations.RemoveField("voucher", "code"),
        migrations.DeleteModel("Voucher"),
        deps=[INITIAL_KEY],
    )
    [planned] = classify([INITIAL], [create])
    assert planned.phase is PRE


def test_schema_that_existed_before_the_plan_is_not_new() -> None:
    """The same-plan rule does not reach schema the database already had."""
    planned = classify(
        [INITIAL],
        [
            migration(
                "shop",
                "0002_coupon",
                migrations.CreateModel("Coupon", [("id", pk())]),
                deps=[INITIAL_KEY],
            ),
            migration(
                "shop",
                "0003_drop",
                migrations.RemoveField("product", "sku"),
                deps=[("shop", "0002_coupon")],
            ),
        ],
    )
    assert [p.phase for p in planned] == [PRE, POST]


def test_data_migration_of_an_app_with_applied_migrations_needs_a_mark() -> None:
    """The new-app relaxation applies only while none of the app's migrations ran."""
    other = migration(
        "blog", "0001_initial", migrations.CreateModel("Post", [("id", pk())]), deps=[INITIAL_KEY]
    )
    data = migration(
        "shop", "0002_data", migrations.RunPython(backfill), deps=[("blog", "0001_initial")]
    )
    planned = classify([INITIAL], [other, data])
    assert [(p.key, p.phase, p.needs_mark) for p in planned] == [
        (("blog", "0001_initial"), PRE, False),
        (("shop", "0002_data"), POST, True),
    ]


def test_state_before_the_plan_includes_every_applied_ancestor() -> None:
    """The plan starts from the applied migrations of every app, not only the first one's."""
    blog = migration("blog", "0001_initial", migrations.CreateModel("Post", [("id", pk())]))
    later = migration(
        "shop", "0002_drop_sku", migrations.RemoveField("product", "sku"), deps=[INITIAL_KEY]
    )
    planned = classify([INITIAL], [blog, later])
    assert planned[1].reasons == (
        f"RemoveField {S}.sku: drops a column old code still reads and writes",
    )


# --- marks ---------------------------------------------------------------------------------------


class When(enum.Enum):
    """Stands in for django-safemigrate's ``When`` (4.x), which is not installed here."""

    ALWAYS = "always"
    BEFORE_DEPLOY = "before_deploy"
    AFTER_DEPLOY = "after_deploy"


@dataclass
class Safe:
    """Stands in for django-safemigrate's ``Safe`` (4.x), which is not installed here."""

    when: When

    @classmethod
    def before_deploy(cls) -> Safe:
        return cls(When.BEFORE_DEPLOY)

    @classmethod
    def after_deploy(cls) -> Safe:
        return cls(When.AFTER_DEPLOY)

    @classmethod
    def always(cls) -> Safe:
        return cls(When.ALWAYS)


class OldSafe(enum.Enum):
    """Stands in for django-safemigrate's ``Safe`` of 2.x and 3.x, an Enum."""

    before_deploy = "before_deploy"
    after_deploy = "after_deploy"
    always = "always"


class Stage(enum.Enum):
    """Stands in for django-syzygy's ``Stage``, which is not installed here."""

    PRE_DEPLOY = "pre_deploy"
    POST_DEPLOY = "post_deployment"


DROP = migrations.RemoveField("product", "sku")  # post-deploy without a mark

MARKS: list[tuple[str, dict[str, object], DeployPhase, str, str]] = [
    ("own pre", {"entrypoint_phase": "pre-deploy"}, PRE, "entrypoint", "entrypoint_phase"),
    ("own post", {"entrypoint_phase": "post-deploy"}, POST, "entrypoint", "entrypoint_phase"),
    (
        "own enum",
        {"entrypoint_phase": DeployPhase.PRE_DEPLOY},
        PRE,
        "entrypoint",
        "entrypoint_phase",
    ),
    (
        "safe before",
        {"safe": Safe.before_deploy()},
        PRE,
        "safemigrate",
        "django-safemigrate's safe",
    ),
    ("safe after", {"safe": Safe.after_deploy()}, POST, "safemigrate", "django-safemigrate's safe"),
    ("safe always", {"safe": Safe.always()}, PRE, "safemigrate", "django-safemigrate's safe"),
    ("safe enum", {"safe": OldSafe.before_deploy}, PRE, "safemigrate", "django-safemigrate's safe"),
    (
        "safe enum after",
        {"safe": OldSafe.after_deploy},
        POST,
        "safemigrate",
        "django-safemigrate's safe",
    ),
    ("safe True", {"safe": True}, PRE, "safemigrate", "django-safemigrate's safe"),
    ("safe False", {"safe": False}, POST, "safemigrate", "django-safemigrate's safe"),
    ("stage pre", {"stage": Stage.PRE_DEPLOY}, PRE, "syzygy", "django-syzygy's stage"),
    ("stage post", {"stage": Stage.POST_DEPLOY}, POST, "syzygy", "django-syzygy's stage"),
    (
        "own beats safe",
        {"entrypoint_phase": "pre-deploy", "safe": Safe.after_deploy()},
        PRE,
        "entrypoint",
        "entrypoint_phase",
    ),
    (
        "safe beats stage",
        {"safe": OldSafe.before_deploy, "stage": Stage.POST_DEPLOY},
        PRE,
        "safemigrate",
        "django-safemigrate's safe",
    ),
]


@pytest.mark.parametrize(
    ("attrs", "phase", "marked_by", "source"),
    [row[1:] for row in MARKS],
    ids=[row[0] for row in MARKS],
)
def test_marks_win_over_classification(
    attrs: dict[str, object], phase: DeployPhase, marked_by: str, source: str
) -> None:
    """A mark sets the phase whatever the operations say, ours first, then safemigrate, syzygy."""
    planned = after_initial(DROP, migrations.RunPython(backfill), **attrs)
    assert (planned.phase, planned.marked_by, planned.needs_mark) == (phase, marked_by, False)
    assert planned.reasons == (f"marked {phase.value} by {source}",)
    # The per-operation verdicts stay visible whatever the mark says.
    assert [op.phase for op in planned.operations] == [POST, POST]


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        (
            {"entrypoint_phase": "later"},
            "migration shop.0002_change: entrypoint_phase = 'later' is not a deploy phase; use "
            "'pre-deploy' or 'post-deploy'",
        ),
        (
            {"safe": "maybe"},
            "migration shop.0002_change: safe = 'maybe' is not a django-safemigrate mark; use "
            "Safe.before_deploy(), Safe.after_deploy() or Safe.always(), or set entrypoint_phase",
        ),
        (
            {"stage": 3},
            "migration shop.0002_change: stage = 3 is not a django-syzygy stage; use "
            "Stage.PRE_DEPLOY or Stage.POST_DEPLOY, or set entrypoint_phase",
        ),
    ],
    ids=["own", "safemigrate", "syzygy"],
)
def test_bad_mark_is_a_configuration_error(attrs: dict[str, object], message: str) -> None:
    """A mark with a value nobody defined stops the run (exit 64) naming migration and value."""
    with pytest.raises(ConfigError) as caught:
        after_initial(DROP, **attrs)
    assert str(caught.value) == message
    assert caught.value.exit_code == EX_USAGE


def _load(app: str, name: str) -> Migration:
    """A migration of the test project, read from its file as Django's loader would."""
    path = PHASEPROJ / app / "migrations" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"phaseproj_{app}_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result: Migration = module.Migration(name, app)
    return result


def test_marks_in_the_test_project_are_read_in_each_form() -> None:
    """The test project's migrations carry each form of mark, and each is honoured."""
    names = [
        "0001_initial",
        "0002_entrypoint_mark",
        "0003_safemigrate_enum_mark",
        "0004_safemigrate_mark",
        "0005_syzygy_mark",
    ]
    loaded = [_load("marks", name) for name in names]
    planned = classify(loaded[:1], loaded[1:])
    assert [(p.name, p.phase, p.marked_by) for p in planned] == [
        ("0002_entrypoint_mark", PRE, "entrypoint"),
        ("0003_safemigrate_enum_mark", PRE, "safemigrate"),
        ("0004_safemigrate_mark", POST, "safemigrate"),
        ("0005_syzygy_mark", POST, "syzygy"),
    ]
    # Without its mark, 0004 (a nullable column) would have been pre-deploy.
    assert planned[2].operations[0].phase is PRE
    assert migration_mark(loaded[0]) is None


# --- split_plan ----------------------------------------------------------------------------------


def _chain(
    *specs: tuple[str, str, DeployPhase, Sequence[tuple[str, str]]],
) -> tuple[list[PlannedMigration], MigrationGraph]:
    """Planned migrations with given phases and dependencies, and the graph they form."""
    built = [migration(app, name, deps=deps) for app, name, _, deps in specs]
    graph = loader_for(*built).graph
    planned = [
        PlannedMigration(app, name, phase, (), atomic=True, reversible=True)
        for app, name, phase, _ in specs
    ]
    return planned, graph


def test_all_and_post_deploy_apply_everything() -> None:
    """Policies ``all`` and ``post-deploy`` hold nothing, whatever the phases."""
    planned, graph = _chain(
        ("shop", "0001_a", POST, []), ("shop", "0002_b", PRE, [("shop", "0001_a")])
    )
    assert split_plan(planned, Policy.ALL, graph) == (planned, [])
    assert split_plan(planned, Policy.POST_DEPLOY, graph) == (planned, [])


def test_pre_deploy_applies_the_pre_deploy_prefix_and_holds_the_rest() -> None:
    """``pre-deploy`` applies the expand migrations and holds the contract ones."""
    planned, graph = _chain(
        ("shop", "0001_a", PRE, []),
        ("shop", "0002_b", PRE, [("shop", "0001_a")]),
        ("shop", "0003_c", POST, [("shop", "0002_b")]),
        ("shop", "0004_d", POST, [("shop", "0003_c")]),
    )
    assert split_plan(planned, Policy.PRE_DEPLOY, graph) == (planned[:2], planned[2:])


def test_pre_deploy_applies_independent_pre_deploy_migrations_after_a_held_one() -> None:
    """A pre-deploy migration that does not depend on a held one still runs."""
    planned, graph = _chain(
        ("shop", "0001_a", POST, []),
        ("blog", "0001_a", PRE, []),
        ("blog", "0002_b", PRE, [("blog", "0001_a")]),
        ("news", "0001_a", PRE, [("blog", "0001_a")]),
    )
    apply, held = split_plan(planned, Policy.PRE_DEPLOY, graph)
    assert (apply, held) == (planned[1:], planned[:1])
    assert plan_targets(apply, graph) == [("blog", "0002_b"), ("news", "0001_a")]


def test_pre_deploy_refuses_a_pre_deploy_migration_that_depends_on_a_held_one() -> None:
    """The plan cannot be split when expand work was written on top of contract work."""
    planned, graph = _chain(
        ("shop", "0001_a", PRE, []),
        ("shop", "0002_drop", POST, [("shop", "0001_a")]),
        ("shop", "0003_drop_more", POST, [("shop", "0002_drop")]),
        ("blog", "0001_add", PRE, [("shop", "0003_drop_more")]),
    )
    with pytest.raises(PlanCannotBeSplit) as caught:
        split_plan(planned, Policy.PRE_DEPLOY, graph)
    assert str(caught.value) == (
        "cannot split the plan for the pre-deploy phase: blog.0001_add is pre-deploy but "
        "depends on shop.0003_drop_more, which is post-deploy and held; set entrypoint_phase = "
        '"post-deploy" on blog.0001_add (settings.ENTRYPOINT_MIGRATION_PHASES for a migration '
        "you cannot edit) or move it into the next release"
    )
    assert caught.value.exit_code == EX_DATAERR
    assert (caught.value.migration, caught.value.held) == (
        ("blog", "0001_add"),
        ("shop", "0003_drop_more"),
    )


# --- reversibility, atomicity, JSON --------------------------------------------------------------


class Irreversible(migrations.AddField):
    """A built-in operation subclass declared irreversible."""

    reversible = False


def test_reversible_names_each_irreversible_operation() -> None:
    """Every operation that cannot be undone is named; the rest do not matter."""
    undoable = migration(
        "shop",
        "0002_x",
        migrations.AddField("product", "flag", models.BooleanField(null=True)),
        migrations.RunPython(backfill),
        migrations.RunSQL("UPDATE shop_product SET qty = 0"),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(backfill, migrations.RunPython.noop)]
        ),
        migrations.SeparateDatabaseAndState(database_operations=[migrations.RunSQL("SELECT 1")]),
        Irreversible("product", "other", models.BooleanField(null=True)),
    )
    assert migration_reversible(undoable) == (
        False,
        [
            "RunPython backfill has no reverse_code",
            "RunSQL has no reverse_sql",
            "RunSQL has no reverse_sql",
            "Irreversible is not reversible",
        ],
    )
    reversible = migration(
        "shop", "0003_y", migrations.RunPython(backfill, migrations.RunPython.noop)
    )
    assert migration_reversible(reversible) == (True, [])


def test_planned_migration_carries_atomic_and_reversible_and_its_json_form() -> None:
    """``plan --format json`` gets app, name, phase, reasons, atomic, reversible and lock notes
    (none when the plan is classified without a server)."""
    planned = after_initial(
        pg.AddIndexConcurrently("product", models.Index(fields=["sku"], name="sku_idx")),
        migrations.RunPython(backfill),
        atomic=False,
    )
    assert (planned.atomic, planned.reversible) == (False, False)
    assert planned.to_dict() == {
        "app": "shop",
        "name": "0002_change",
        "phase": "post-deploy",
        "reasons": [
            "RunPython backfill needs an explicit mark (entrypoint_phase): what it does to data "
            "cannot be judged from outside"
        ],
        "atomic": False,
        "reversible": False,
        "needs_mark": True,
        "locks": [],
    }
    assert after_initial(migrations.RunPython(backfill, backfill)).atomic is True


def test_backwards_plan_is_refused() -> None:
    """Classification is for forwards plans only; a backwards step is a caller's mistake."""
    loader = loader_for(INITIAL)
    with pytest.raises(
        ValueError,
        match=r"^classify_plan takes a forwards plan; shop\.0001_initial is a backwards step$",
    ):
        classify_plan([(INITIAL, True)], loader)


def test_empty_plan() -> None:
    """Nothing pending classifies to nothing."""
    assert classify_plan([], loader_for(INITIAL)) == []


def test_a_model_moved_to_a_new_app_in_the_same_plan_keeps_its_table_new() -> None:
    """A model created in this plan and moved to another app with a state-only CreateModel on
    the same table (as django-oscar and pretix did) is still new schema: renaming its table and
    dropping its columns later in the plan is pre-deploy."""
    old = migration(
        "oldhome",
        "0001_initial",
        migrations.CreateModel("Thing", [("id", pk()), ("label", models.TextField())]),
    )
    adopt = migration(
        "newhome",
        "0001_initial",
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    "Thing",
                    [("id", pk()), ("label", models.TextField())],
                    options={"db_table": "oldhome_thing"},
                )
            ]
        ),
        deps=[("oldhome", "0001_initial")],
    )
    release = migration(
        "oldhome",
        "0002_move",
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel("Thing")]),
        deps=[("oldhome", "0001_initial"), ("newhome", "0001_initial")],
    )
    rename = migration(
        "newhome",
        "0002_table",
        migrations.AlterModelTable("thing", None),
        deps=[("newhome", "0001_initial")],
    )
    drop = migration(
        "newhome",
        "0003_drop_label",
        migrations.RemoveField("thing", "label"),
        deps=[("newhome", "0002_table")],
    )
    planned = classify([INITIAL], [old, adopt, release, rename, drop])
    assert [(p.name, p.phase) for p in planned] == [
        ("0001_initial", PRE),
        ("0001_initial", PRE),
        ("0002_move", PRE),
        ("0002_table", PRE),
        ("0003_drop_label", PRE),
    ]


def test_on_a_database_with_nothing_applied_everything_is_pre_deploy() -> None:
    """No migration applied at all: no old code runs against the database, so every migration
    is pre-deploy, marks included, and a fresh database applies everything in one phase."""
    marked = migration(
        "shop",
        "0002_change",
        migrations.RemoveField("product", "note"),
        deps=[INITIAL_KEY],
        entrypoint_phase="post-deploy",
    )
    loader = loader_for(INITIAL, marked)
    loader.applied_migrations = {}
    planned = classify_plan([(INITIAL, False), (marked, False)], loader)
    assert [(p.name, p.phase, p.marked_by) for p in planned] == [
        ("0001_initial", PRE, None),
        ("0002_change", PRE, None),
    ]
    assert planned[1].reasons == (
        "the database has no migration applied yet, so no old code runs against it",
    )
    # Where the loader knows nothing of the database, the mark still decides.
    [unknown] = classify([INITIAL], [marked])
    assert unknown.phase is POST


def test_no_caution_about_existing_rows_on_a_table_the_plan_creates() -> None:
    """A unique constraint on a table created earlier in the same plan has no existing rows to
    fail on and no old code to reject: no caution, just the same-plan reason."""
    create = migration(
        "shop",
        "0002_box",
        migrations.CreateModel("Box", [("id", pk()), ("code", models.CharField(max_length=8))]),
        deps=[INITIAL_KEY],
    )
    unique = migration(
        "shop",
        "0003_box_unique",
        migrations.AlterUniqueTogether("box", {("code",)}),
        deps=[("shop", "0002_box")],
    )
    _, planned = classify([INITIAL], [create, unique])
    assert planned.phase is PRE
    assert planned.reasons == ("safe while old code runs: AlterUniqueTogether on new schema",)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            ["shop.0001_initial"],
            "settings.ENTRYPOINT_MIGRATION_PHASES is a list; use a dict such as "
            '{"wagtailcore.0089_log_entry_data_json_null_to_object": "pre-deploy"}',
        ),
        (
            {"shop.0001_initial": ["pre-deploy"]},
            "settings.ENTRYPOINT_MIGRATION_PHASES['shop.0001_initial'] = ['pre-deploy'] is not a "
            "deploy phase; use 'pre-deploy' or 'post-deploy'",
        ),
        (
            {"blog.*": "pre-deploy"},
            "settings.ENTRYPOINT_MIGRATION_PHASES names 'blog.*', which is not a migration of this "
            "project; use 'app.migration_name' or 'app.*' as 'python manage.py showmigrations' "
            "lists them",
        ),
    ],
)
def test_a_bad_phase_setting_names_the_entry(value: object, message: str) -> None:
    """The setting must be a dict of known migrations (or apps) to a phase; anything else is a
    configuration error naming the culprit."""
    with pytest.raises(ConfigError) as caught:
        parse_overrides(value, [INITIAL_KEY])
    assert str(caught.value) == message
    assert caught.value.exit_code == EX_USAGE


def test_the_phase_setting_wins_over_the_migrations_own_mark() -> None:
    """An entry for the migration, or for its app, decides its phase whatever it is marked."""
    marked = migration("shop", "0002_change", deps=[INITIAL_KEY], entrypoint_phase="post-deploy")
    nodes = [INITIAL_KEY, ("shop", "0002_change")]
    by_name = parse_overrides({"shop.0002_change": "pre-deploy"}, nodes)
    by_app = parse_overrides({"shop.*": "pre-deploy"}, nodes)
    assert migration_mark(marked, by_name) == (PRE, "settings")
    assert migration_mark(marked, by_app) == (PRE, "settings")
    assert migration_mark(marked) == (POST, "entrypoint")


# --- judged from the collected SQL ------------------------------------------------------------
#
# The collector is the seam: the engine collects each operation's SQL with a collect_sql schema
# editor (tests/integration/test_lock_notes.py does it against real servers); here it hands the
# classifier the statements a server's schema editor writes, so each parser case is one row.


class SubclassKey(models.ForeignKey):  # type: ignore[type-arg]
    """A ForeignKey subclass, as tree packages ship one (django-mptt's TreeForeignKey)."""


def with_sql(
    *operations: Operation,
    sql: Sequence[Sequence[str] | str],
    vendor: str = "postgresql",
    columns: dict[tuple[str, str], ColumnBefore] | None = None,
    server: Server | None = None,
    **attrs: Any,
) -> PlannedMigration:
    """Classify shop.0002_change whose operations run ``sql`` (one entry per operation; a
    string is a collection failure)."""
    given = iter(sql)

    def collect(operation: Any, app: str, state: Any) -> OperationSQL:
        found = next(given)
        if isinstance(found, str):
            return OperationSQL(vendor, failure=found)
        return OperationSQL(vendor, tuple(found), columns=columns or {})

    pending = migration("shop", "0002_change", *operations, deps=[INITIAL_KEY], **attrs)
    loader = loader_for(INITIAL, pending)
    [planned] = classify_plan([(pending, False)], loader, server, collect=collect)
    return planned


TREE_KEY_SQL = [
    'ALTER TABLE "shop_product" DROP CONSTRAINT "shop_product_category_id_fk";',
    'ALTER TABLE "shop_product" ADD CONSTRAINT "shop_product_category_id_fk" FOREIGN KEY '
    '("category_id") REFERENCES "shop_category" ("id") DEFERRABLE INITIALLY DEFERRED;',
]


def test_a_foreign_key_turned_into_a_subclass_of_it_is_pre_deploy_with_only_the_constraint_note() -> (
    None
):
    """AlterField from ForeignKey to a subclass: its SQL changes no type, so the class change is
    no type change; the only note is the foreign key checked again."""
    field = SubclassKey("shop.category", on_delete=models.CASCADE)
    planned = with_sql(
        migrations.AlterField("product", "category", field),
        sql=[TREE_KEY_SQL],
        server=Server("postgresql"),
    )
    assert (planned.phase, planned.needs_mark) == (PRE, False)
    assert planned.operations[0].reason == (
        "AlterField shop.Product.category: ForeignKey to SubclassKey keeps the column type (its "
        "SQL changes no type)"
    )
    assert [(note.effect, note.text) for note in planned.locks] == [
        (
            Effect.SCAN,
            'AlterField shop.Product.category: `ALTER TABLE "shop_product" ADD CONSTRAINT '
            '"shop_product_category_id_fk" FOREIGN KEY ("category_id") REFERENCE…`: PostgreSQL checks every row against the referenced table while writes to both '
            "tables wait; NOT VALID, then VALIDATE CONSTRAINT in a later migration, does not",
        )
    ]


def test_without_sql_a_foreign_key_subclass_still_counts_as_a_type_change() -> None:
    """Where no SQL is collected (SQLite, a classifier without a collector) the field diff alone
    decides, as before: another field class is another column type."""
    field = SubclassKey("shop.category", on_delete=models.CASCADE)
    planned = after_initial(migrations.AlterField("product", "category", field))
    assert planned.phase is POST


def test_an_alter_field_whose_sql_changes_the_type_stays_post_deploy() -> None:
    """A field class change whose SQL does change the column type is a type change."""
    planned = with_sql(
        migrations.AlterField("product", "qty", ColourField()),
        sql=[['ALTER TABLE "shop_product" ALTER COLUMN "qty" TYPE varchar(20);']],
    )
    assert planned.phase is POST
    assert "changes the column type from IntegerField to ColourField" in planned.reasons[0]


def test_a_foreign_key_turned_into_a_char_field_is_judged_on_the_column_it_renames() -> None:
    """Django renames a ForeignKey's column (``category_id`` to ``category``) before it changes
    the type: the type change is found under the new name and judged against what the column
    was (an integer), as Wagtail's generic relations did to ``Revision.page``."""
    planned = with_sql(
        migrations.AlterField("product", "category", models.CharField(max_length=255)),
        sql=[
            [
                'ALTER TABLE "shop_product" DROP CONSTRAINT "shop_product_category_id_fk";',
                'ALTER TABLE "shop_product" RENAME COLUMN "category_id" TO "category";',
                'ALTER TABLE "shop_product" ALTER COLUMN "category" TYPE varchar(255) '
                'USING "category"::varchar(255);',
            ]
        ],
        columns={("shop_product", "category_id"): ColumnBefore("integer", null=False)},
        server=Server("postgresql"),
    )
    assert planned.phase is POST
    assert planned.operations[0].reason == (
        "AlterField shop.Product.category: changes the column type from ForeignKey to CharField, "
        "which old code reads and writes; is no longer a relation, which old code follows"
    )
    rewrite = [note.text for note in planned.locks if note.effect is Effect.REWRITE]
    assert len(rewrite) == 1
    assert "int4 to varchar(255) is not binary-coercible" in rewrite[0], rewrite


def test_a_renamed_column_is_found_under_its_new_name() -> None:
    """What a column was before the statements is known under each name they give it."""
    before = ColumnBefore("integer", null=False)
    changes = read(
        [
            'ALTER TABLE "t" RENAME COLUMN "a" TO "b";',
            'ALTER TABLE "t" RENAME COLUMN "b" TO "c";',
            'ALTER TABLE "t" RENAME COLUMN "x" TO "y";',
        ],
        "postgresql",
    )
    assert follow_renames(changes, {("t", "a"): before}) == {
        ("t", "a"): before,
        ("t", "b"): before,
        ("t", "c"): before,
    }


@pytest.mark.parametrize(
    ("atomic", "caution"),
    [(False, None), (True, "cannot run inside a transaction block")],
)
def test_run_sql_creating_an_index_concurrently_is_pre_deploy_without_a_mark(
    atomic: bool, caution: str | None
) -> None:
    """A RunSQL with CREATE INDEX CONCURRENTLY is pre-deploy and needs no mark; in an atomic
    migration the reason warns that PostgreSQL refuses it there. No lock note: it holds no
    write lock."""
    statement = "CREATE INDEX CONCURRENTLY shop_product_qty ON shop_product (qty)"
    planned = with_sql(
        migrations.RunSQL(statement),
        sql=[[statement]],
        server=Server("postgresql"),
        atomic=atomic,
    )
    assert (planned.phase, planned.needs_mark, planned.locks) == (PRE, False, ())
    if caution is None:
        assert planned.reasons == ("safe while old code runs: RunSQL",)
    else:
        assert caution in planned.reasons[1]


@pytest.mark.parametrize("vendor", ["postgresql", pytest.param("mysql", marks=pytest.mark.mysql)])
def test_run_sql_dropping_a_column_is_post_deploy_without_a_mark(vendor: str) -> None:
    """A RunSQL with DROP COLUMN is post-deploy, and the reason names the statement."""
    statement = "ALTER TABLE shop_product DROP COLUMN note"
    planned = with_sql(migrations.RunSQL(statement), sql=[[statement]], vendor=vendor)
    assert (planned.phase, planned.needs_mark) == (POST, False)
    assert planned.reasons == (
        "RunSQL: `ALTER TABLE shop_product DROP COLUMN note` drops column shop_product.note, "
        "which old code still reads and writes",
    )


@pytest.mark.parametrize(
    ("statements", "phase", "needs_mark", "says"),
    [
        (["UPDATE shop_product SET qty = 0"], POST, True, "changes rows of shop_product (UPDATE)"),
        (["SELEC 1"], POST, True, "is rejected by the server's parser"),
        (["DO $$ BEGIN END $$"], POST, True, "not judged here"),
        (["ALTER TABLE shop_product ADD COLUMN x int NOT NULL"], POST, False, "without a default"),
        (["ALTER TABLE shop_product ADD COLUMN x int NOT NULL DEFAULT 0"], PRE, False, ""),
        (["ALTER TABLE shop_product ALTER COLUMN note SET NOT NULL"], POST, False, "NOT NULL"),
        (["ALTER TABLE shop_product RENAME COLUMN note TO memo"], POST, False, "renames column"),
        (["DROP TABLE shop_report"], POST, False, "drops table shop_report"),
        (["ALTER TABLE shop_product ADD CONSTRAINT c CHECK (qty > 0) NOT VALID"], PRE, False, ""),
        (["ALTER TABLE shop_product VALIDATE CONSTRAINT c"], PRE, False, "validates c"),
        (
            ["CREATE EXTENSION IF NOT EXISTS pg_trgm", "SET CONSTRAINTS ALL IMMEDIATE"],
            PRE,
            False,
            "",
        ),
        (["CREATE TABLE shop_log (id int); ALTER TABLE shop_log DROP COLUMN id"], PRE, False, ""),
    ],
)
def test_run_sql_is_judged_statement_by_statement(
    statements: list[str], phase: DeployPhase, needs_mark: bool, says: str
) -> None:
    """Each kind of statement has its meaning for old code: rows changed or statements not
    understood need a mark, dropped and renamed columns and tables and new NOT NULL columns are
    post-deploy, additions and constraints are pre-deploy; a table created in the same SQL is
    new, so changing it is safe."""
    planned = with_sql(migrations.RunSQL(statements), sql=[statements])
    assert (planned.phase, planned.needs_mark) == (phase, needs_mark)
    assert says in " ".join(planned.reasons)


def test_a_third_party_operation_is_judged_by_its_sql() -> None:
    """A third-party operation with collected SQL is judged by it: a trigger is pre-deploy and
    says what old code's writes now run."""
    planned = with_sql(
        AddTrigger(),
        sql=[
            [
                "CREATE TRIGGER touch BEFORE INSERT OR UPDATE ON shop_product "
                "FOR EACH ROW EXECUTE FUNCTION shop_touch()"
            ]
        ],
    )
    assert (planned.phase, planned.needs_mark) == (PRE, False)
    assert planned.reasons[1].endswith(
        "adds trigger touch on shop_product: from now on every INSERT OR UPDATE of old code on "
        "it also runs shop_touch()"
    )


def test_when_collecting_fails_the_operation_alone_decides_and_the_reason_says_so() -> None:
    """A third-party operation whose SQL could not be collected needs a mark, saying why; a
    Django operation keeps today's judgment with the failure in its reason."""
    third = with_sql(AddTrigger(), sql=["collecting it failed: no such table"])
    assert third.needs_mark
    assert third.reasons[0].endswith(
        "and its SQL could not be read: collecting it failed: no such table"
    )
    django_op = with_sql(
        migrations.RemoveField("product", "note"), sql=["collecting it failed: boom"]
    )
    assert django_op.phase is POST
    assert django_op.reasons[0].endswith(
        "(judged from the operation alone: its SQL could not be collected, collecting it failed: "
        "boom)"
    )


def test_run_python_still_needs_a_mark_with_a_collector() -> None:
    """Python cannot be judged: RunPython needs a mark whatever the collector says."""
    planned = with_sql(
        migrations.RunPython(backfill), sql=["it runs Python, which cannot be written as SQL"]
    )
    assert (planned.phase, planned.needs_mark) == (POST, True)
    assert planned.reasons[0].startswith("RunPython backfill needs an explicit mark")


VARCHAR_20 = {("shop_product", "name"): ColumnBefore("varchar(20)", null=False)}
INTEGER = {("shop_product", "qty"): ColumnBefore("integer", null=False)}
CHECKED_NUMERIC = {
    ("shop_product", "price"): ColumnBefore("numeric(8, 2)", null=False, checked=True)
}


@pytest.mark.parametrize(
    ("statement", "columns", "effects"),
    [
        ("ALTER TABLE shop_product ALTER COLUMN name TYPE varchar(40)", VARCHAR_20, []),
        ("ALTER TABLE shop_product ALTER COLUMN name TYPE text", VARCHAR_20, []),
        ("ALTER TABLE shop_product ALTER COLUMN name TYPE varchar(10)", VARCHAR_20, ["rewrite"]),
        ("ALTER TABLE shop_product ALTER COLUMN qty TYPE bigint", INTEGER, ["rewrite"]),
        ("ALTER TABLE shop_product ALTER COLUMN qty TYPE bigint", {}, ["rewrite"]),
        (
            "ALTER TABLE shop_product ALTER COLUMN price TYPE numeric(10, 2)",
            CHECKED_NUMERIC,
            ["scan"],
        ),
        ("ALTER TABLE shop_product ALTER COLUMN note SET NOT NULL", {}, ["scan"]),
        ("ALTER TABLE shop_product ADD CONSTRAINT c CHECK (qty > 0)", {}, ["scan"]),
        ("ALTER TABLE shop_product ADD CONSTRAINT c CHECK (qty > 0) NOT VALID", {}, []),
        (
            "ALTER TABLE shop_product ADD CONSTRAINT f FOREIGN KEY (qty) REFERENCES shop_category (id)",
            {},
            ["scan"],
        ),
        (
            "ALTER TABLE shop_product ADD CONSTRAINT f FOREIGN KEY (qty) REFERENCES shop_category (id) NOT VALID",
            {},
            [],
        ),
        ("ALTER TABLE shop_product VALIDATE CONSTRAINT c", {}, ["scan"]),
        ("ALTER TABLE shop_product ADD CONSTRAINT u UNIQUE (qty)", {}, ["index"]),
        ("ALTER TABLE shop_product ADD CONSTRAINT u UNIQUE USING INDEX shop_u", {}, []),
        ("CREATE INDEX i ON shop_product (qty)", {}, ["index"]),
        ("CREATE INDEX CONCURRENTLY i ON shop_product (qty)", {}, []),
        ("ALTER TABLE shop_product ADD COLUMN t timestamptz DEFAULT now()", {}, []),
        ("ALTER TABLE shop_product ADD COLUMN t timestamptz DEFAULT CURRENT_TIMESTAMP", {}, []),
        ("ALTER TABLE shop_product ADD COLUMN u uuid DEFAULT gen_random_uuid()", {}, ["rewrite"]),
        (
            "ALTER TABLE shop_product ADD COLUMN g int GENERATED ALWAYS AS (qty * 2) STORED",
            {},
            ["rewrite"],
        ),
        ("ALTER TABLE shop_product DROP COLUMN note", {}, []),
        (
            "CREATE TRIGGER t BEFORE UPDATE ON shop_product FOR EACH ROW EXECUTE FUNCTION f()",
            {},
            [],
        ),
        ("ALTER TABLE shop_product SET TABLESPACE cold", {}, ["rewrite"]),
    ],
)
def test_postgres_lock_notes_are_read_from_the_statements(
    statement: str, columns: dict[tuple[str, str], ColumnBefore], effects: list[str]
) -> None:
    """Binary-coercible type changes are no rewrite (unless a CHECK on the column is checked
    again); SET NOT NULL, validated CHECK and FOREIGN KEY constraints and VALIDATE CONSTRAINT
    read every row; NOT VALID and USING INDEX do not; CREATE INDEX without CONCURRENTLY blocks
    writes; a volatile default or a stored generated column rewrites, a stable one does not;
    dropping a column and adding a trigger hold nothing for long."""
    planned = with_sql(
        migrations.RunSQL(statement),
        sql=[[statement]],
        columns=columns,
        server=Server("postgresql"),
    )
    assert [note.effect.value for note in planned.locks] == effects
    assert all(note.text.startswith(f"RunSQL: `{statement[:40]}") for note in planned.locks)


MYSQL_8 = Server("mysql", version=(8, 0, 36))


@pytest.mark.mysql
@pytest.mark.parametrize(
    ("statement", "columns", "effects"),
    [
        ("ALTER TABLE `shop_product` MODIFY `qty` bigint NOT NULL", INTEGER, ["rewrite"]),
        ("ALTER TABLE `shop_product` MODIFY `qty` integer NULL", INTEGER, ["rebuild"]),
        ("ALTER TABLE `shop_product` MODIFY `qty` integer NOT NULL", INTEGER, []),
        ("ALTER TABLE `shop_product` MODIFY `name` varchar(60) NOT NULL", VARCHAR_20, []),
        ("ALTER TABLE `shop_product` MODIFY `name` varchar(64) NOT NULL", VARCHAR_20, ["rewrite"]),
        (
            "ALTER TABLE `shop_product` ADD CONSTRAINT `f` FOREIGN KEY (`qty`) REFERENCES `shop_category` (`id`)",
            {},
            ["rewrite"],
        ),
        ("ALTER TABLE `shop_product` ADD CONSTRAINT `c` CHECK (`qty` >= 0)", {}, ["rewrite"]),
        ("ALTER TABLE `shop_product` ADD COLUMN `r` varchar(20) NULL UNIQUE", {}, ["rebuild"]),
        ("ALTER TABLE `shop_product` ADD COLUMN `x` integer NULL", {}, []),
        ("CREATE INDEX `i` ON `shop_product` (`qty`)", {}, []),
        ("ALTER TABLE `shop_product` DROP COLUMN `note`", {}, []),
    ],
)
def test_mysql_lock_notes_are_read_from_the_statements(
    statement: str, columns: dict[tuple[str, str], ColumnBefore], effects: list[str]
) -> None:
    """On MySQL a type change copies the table unless a varchar keeps its length prefix, a
    nullability change rebuilds it in place, a FOREIGN KEY or CHECK copies it, a unique column
    rebuilds it; index builds and, on 8.0.29, column drops are online."""
    planned = with_sql(
        migrations.RunSQL(statement),
        sql=[[statement]],
        vendor="mysql",
        columns=columns,
        server=MYSQL_8,
    )
    assert [note.effect.value for note in planned.locks] == effects
