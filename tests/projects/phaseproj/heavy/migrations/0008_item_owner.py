from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("heavy", "0007_price_positive")]

    operations = [
        migrations.AddField("item", "owner", models.ForeignKey(null=True, on_delete=models.SET_NULL, to="heavy.owner")),
    ]
