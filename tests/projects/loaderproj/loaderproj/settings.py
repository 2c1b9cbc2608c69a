"""Settings of the loader test project: one app of each kind Django's migration loader tells
apart, for the fast path to treat each exactly as the loader does.

``keeper`` has a migrations package; ``plainmod`` has ``migrations.py``, a plain module (no
``__path__``, as django-prometheus ships one), which leaves the app without migrations;
``nsapp`` has a ``migrations`` directory without ``__init__.py`` (a namespace package, skipped
although a migration file sits in it); ``offapp`` has migrations that ``MIGRATION_MODULES``
turns off; ``bare`` has no migrations module at all.

``LOADERPROJ_DATABASES``
    A JSON object used verbatim as ``DATABASES``.
``LOADERPROJ_MIGRATION_MODULES``
    A JSON object used as ``MIGRATION_MODULES`` (default: ``{"offapp": null}``).
``LOADERPROJ_ITEM_MODEL``
    ``KEEPER_ITEM_MODEL``, the swappable setting of ``keeper.Item`` (default ``keeper.Item``).
``LOADERPROJ_EXTRA_APPS``
    Apps added to ``INSTALLED_APPS``, comma-separated.
"""

import json
import os

SECRET_KEY = "loaderproj-not-a-secret"
DEBUG = False
ALLOWED_HOSTS: list[str] = []

INSTALLED_APPS = ["keeper", "plainmod", "nsapp", "offapp", "bare"]
INSTALLED_APPS += [a for a in os.environ.get("LOADERPROJ_EXTRA_APPS", "").split(",") if a]
KEEPER_ITEM_MODEL = os.environ.get("LOADERPROJ_ITEM_MODEL", "keeper.Item")

DATABASES = json.loads(os.environ["LOADERPROJ_DATABASES"])
MIGRATION_MODULES = json.loads(os.environ.get("LOADERPROJ_MIGRATION_MODULES", '{"offapp": null}'))

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
