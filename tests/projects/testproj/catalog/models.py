"""Models of the catalog app."""

from django.db import models


class Book(models.Model):
    """A book, later given an ISBN."""

    title = models.CharField(max_length=100)
    isbn = models.CharField(max_length=13, null=True)

    def __str__(self) -> str:
        return self.title
