from django.db import models


class Box(models.Model):
    label = models.CharField(max_length=100, default="")
    size = models.IntegerField(default=0)
