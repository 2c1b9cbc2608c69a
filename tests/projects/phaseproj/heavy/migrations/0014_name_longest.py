from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("heavy", "0013_name_unique")]

    operations = [
        migrations.AlterField("item", "name", models.CharField(max_length=100, unique=True)),
    ]
