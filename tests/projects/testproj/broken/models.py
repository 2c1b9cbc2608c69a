"""Models of the broken app."""

from django.db import models


class Thing(models.Model):
    """A table created before the failing migration."""

    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.name
