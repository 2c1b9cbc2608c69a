from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("heavy", "0012_remove_item_extra")]

    operations = [
        migrations.AlterField("item", "name", models.CharField(max_length=40, unique=True)),
    ]
