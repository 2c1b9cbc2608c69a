"""An item whose pre-deploy migration was written on top of a post-deploy one."""

from django.db import models


class Item(models.Model):
    """A thing."""

    label = models.CharField(max_length=50)
    note = models.TextField(null=True)
