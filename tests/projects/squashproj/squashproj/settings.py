"""Settings of the squash test project: a graph with squashed migrations for the fast path.

``ledger`` has three migrations squashed into ``0001_squashed_0003_account_flag``, all still on
disk, and a later one; ``archive`` keeps only its squash (the replaced files are gone) and a later
one; ``shelf`` depends on a replaced node of ``ledger``.

``SQUASHPROJ_DATABASES``
    A JSON object used verbatim as ``DATABASES``.
``SQUASHPROJ_DIR``
    Directory of the SQLite file ``db.sqlite3`` used when ``SQUASHPROJ_DATABASES`` is unset.
"""

import json
import os
from pathlib import Path

SECRET_KEY = "squashproj-not-a-secret"
DEBUG = False
ALLOWED_HOSTS: list[str] = []

INSTALLED_APPS = ["ledger", "archive", "shelf"]

if "SQUASHPROJ_DATABASES" in os.environ:
    DATABASES = json.loads(os.environ["SQUASHPROJ_DATABASES"])
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(Path(os.environ.get("SQUASHPROJ_DIR", ".")) / "db.sqlite3"),
        }
    }

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
