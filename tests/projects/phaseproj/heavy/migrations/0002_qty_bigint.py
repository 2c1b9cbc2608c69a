from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("heavy", "0001_initial")]

    operations = [
        migrations.AlterField("item", "qty", models.BigIntegerField()),
    ]
