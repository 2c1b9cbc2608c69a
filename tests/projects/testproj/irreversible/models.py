"""Models of the irreversible app."""

from django.db import models


class Record(models.Model):
    """A row written by a data migration that has no reverse."""

    label = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.label
