"""A data migration marked with django-entrypoint's own attribute."""

from django.db import migrations


def strip_names(apps, schema_editor):
    Tag = apps.get_model("marks", "Tag")
    for tag in Tag.objects.using(schema_editor.connection.alias).all():
        tag.name = tag.name.strip()
        tag.save(update_fields=["name"])


class Migration(migrations.Migration):
    entrypoint_phase = "pre-deploy"

    dependencies = [("marks", "0001_initial")]

    operations = [migrations.RunPython(strip_names, migrations.RunPython.noop)]
