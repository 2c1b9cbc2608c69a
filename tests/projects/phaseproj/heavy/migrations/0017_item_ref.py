from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("heavy", "0016_owner_not_indexed")]

    operations = [
        migrations.AddField("item", "ref", models.CharField(max_length=20, null=True, unique=True)),
    ]
