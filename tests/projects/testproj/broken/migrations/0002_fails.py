"""Fail on every backend: the table read here never exists."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("broken", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "SELECT * FROM entrypoint_table_that_does_not_exist",
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
