from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]

    operations = [
        migrations.AddField("account", "note", models.CharField(max_length=100, default="")),
    ]
