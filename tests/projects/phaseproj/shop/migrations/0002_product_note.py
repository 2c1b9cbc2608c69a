"""Expand: a nullable column, harmless to the code that runs before the deploy."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]

    operations = [migrations.AddField("product", "note", models.TextField(null=True))]
