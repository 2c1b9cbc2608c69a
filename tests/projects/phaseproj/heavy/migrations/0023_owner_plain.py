from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("heavy", "0022_qty_decimal")]
    operations = [
        # A relation turned into a plain column: Django renames owner_id to owner first, then
        # changes its type from integer to varchar.
        migrations.AlterField("item", "owner", models.CharField(max_length=20, null=True)),
    ]
