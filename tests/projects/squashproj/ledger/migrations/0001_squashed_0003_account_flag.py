from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    replaces = [
        ("ledger", "0001_initial"),
        ("ledger", "0002_account_note"),
        ("ledger", "0003_account_flag"),
    ]

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Account",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100)),
                ("note", models.CharField(max_length=100, default="")),
                ("flag", models.BooleanField(default=False)),
            ],
        ),
    ]
