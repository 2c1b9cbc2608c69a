from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [("ledger", "0002_account_note")]

    operations = [
        migrations.CreateModel(
            name="Shelf",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("title", models.CharField(max_length=100)),
            ],
        ),
    ]
