from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ledger", "0003_account_flag")]

    operations = [
        migrations.CreateModel(
            name="Entry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("amount", models.IntegerField(default=0)),
                (
                    "account",
                    models.ForeignKey(on_delete=models.deletion.CASCADE, to="ledger.account"),
                ),
            ],
        ),
    ]
