"""An entry changed on two branches that were merged without a merge migration."""

from django.db import models


class Entry(models.Model):
    """A line in a log."""

    title = models.CharField(max_length=50)
    left = models.TextField(null=True)
    right = models.TextField(null=True)
