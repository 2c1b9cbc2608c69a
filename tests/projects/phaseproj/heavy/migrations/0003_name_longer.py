from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("heavy", "0002_qty_bigint")]

    operations = [
        migrations.AlterField("item", "name", models.CharField(max_length=40)),
    ]
