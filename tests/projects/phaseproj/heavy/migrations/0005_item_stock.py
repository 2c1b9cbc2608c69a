from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("heavy", "0004_code_not_null")]

    operations = [
        migrations.AddField("item", "stock", models.PositiveIntegerField(default=0)),
    ]
