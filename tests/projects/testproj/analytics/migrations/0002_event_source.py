from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("analytics", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="event",
            name="source",
            field=models.CharField(max_length=100, null=True),
        ),
    ]
