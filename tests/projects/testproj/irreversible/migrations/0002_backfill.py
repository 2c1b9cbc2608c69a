"""A data migration with no reverse code: unapplying it raises IrreversibleError."""

from django.db import migrations


def backfill(apps, schema_editor):
    Record = apps.get_model("irreversible", "Record")
    Record.objects.using(schema_editor.connection.alias).create(label="backfilled")


class Migration(migrations.Migration):
    dependencies = [("irreversible", "0001_initial")]

    operations = [migrations.RunPython(backfill)]
