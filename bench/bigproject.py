"""Generate a large synthetic Django project: N apps with M migrations each, written at bench
time into a directory of the caller's choosing (never committed).

Each app has one model created by ``0001_initial`` and grown by one field per later migration;
``0001_initial`` of every app after the first depends on the previous app's, so the graph has
cross-app edges as real projects do. No ``django.contrib`` app is installed: the figures are the
graph's cost alone.

    python -m bench.bigproject /tmp/big --apps 100 --migrations 50
"""

from __future__ import annotations

import argparse
from pathlib import Path

SETTINGS = '''"""Settings of the generated project; DATABASES from BIGPROJ_DATABASES (JSON)."""

import json
import os

SECRET_KEY = "bigproj-not-a-secret"
INSTALLED_APPS = [{apps}]
DATABASES = json.loads(os.environ["BIGPROJ_DATABASES"])
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
'''

INITIAL = """from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [{dependencies}]

    operations = [
        migrations.CreateModel(
            name="Item",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=100)),
            ],
        ),
    ]
"""

FIELD = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("{app}", "{previous}")]

    operations = [
        migrations.AddField("item", "field_{number:04d}", models.IntegerField(default=0)),
    ]
"""


def migration_names(per_app: int) -> list[str]:
    """The migration names of one app, in order."""
    return ["0001_initial", *(f"{n:04d}_item_field_{n:04d}" for n in range(2, per_app + 1))]


def generate(root: Path, apps: int = 100, per_app: int = 50) -> str:
    """Write the project under ``root``; return its settings module (``bigproj.settings``)."""
    labels = [f"app{index:03d}" for index in range(apps)]
    (root / "bigproj").mkdir(parents=True, exist_ok=True)
    (root / "bigproj" / "__init__.py").write_text("")
    quoted = ", ".join(f'"{label}"' for label in labels)
    (root / "bigproj" / "settings.py").write_text(SETTINGS.format(apps=quoted))
    names = migration_names(per_app)
    for index, label in enumerate(labels):
        migrations = root / label / "migrations"
        migrations.mkdir(parents=True, exist_ok=True)
        (root / label / "__init__.py").write_text("")
        (migrations / "__init__.py").write_text("")
        dependency = f'("{labels[index - 1]}", "0001_initial")' if index else ""
        (migrations / "0001_initial.py").write_text(INITIAL.format(dependencies=dependency))
        for number in range(2, per_app + 1):
            text = FIELD.format(app=label, previous=names[number - 2], number=number)
            (migrations / f"{names[number - 1]}.py").write_text(text)
    return "bigproj.settings"


def nodes(apps: int = 100, per_app: int = 50) -> list[tuple[str, str]]:
    """Every (app, name) node of the generated project."""
    names = migration_names(per_app)
    return [(f"app{index:03d}", name) for index in range(apps) for name in names]


def main() -> None:
    """Command line: write the project into a directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--migrations", type=int, default=50, help="per app")
    args = parser.parse_args()
    generate(args.root, args.apps, args.migrations)
    print(f"{args.apps * args.migrations} migrations in {args.apps} apps under {args.root}")


if __name__ == "__main__":
    main()
