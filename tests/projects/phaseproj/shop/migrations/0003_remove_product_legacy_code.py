"""Contract: the old code still reads legacy_code, so this waits until it is gone."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("shop", "0002_product_note")]

    operations = [migrations.RemoveField("product", "legacy_code")]
