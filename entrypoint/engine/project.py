"""The project behind a run: its settings imported and Django set up, and Django's connections
closed again before an exec or exit.
"""

from __future__ import annotations

import os
import sys

from entrypoint.db.reasons import first_line
from entrypoint.db.targets import missing_driver
from entrypoint.errors import ConfigError
from entrypoint.log import get_logger, route_driver_logs


def setup_django(settings_module: str | None) -> None:
    """Import the project's settings and set Django up, or raise ConfigError saying why not."""
    if not settings_module:
        msg = (
            "DJANGO_SETTINGS_MODULE is not set; set it (or pass --settings) to the project's "
            "settings module, e.g. mysite.settings"
        )
        raise ConfigError(msg)
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    # Like ``python manage.py``, the working directory is the project directory.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    import importlib

    try:
        importlib.import_module(settings_module)
    except ModuleNotFoundError as exc:
        msg = (
            f"DJANGO_SETTINGS_MODULE={settings_module!r} cannot be imported: {exc}; run from the "
            "project directory or put it on PYTHONPATH, and check the module name"
        )
        raise ConfigError(msg) from exc
    except Exception as exc:
        msg = (
            f"DJANGO_SETTINGS_MODULE={settings_module!r} failed to import: "
            f"{type(exc).__name__}: {first_line(exc)}"
        )
        raise ConfigError(msg) from exc
    import django

    route_driver_logs()
    try:
        django.setup()
    except Exception as exc:
        msg = missing_driver(exc) or (
            f"Django could not start with settings {settings_module!r}: "
            f"{type(exc).__name__}: {first_line(exc)}"
        )
        raise ConfigError(msg) from exc


def close_connections() -> None:
    """Close every Django connection (before an exec or exit)."""
    if "django.db" not in sys.modules:
        return  # never imported (the fast path, or an early error): nothing to close
    try:
        from django.db import connections

        connections.close_all()
    except Exception as exc:  # closing must not hide the outcome of the run
        get_logger().debug("close_failed", error=type(exc).__name__)
