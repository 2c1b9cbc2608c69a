"""Models of the analytics app."""

from django.db import models


class Event(models.Model):
    """Something that happened."""

    name = models.CharField(max_length=100)
    created = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=100, null=True)

    def __str__(self) -> str:
        return self.name
