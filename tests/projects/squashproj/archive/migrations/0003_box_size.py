from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("archive", "0001_squashed_0002_box_label")]

    operations = [
        migrations.AddField("box", "size", models.IntegerField(default=0)),
    ]
