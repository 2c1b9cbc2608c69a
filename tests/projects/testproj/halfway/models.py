"""Models of the halfway app: a migration that fails after changing the schema."""

from django.db import models


class Gadget(models.Model):
    """A table whose second migration adds a column, then may fail."""

    name = models.CharField(max_length=100)
    colour = models.CharField(max_length=20, default="")

    def __str__(self) -> str:
        return self.name
