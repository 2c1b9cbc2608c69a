"""A product whose legacy code column is dropped once the new code is live."""

from django.db import models


class Product(models.Model):
    """Something for sale."""

    name = models.CharField(max_length=100)
    note = models.TextField(null=True)
