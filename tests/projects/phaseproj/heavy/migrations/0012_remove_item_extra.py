from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("heavy", "0011_item_extra")]

    operations = [
        migrations.RemoveField("item", "extra"),
    ]
