"""An item table that every later migration changes in one way."""

from django.db import models


class Owner(models.Model):
    """What an item's foreign key points at."""


class Item(models.Model):
    """A row of the table the lock notes are measured on (its code column is dropped by RunSQL,
    and a migration of the project's own turns qty into a decimal in SQL only)."""

    name = models.CharField(max_length=100, unique=True)
    qty = models.BigIntegerField()
    price = models.DecimalField(max_digits=10, decimal_places=2)
    note = models.TextField()
    stock = models.PositiveIntegerField(default=0)
    # Once a relation to Owner (a TreeKey, see 0018), now a plain column (0023).
    owner = models.CharField(max_length=20, null=True)
    ref = models.CharField(max_length=20, null=True, unique=True)

    class Meta:
        indexes = [models.Index(fields=["qty"], name="heavy_item_qty_idx")]
        constraints = [
            models.CheckConstraint(condition=models.Q(price__gte=0), name="heavy_price_positive"),
            models.UniqueConstraint(fields=["qty", "price"], name="heavy_qty_price_uniq"),
        ]
