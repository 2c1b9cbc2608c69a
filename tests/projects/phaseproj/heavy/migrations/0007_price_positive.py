from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("heavy", "0006_item_qty_idx")]

    operations = [
        migrations.AddConstraint("item", models.CheckConstraint(condition=models.Q(price__gte=0), name="heavy_price_positive")),
    ]
