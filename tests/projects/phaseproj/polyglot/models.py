"""A flag labelled with a string Django's own catalogues translate ("Yes" is "Ja" in German)."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class Answer(models.Model):
    """An answer to a yes/no question."""

    agreed = models.BooleanField(default=False, verbose_name=_("Yes"))
