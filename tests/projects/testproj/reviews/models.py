"""Models of the reviews app."""

from django.db import models


class Review(models.Model):
    """A review of a catalog book."""

    book = models.ForeignKey("catalog.Book", on_delete=models.CASCADE)
    stars = models.PositiveSmallIntegerField(default=3)

    def __str__(self) -> str:
        return f"{self.stars} stars"
