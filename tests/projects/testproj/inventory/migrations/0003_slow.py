"""Take TESTPROJ_SLOW_SECONDS inside one atomic migration.

On PostgreSQL the time is spent in a real ``pg_sleep`` statement, on MySQL/MariaDB in a real
``SELECT SLEEP``, so a cancelled or killed run shows a statement in flight on the server.
"""

import os
import time

from django.db import migrations


def sleep(apps, schema_editor):
    seconds = float(os.environ.get("TESTPROJ_SLOW_SECONDS", "0"))
    if seconds <= 0:
        return
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(%s)", [seconds])
    elif connection.vendor == "mysql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT SLEEP(%s)", [seconds])
    else:
        time.sleep(seconds)


class Migration(migrations.Migration):
    atomic = True

    dependencies = [("inventory", "0002_seed_products")]

    operations = [migrations.RunPython(sleep, migrations.RunPython.noop)]
