"""Models of the notes app."""

from django.db import models


class Note(models.Model):
    """A titled piece of text."""

    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    pinned = models.BooleanField(db_default=False)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.title
