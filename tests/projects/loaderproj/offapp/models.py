"""An app whose migrations MIGRATION_MODULES turns off (None)."""

from django.db import models


class Switch(models.Model):
    """A model whose table no migration of this project creates."""

    name = models.CharField(max_length=20)
