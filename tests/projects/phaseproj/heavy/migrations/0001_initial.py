from django.db import migrations, models

ROWS = 300


def fill(apps, schema_editor):
    Item = apps.get_model("heavy", "Item")
    Item.objects.bulk_create(
        Item(name=f"item-{n}", code="c", qty=n, price=1, note="n") for n in range(ROWS)
    )


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Owner",
            fields=[("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"))],
        ),
        migrations.CreateModel(
            name="Item",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=20)),
                ("code", models.CharField(max_length=10, null=True)),
                ("qty", models.IntegerField()),
                ("price", models.DecimalField(decimal_places=2, max_digits=8)),
                ("note", models.CharField(max_length=100)),
            ],
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
