from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("heavy", "0003_name_longer")]

    operations = [
        migrations.AlterField("item", "code", models.CharField(max_length=10)),
    ]
