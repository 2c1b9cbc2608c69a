"""Settings of the test project, driven by environment variables.

``TESTPROJ_DATABASES``
    A JSON object used verbatim as ``DATABASES`` (any aliases, engines and OPTIONS).
``TESTPROJ_DIR``
    Directory of the SQLite file ``db.sqlite3`` used when ``TESTPROJ_DATABASES`` is unset;
    defaults to the project directory.
``TESTPROJ_EXTRA_APPS``
    Comma-separated apps switched on in addition to ``inventory`` and ``orders``:
    ``broken``, ``conflicted``, ``analytics``, ``irreversible``, ``catalog``, ``reviews``,
    ``halfway``, ``slowcommit`` (PostgreSQL only).
``TESTPROJ_SLOW_SECONDS``
    How long the migration ``inventory.0003_slow`` takes (read by the migration itself).
``TESTPROJ_COMMIT_SECONDS``
    How long the COMMIT of ``slowcommit.0002_commit_slowly`` takes (a deferred trigger sleeps).
``TESTPROJ_HALFWAY_FAIL``
    ``1`` makes ``halfway.0002_colour`` fail after it added its column.
``TESTPROJ_POST_MIGRATE_MARK``
    A file that inventory's post_migrate receiver writes before it sleeps for a minute (between
    inventory's content types and permissions and those of orders).
"""

import json
import os
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "testproj-not-a-secret"
DEBUG = False
ALLOWED_HOSTS: list[str] = []

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "inventory",
    "orders",
    *(app.strip() for app in os.environ.get("TESTPROJ_EXTRA_APPS", "").split(",") if app.strip()),
]

if "TESTPROJ_DATABASES" in os.environ:
    DATABASES = json.loads(os.environ["TESTPROJ_DATABASES"])
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": Path(os.environ.get("TESTPROJ_DIR", PROJECT_DIR)) / "db.sqlite3",
        }
    }

DATABASE_ROUTERS = ["testproj.routers.AnalyticsRouter"]

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
