"""Settings of the deploy-phase test project, driven by environment variables.

``PHASEPROJ_APPS``
    Comma-separated apps to install (default ``shop``): ``shop`` (add a nullable field, then
    drop a column), ``marks`` (migrations marked in each supported way), ``tangle`` (a
    pre-deploy migration after a post-deploy one it depends on), ``chores`` (an unmarked
    RunPython), ``drift`` (a model changed without a migration), ``forked`` (two leaf nodes),
    ``heavy`` (a filled table changed one operation per migration, for the lock notes),
    ``polyglot`` (a translated verbose name), ``quietmm`` (the project's own makemigrations,
    which leaves ``drift`` out with ``PHASEPROJ_IGNORE_DRIFT=1``).
``PHASEPROJ_LANGUAGE``
    ``LANGUAGE_CODE`` (default ``en-us``).
``PHASEPROJ_PHASES``
    A JSON value used verbatim as ``ENTRYPOINT_MIGRATION_PHASES`` (unset by default).
``PHASEPROJ_MIGRATION_MODULES``
    A JSON object used verbatim as ``MIGRATION_MODULES`` (unset by default).
``PHASEPROJ_DATABASES``
    A JSON object used verbatim as ``DATABASES``.
``PHASEPROJ_DIR``
    Directory of the SQLite file ``db.sqlite3`` used when ``PHASEPROJ_DATABASES`` is unset.
"""

import json
import os
from pathlib import Path

SECRET_KEY = "phaseproj-not-a-secret"
INSTALLED_APPS = [
    app.strip() for app in os.environ.get("PHASEPROJ_APPS", "shop").split(",") if app.strip()
]

if "PHASEPROJ_DATABASES" in os.environ:
    DATABASES = json.loads(os.environ["PHASEPROJ_DATABASES"])
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": Path(os.environ["PHASEPROJ_DIR"]) / "db.sqlite3",
        }
    }

USE_TZ = True
USE_I18N = True
LANGUAGE_CODE = os.environ.get("PHASEPROJ_LANGUAGE", "en-us")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
if "PHASEPROJ_PHASES" in os.environ:
    ENTRYPOINT_MIGRATION_PHASES = json.loads(os.environ["PHASEPROJ_PHASES"])
if "PHASEPROJ_MIGRATION_MODULES" in os.environ:
    MIGRATION_MODULES = json.loads(os.environ["PHASEPROJ_MIGRATION_MODULES"])
