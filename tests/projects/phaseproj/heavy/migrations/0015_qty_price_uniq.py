from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("heavy", "0014_name_longest")]

    operations = [
        migrations.AddConstraint("item", models.UniqueConstraint(fields=["qty", "price"], name="heavy_qty_price_uniq")),
    ]
