from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("heavy", "0015_qty_price_uniq")]

    operations = [
        migrations.AlterField(
            "item",
            "owner",
            models.ForeignKey(db_index=False, null=True, on_delete=models.SET_NULL, to="heavy.owner"),
        ),
    ]
