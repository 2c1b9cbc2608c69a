"""A git repository of the example project, with migrations a pull request adds on top: what
``check --base`` and the GitHub Action are tried on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.paths import EXAMPLE

#: The migrations the change adds, by file name: a post-deploy one (a column dropped), one that
#: rewrites a table on PostgreSQL (a column type changed), and a data migration without a mark.
ADDED = {
    "0004_note_views.py": """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0003_welcome_note")]

    operations = [
        migrations.AddField("note", "views", models.IntegerField(db_default=0)),
    ]
""",
    "0005_views_bigint.py": """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0004_note_views")]

    operations = [
        migrations.AlterField("note", "views", models.BigIntegerField(db_default=0)),
    ]
""",
    "0006_remove_note_body.py": """from django.db import migrations


def count(apps, schema_editor):
    apps.get_model("notes", "Note").objects.count()


class Migration(migrations.Migration):
    dependencies = [("notes", "0005_views_bigint")]

    operations = [
        migrations.RunPython(count, migrations.RunPython.noop),
        migrations.RemoveField("note", "body"),
    ]
""",
}


def git(root: Path, *args: str) -> str:
    """Run git in ``root``; its output."""
    done = subprocess.run(
        [
            "git",
            "-C",
            str(root),
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.com",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def pull_request(root: Path) -> Path:
    """A repository at ``root`` holding the example project, committed on ``main``, with the
    migrations of :data:`ADDED` added and committed on a branch; the project's directory."""
    project = root / "site"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "the base")
    git(root, "checkout", "-q", "-b", "change")
    migrations = project / "notes" / "migrations"
    for name, text in ADDED.items():
        (migrations / name).write_text(text)
    models = project / "notes" / "models.py"
    models.write_text(
        models.read_text()
        .replace("    body = models.TextField(blank=True)\n", "")
        .replace(
            "    pinned = models.BooleanField(db_default=False)\n",
            "    pinned = models.BooleanField(db_default=False)\n"
            "    views = models.BigIntegerField(db_default=0)\n",
        )
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "the change")
    return project


def line_of(path: Path, text: str) -> int:
    """The first line of ``path`` that contains ``text``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    msg = f"{text!r} is not in {path}"
    raise AssertionError(msg)
