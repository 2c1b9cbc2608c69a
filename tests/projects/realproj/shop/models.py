"""A local app whose migrations depend on installed packages' ones."""

from django.conf import settings
from django.db import models
from mptt.models import MPTTModel, TreeForeignKey
from simple_history.models import HistoricalRecords
from taggit.managers import TaggableManager


class Category(MPTTModel):
    """A tree of categories (django-mptt)."""

    name = models.CharField(max_length=50)
    parent = TreeForeignKey("self", null=True, blank=True, on_delete=models.CASCADE)


class Product(models.Model):
    """A product with tags (django-taggit), history (django-simple-history) and an owner."""

    name = models.CharField(max_length=100)
    category = models.ForeignKey(Category, null=True, on_delete=models.SET_NULL)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    tags = TaggableManager(blank=True)
    history = HistoricalRecords()
