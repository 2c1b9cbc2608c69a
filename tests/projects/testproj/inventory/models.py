"""Models of the inventory app."""

from django.db import models


class Product(models.Model):
    """Something that can be ordered."""

    name = models.CharField(max_length=100)
    created = models.DateTimeField(auto_now_add=True)
    sku = models.CharField(max_length=32, null=True)

    def __str__(self) -> str:
        return self.name


class Warehouse(models.Model):
    """A place where products are kept."""

    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.name
