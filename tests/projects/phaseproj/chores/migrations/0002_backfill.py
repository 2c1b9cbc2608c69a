"""An unmarked data migration with no reverse code."""

from django.db import migrations


def backfill(apps, schema_editor):
    Job = apps.get_model("chores", "Job")
    Job.objects.using(schema_editor.connection.alias).get_or_create(name="first job")


class Migration(migrations.Migration):
    dependencies = [("chores", "0001_initial")]

    operations = [migrations.RunPython(backfill)]
