import django.db.models.deletion
from django.db import migrations

import heavy.fields


class Migration(migrations.Migration):
    dependencies = [("heavy", "0017_item_ref")]
    operations = [
        migrations.AlterField(
            "item",
            "owner",
            heavy.fields.TreeKey(
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                to="heavy.owner",
            ),
        ),
    ]
