"""A nullable column, held until after the deploy by a django-safemigrate 4.x mark.

django-safemigrate is not installed here: ``When`` and ``Safe`` stand in for its classes of
those releases (``Safe.after_deploy()`` returns an object whose ``when`` names the moment).
The mark wins over the classification, which alone would say pre-deploy.
"""

import enum
from dataclasses import dataclass

from django.db import migrations, models


class When(enum.Enum):
    ALWAYS = "always"
    BEFORE_DEPLOY = "before_deploy"
    AFTER_DEPLOY = "after_deploy"


@dataclass
class Safe:
    when: When

    @classmethod
    def after_deploy(cls):
        return cls(when=When.AFTER_DEPLOY)


class Migration(migrations.Migration):
    safe = Safe.after_deploy()

    dependencies = [("marks", "0003_safemigrate_enum_mark")]

    operations = [migrations.AddField("tag", "colour", models.CharField(max_length=20, null=True))]
