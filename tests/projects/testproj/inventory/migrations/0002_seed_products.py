from django.db import migrations

SEED_NAMES = ["anvil", "bellows", "crucible"]


def add_products(apps, schema_editor):
    Product = apps.get_model("inventory", "Product")
    db = schema_editor.connection.alias
    Product.objects.using(db).bulk_create(Product(name=name) for name in SEED_NAMES)


def remove_products(apps, schema_editor):
    Product = apps.get_model("inventory", "Product")
    db = schema_editor.connection.alias
    Product.objects.using(db).filter(name__in=SEED_NAMES).delete()


class Migration(migrations.Migration):
    dependencies = [("inventory", "0001_initial")]

    operations = [migrations.RunPython(add_products, remove_products)]
