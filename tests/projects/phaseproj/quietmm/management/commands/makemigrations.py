"""The project's own makemigrations: with PHASEPROJ_IGNORE_DRIFT=1 it leaves the drift app out."""

import os
from typing import Any

from django.apps import apps
from django.core.management.commands.makemigrations import Command as Base


class Command(Base):
    """Django's makemigrations, skipping the drift app when asked to."""

    def handle(self, *app_labels: str, **options: Any) -> None:
        """Detect changes in every app but drift (PHASEPROJ_IGNORE_DRIFT=1), or as Django does."""
        if not app_labels and os.environ.get("PHASEPROJ_IGNORE_DRIFT") == "1":
            app_labels = tuple(
                config.label for config in apps.get_app_configs() if config.label != "drift"
            )
        super().handle(*app_labels, **options)
