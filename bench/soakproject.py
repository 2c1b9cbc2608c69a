"""Generate the chaos soak's test project: a few apps with a dozen migrations each, of every kind
a fault can land in (atomic schema changes, data migrations, non-atomic index builds, slow
statements), written at soak time into a directory of the caller's choosing (never committed).

Each migration of an app, after ``0001_initial``, is one of:

* a field added (atomic), then a real slow statement (``SOAKPROJ_SLEEP`` seconds, default 0.1),
  so that a fault often lands inside a statement on the server;
* a data migration inserting three rows into the app's tally table (atomic): rows written
  twice would show in the count;
* an index built outside a transaction (``atomic = False``; ``CREATE INDEX CONCURRENTLY`` on
  PostgreSQL), idempotent so that an accepted re-run after an interruption can finish it;
* a new model.

On MySQL/MariaDB, where no DDL is transactional, schema changes are written ``IF NOT EXISTS``
(with the state change beside them) and data steps are idempotent, as careful projects there
do, so that a migration stopped half way can be run again once accepted.

    python -m bench.soakproject /tmp/soak --apps 3 --migrations 12
"""

from __future__ import annotations

import argparse
from pathlib import Path

SETTINGS = '''"""Settings of the generated soak project; DATABASES from SOAKPROJ_DATABASES."""

import json
import os

SECRET_KEY = "soakproj-not-a-secret"
INSTALLED_APPS = [{apps}]
DATABASES = json.loads(os.environ["SOAKPROJ_DATABASES"])
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
'''

MANAGE = """import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "soakproj.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

HELPERS = '''"""What the generated migrations share."""

import os


def sleep(apps, schema_editor):
    """A real slow statement on the server, so faults land inside one."""
    seconds = float(os.environ.get("SOAKPROJ_SLEEP", "0.1"))
    if seconds <= 0:
        return
    vendor = schema_editor.connection.vendor
    with schema_editor.connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute("SELECT pg_sleep(%s)", [seconds])
        elif vendor == "mysql":
            cursor.execute("SELECT SLEEP(%s)", [seconds])


def tally(app, name):
    """A data migration: three rows in the app's tally table, labelled by the migration."""

    def insert(apps, schema_editor):
        model = apps.get_model(app, "Tally")
        rows = model.objects.using(schema_editor.connection.alias)
        for number in range(3):
            label = f"{{name}}-{{number}}"
            if os.environ.get("SOAKPROJ_BACKEND") == "mysql":
                # No transactional DDL there: a migration stopped after this step is run again
                # once accepted, so its data step must be idempotent.
                rows.get_or_create(label=label)
            else:
                rows.create(label=label)

    return insert


def index(table, column, name):
    """Build an index outside a transaction, idempotently."""

    def build(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            schema_editor.execute(
                f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{{name}}" ON "{{table}}" ("{{column}}")'
            )
        else:
            schema_editor.execute(
                f"CREATE INDEX IF NOT EXISTS `{{name}}` ON `{{table}}` (`{{column}}`)"
            )

    def drop(apps, schema_editor):
        quote = schema_editor.quote_name
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {{quote(name)}}")
        else:
            schema_editor.execute(f"DROP INDEX IF EXISTS {{quote(name)}} ON {{quote(table)}}")

    return build, drop


def create_model(operation, table, columns):
    """Create a model: Django's own operation, or on MySQL/MariaDB an idempotent CREATE TABLE
    beside it (``columns``: the column definitions after the primary key)."""
    from django.db import migrations

    if os.environ.get("SOAKPROJ_BACKEND") != "mysql":
        return [operation]
    sql = (
        f"CREATE TABLE IF NOT EXISTS `{{table}}` (`id` bigint AUTO_INCREMENT PRIMARY KEY, "
        f"{{columns}})"
    )
    return [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(sql, f"DROP TABLE IF EXISTS `{{table}}`")],
            state_operations=[operation],
        )
    ]


def add_column(app, model, field_name, field):
    """Add a field: Django's own operation, or on MySQL/MariaDB an idempotent ALTER beside it."""
    from django.db import migrations

    if os.environ.get("SOAKPROJ_BACKEND") != "mysql":
        return [migrations.AddField(model, field_name, field)]
    table = f"{{app}}_{{model}}"
    sql = (
        f"ALTER TABLE `{{table}}` ADD COLUMN IF NOT EXISTS `{{field_name}}` integer "
        "NOT NULL DEFAULT 0"
    )
    reverse = f"ALTER TABLE `{{table}}` DROP COLUMN IF EXISTS `{{field_name}}`"
    return [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(sql, reverse)],
            state_operations=[migrations.AddField(model, field_name, field)],
        )
    ]
'''

INITIAL = """from django.db import migrations, models

from soakproj.helpers import create_model


class Migration(migrations.Migration):
    initial = True

    dependencies = [{dependencies}]

    operations = [
        *create_model(
            migrations.CreateModel(
                name="Item",
                fields=[
                    ("id", models.BigAutoField(auto_created=True, primary_key=True)),
                    ("name", models.CharField(max_length=100, default="")),
                ],
            ),
            "{app}_item",
            "`name` varchar(100) NOT NULL",
        ),
        *create_model(
            migrations.CreateModel(
                name="Tally",
                fields=[
                    ("id", models.BigAutoField(auto_created=True, primary_key=True)),
                    ("label", models.CharField(max_length=100)),
                ],
            ),
            "{app}_tally",
            "`label` varchar(100) NOT NULL",
        ),
    ]
"""

FIELD = """from django.db import migrations, models

from soakproj.helpers import add_column, sleep


class Migration(migrations.Migration):
    dependencies = [("{app}", "{previous}")]

    operations = [
        *add_column("{app}", "item", "field_{number:02d}", models.IntegerField(default=0)),
        migrations.RunPython(sleep, migrations.RunPython.noop),
    ]
"""

DATA = """from django.db import migrations

from soakproj.helpers import sleep, tally


class Migration(migrations.Migration):
    dependencies = [("{app}", "{previous}")]

    operations = [
        migrations.RunPython(tally("{app}", "{name}"), migrations.RunPython.noop),
        migrations.RunPython(sleep, migrations.RunPython.noop),
    ]
"""

INDEX = """from django.db import migrations

from soakproj.helpers import index, sleep

BUILD, DROP = index("{app}_item", "field_{field:02d}", "{app}_item_f{field:02d}_idx")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("{app}", "{previous}")]

    operations = [
        migrations.RunPython(sleep, migrations.RunPython.noop),
        migrations.RunPython(BUILD, DROP),
    ]
"""

MODEL = """from django.db import migrations, models

from soakproj.helpers import create_model, sleep


class Migration(migrations.Migration):
    dependencies = [("{app}", "{previous}")]

    operations = [
        *create_model(
            migrations.CreateModel(
                name="Extra{number:02d}",
                fields=[
                    ("id", models.BigAutoField(auto_created=True, primary_key=True)),
                    ("value", models.IntegerField(default=0)),
                ],
            ),
            "{app}_extra{number:02d}",
            "`value` integer NOT NULL",
        ),
        migrations.RunPython(sleep, migrations.RunPython.noop),
    ]
"""


def app_names(count: int) -> list[str]:
    """The generated apps' labels."""
    return [f"soak_{chr(ord('a') + index)}" for index in range(count)]


def write(directory: Path, apps: int = 3, per_app: int = 12) -> list[str]:
    """Write the project into ``directory``; return its apps' labels."""
    labels = app_names(apps)
    package = directory / "soakproj"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(
        SETTINGS.format(apps=", ".join(repr(label) for label in labels))
    )
    (package / "helpers.py").write_text(HELPERS.replace("{{", "{").replace("}}", "}"))
    (directory / "manage.py").write_text(MANAGE)
    for position, app in enumerate(labels):
        migrations = directory / app / "migrations"
        migrations.mkdir(parents=True, exist_ok=True)
        (directory / app / "__init__.py").write_text("")
        (migrations / "__init__.py").write_text("")
        dependencies = f'("{labels[position - 1]}", "0001_initial")' if position else ""
        (migrations / "0001_initial.py").write_text(
            INITIAL.format(dependencies=dependencies, app=app)
        )
        previous = "0001_initial"
        last_field = None
        for number in range(2, per_app + 1):
            kind = number % 4
            if kind == 2 or (kind == 3 and last_field is None):
                name = f"{number:04d}_field_{number:02d}"
                text = FIELD.format(app=app, previous=previous, number=number)
                last_field = number
            elif kind == 3:
                name = f"{number:04d}_index_{last_field:02d}"
                text = INDEX.format(app=app, previous=previous, field=last_field)
            elif kind == 0:
                name = f"{number:04d}_tally"
                text = DATA.format(app=app, previous=previous, name=name)
            else:
                name = f"{number:04d}_extra_{number:02d}"
                text = MODEL.format(app=app, previous=previous, number=number)
            (migrations / f"{name}.py").write_text(text)
            previous = name
    return labels


def main() -> None:
    """Write the project where the command line says."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--apps", type=int, default=3)
    parser.add_argument("--migrations", type=int, default=12)
    args = parser.parse_args()
    labels = write(args.directory, args.apps, args.migrations)
    print(f"wrote {len(labels)} apps with {args.migrations} migrations each to {args.directory}")


if __name__ == "__main__":
    main()
