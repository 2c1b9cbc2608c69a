"""A ForeignKey subclass, as tree packages ship one (django-mptt's TreeForeignKey): the same
column and constraint as a plain ForeignKey, only another class."""

from django.db import models


class TreeKey(models.ForeignKey):
    """A foreign key to a tree node; nothing in the database differs from ForeignKey."""
