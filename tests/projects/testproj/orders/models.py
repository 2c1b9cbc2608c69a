"""Models of the orders app."""

from django.db import models


class Order(models.Model):
    """A quantity of one product."""

    product = models.ForeignKey("inventory.Product", on_delete=models.CASCADE)
    quantity = models.PositiveIntegerField(default=1)
    created = models.DateTimeField(auto_now_add=True)
    note = models.TextField(null=True)

    class Meta:
        # Created by the non-atomic migration 0002 (CONCURRENTLY on PostgreSQL).
        indexes = [models.Index(fields=["created"], name="orders_order_created_idx")]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_id}"
