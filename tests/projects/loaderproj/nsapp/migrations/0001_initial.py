"""Never loaded: a namespace package is not a migrations package to Django."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies: list[tuple[str, str]] = []
