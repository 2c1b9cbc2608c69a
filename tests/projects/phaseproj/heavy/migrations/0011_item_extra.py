from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("heavy", "0010_note_text")]

    operations = [
        migrations.AddField("item", "extra", models.CharField(max_length=10, null=True)),
    ]
