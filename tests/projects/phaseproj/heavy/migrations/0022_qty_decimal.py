from django.db import migrations

import heavy.operations


class Migration(migrations.Migration):
    dependencies = [("heavy", "0021_touch_trigger")]
    operations = [heavy.operations.WidenQuantity()]
