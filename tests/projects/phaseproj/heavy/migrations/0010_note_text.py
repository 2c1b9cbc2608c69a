from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("heavy", "0009_price_wider")]

    operations = [
        migrations.AlterField("item", "note", models.TextField()),
    ]
