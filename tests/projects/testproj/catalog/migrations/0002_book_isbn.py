from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="book",
            name="isbn",
            field=models.CharField(max_length=13, null=True),
        ),
    ]
