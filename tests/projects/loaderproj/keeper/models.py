"""An app with a migrations package; its ``Item`` is swappable (``KEEPER_ITEM_MODEL``), as
``AUTH_USER_MODEL`` makes ``auth.User``: the setting decides where a swappable dependency on it
points."""

from django.db import models


class Item(models.Model):
    """One row."""

    name = models.CharField(max_length=20)

    class Meta:
        swappable = "KEEPER_ITEM_MODEL"


class Spare(models.Model):
    """What ``KEEPER_ITEM_MODEL`` may be swapped to."""

    name = models.CharField(max_length=20)
