"""Add an index without a transaction, CONCURRENTLY on PostgreSQL.

The state learns the index through AddIndex; the database work is raw SQL so that PostgreSQL gets
``CREATE INDEX CONCURRENTLY`` (which refuses to run inside a transaction) and an interrupted run
can leave an invalid index behind, exactly as AddIndexConcurrently would.
"""

from django.db import migrations, models

INDEX_NAME = "orders_order_created_idx"


def create_index(apps, schema_editor):
    quote = schema_editor.quote_name
    table = apps.get_model("orders", "Order")._meta.db_table
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(
        f"CREATE INDEX{concurrently} {quote(INDEX_NAME)} ON {quote(table)} ({quote('created')})"
    )


def drop_index(apps, schema_editor):
    quote = schema_editor.quote_name
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(INDEX_NAME)}")
    elif vendor == "mysql":
        table = apps.get_model("orders", "Order")._meta.db_table
        schema_editor.execute(f"DROP INDEX {quote(INDEX_NAME)} ON {quote(table)}")
    else:
        schema_editor.execute(f"DROP INDEX IF EXISTS {quote(INDEX_NAME)}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("orders", "0001_initial")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name="order",
                    index=models.Index(fields=["created"], name=INDEX_NAME),
                ),
            ],
            database_operations=[migrations.RunPython(create_index, drop_index)],
        ),
    ]
