"""A job list filled by a data migration that carries no deploy-phase mark."""

from django.db import models


class Job(models.Model):
    """Something to do."""

    name = models.CharField(max_length=50)
