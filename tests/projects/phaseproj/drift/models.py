"""A note whose ``pinned`` field has no migration yet."""

from django.db import models


class Note(models.Model):
    """A short text."""

    text = models.TextField()
    pinned = models.BooleanField(default=False)
