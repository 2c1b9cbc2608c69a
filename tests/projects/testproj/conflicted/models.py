"""Models of the conflicted app; each nullable field comes from a different leaf migration."""

from django.db import models


class Gadget(models.Model):
    """A model changed on two branches at once."""

    name = models.CharField(max_length=100)
    left_note = models.CharField(max_length=100, null=True)
    right_note = models.CharField(max_length=100, null=True)

    def __str__(self) -> str:
        return self.name
