"""The inventory app; its post_migrate receiver can linger, for tests that stop a run there."""

import os
import time
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def linger(sender: AppConfig, **kwargs: Any) -> None:
    """With TESTPROJ_POST_MIGRATE_MARK set: write that file, then sleep a long time.

    Runs after the content types and permissions of inventory are made and before those of the
    apps after it in INSTALLED_APPS (orders), so a run stopped here leaves orders without them.
    """
    mark = os.environ.get("TESTPROJ_POST_MIGRATE_MARK")
    if not mark:
        return
    Path(mark).write_text("post_migrate")
    time.sleep(60)


class InventoryConfig(AppConfig):
    """Connects :func:`linger` to inventory's post_migrate."""

    name = "inventory"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Connect the receiver (after contenttypes' and auth's, which come first)."""
        post_migrate.connect(linger, sender=self)
