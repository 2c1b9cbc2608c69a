from django.db import migrations

import heavy.operations


class Migration(migrations.Migration):
    dependencies = [("heavy", "0020_drop_code")]
    operations = [heavy.operations.AddTouchTrigger()]
