"""Add a column, then fail when TESTPROJ_HALFWAY_FAIL=1.

On PostgreSQL and SQLite the migration's transaction takes the column back with it; MySQL and
MariaDB cannot roll back DDL, so the column stays while the migration is not recorded.
"""

import os

from django.db import migrations, models


def check(apps, schema_editor):
    if os.environ.get("TESTPROJ_HALFWAY_FAIL") == "1":
        raise RuntimeError("halfway failure asked for by TESTPROJ_HALFWAY_FAIL=1")


class Migration(migrations.Migration):
    dependencies = [("halfway", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="gadget",
            name="colour",
            field=models.CharField(default="", max_length=20),
        ),
        migrations.RunPython(check, migrations.RunPython.noop),
    ]
