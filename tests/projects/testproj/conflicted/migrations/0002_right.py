from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("conflicted", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="gadget",
            name="right_note",
            field=models.CharField(max_length=100, null=True),
        ),
    ]
