from django.conf import settings
from django.db import migrations


class Migration(migrations.Migration):
    # A swappable dependency: where it points is KEEPER_ITEM_MODEL's say.
    dependencies = [("keeper", "0001_initial"), migrations.swappable_dependency(settings.KEEPER_ITEM_MODEL)]
    operations: list[migrations.operations.base.Operation] = []
