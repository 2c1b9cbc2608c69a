from django.db import connection, migrations

if connection.vendor == "postgresql":
    CREATE = "CREATE INDEX CONCURRENTLY heavy_item_code_idx ON heavy_item (code)"
    DROP = "DROP INDEX CONCURRENTLY heavy_item_code_idx"
else:
    CREATE = "CREATE INDEX heavy_item_code_idx ON heavy_item (code)"
    DROP = "DROP INDEX heavy_item_code_idx ON heavy_item"


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("heavy", "0018_owner_tree_key")]
    operations = [migrations.RunSQL(CREATE, DROP)]
