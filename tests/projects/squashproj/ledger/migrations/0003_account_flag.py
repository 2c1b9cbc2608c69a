from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ledger", "0002_account_note")]

    operations = [
        migrations.AddField("account", "flag", models.BooleanField(default=False)),
    ]
