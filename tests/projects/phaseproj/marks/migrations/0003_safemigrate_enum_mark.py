"""A data migration marked the way django-safemigrate 2.x and 3.x did: an Enum member.

django-safemigrate is not installed here: this Enum stands in for its ``Safe`` of those
releases, with the same member names and values.
"""

import enum

from django.db import migrations


class Safe(enum.Enum):
    before_deploy = "before_deploy"
    after_deploy = "after_deploy"
    always = "always"


def lower_names(apps, schema_editor):
    Tag = apps.get_model("marks", "Tag")
    for tag in Tag.objects.using(schema_editor.connection.alias).all():
        tag.name = tag.name.lower()
        tag.save(update_fields=["name"])


class Migration(migrations.Migration):
    safe = Safe.before_deploy

    dependencies = [("marks", "0002_entrypoint_mark")]

    operations = [migrations.RunPython(lower_names, migrations.RunPython.noop)]
