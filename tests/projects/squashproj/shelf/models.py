from django.db import models


class Shelf(models.Model):
    title = models.CharField(max_length=100)
    rank = models.IntegerField(default=0)
