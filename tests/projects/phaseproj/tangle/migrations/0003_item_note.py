"""Pre-deploy on its own, but it depends on the post-deploy 0002: the plan cannot be split."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tangle", "0002_remove_item_code")]

    operations = [migrations.AddField("item", "note", models.TextField(null=True))]
