from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("heavy", "0008_item_owner")]

    operations = [
        migrations.AlterField("item", "price", models.DecimalField(decimal_places=2, max_digits=10)),
    ]
