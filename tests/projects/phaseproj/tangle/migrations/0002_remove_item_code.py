from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("tangle", "0001_initial")]

    operations = [migrations.RemoveField("item", "code")]
