from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("inventory", "0003_slow")]

    operations = [
        migrations.CreateModel(
            name="Warehouse",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=100)),
            ],
        ),
        migrations.AddField(
            model_name="product",
            name="sku",
            field=models.CharField(max_length=32, null=True),
        ),
    ]
