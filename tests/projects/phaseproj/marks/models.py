"""A tag whose migrations carry deploy-phase marks in each supported form."""

from django.db import models


class Tag(models.Model):
    """A label."""

    name = models.CharField(max_length=50)
    colour = models.CharField(max_length=20, null=True)
