from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    # The replaced files were deleted after every database had the squash applied.
    replaces = [("archive", "0001_initial"), ("archive", "0002_box_label")]

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Box",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("label", models.CharField(max_length=100, default="")),
            ],
        ),
    ]
