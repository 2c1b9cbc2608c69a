from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shelf", "0001_initial")]

    operations = [
        migrations.AddField("shelf", "rank", models.IntegerField(default=0)),
    ]
