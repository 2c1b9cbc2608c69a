"""Insert one marker row: the migration's COMMIT then takes TESTPROJ_COMMIT_SECONDS."""

import os

from django.db import migrations


def mark(apps, schema_editor):
    seconds = float(os.environ.get("TESTPROJ_COMMIT_SECONDS", "0"))
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("INSERT INTO slowcommit_marker (seconds) VALUES (%s)", [seconds])


class Migration(migrations.Migration):
    atomic = True

    dependencies = [("slowcommit", "0001_initial")]

    operations = [migrations.RunPython(mark, migrations.RunPython.noop)]
