from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("heavy", "0019_code_idx_concurrently")]
    operations = [
        migrations.RunSQL(
            "ALTER TABLE heavy_item DROP COLUMN code",
            migrations.RunSQL.noop,
            state_operations=[migrations.RemoveField("item", "code")],
        ),
    ]
