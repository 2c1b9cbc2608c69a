"""A data migration held until after the deploy by a django-syzygy mark.

django-syzygy is not installed here: this Enum stands in for its ``Stage``, with the same
member names and values.
"""

import enum

from django.db import migrations


class Stage(enum.Enum):
    PRE_DEPLOY = "pre_deploy"
    POST_DEPLOY = "post_deployment"


def clear_colours(apps, schema_editor):
    Tag = apps.get_model("marks", "Tag")
    Tag.objects.using(schema_editor.connection.alias).filter(colour="").update(colour=None)


class Migration(migrations.Migration):
    stage = Stage.POST_DEPLOY

    dependencies = [("marks", "0004_safemigrate_mark")]

    operations = [migrations.RunPython(clear_colours, migrations.RunPython.noop)]
