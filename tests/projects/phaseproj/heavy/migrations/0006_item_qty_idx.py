from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("heavy", "0005_item_stock")]

    operations = [
        migrations.AddIndex("item", models.Index(fields=["qty"], name="heavy_item_qty_idx")),
    ]
