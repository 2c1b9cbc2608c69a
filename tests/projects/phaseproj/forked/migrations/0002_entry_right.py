from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("forked", "0001_initial")]

    operations = [migrations.AddField("entry", "right", models.TextField(null=True))]
