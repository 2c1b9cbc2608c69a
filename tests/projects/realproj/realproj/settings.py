"""Settings of the real-apps test project: the migrations-bearing apps production Django
projects commonly install, side by side with apps that have no migrations at all, as Django's
loader tells them apart (the ``realapps`` extra installs the packages).

Besides the packages, ``shop`` is a local app whose migrations depend on several of them.
django-prometheus ships ``django_prometheus/migrations.py``, a plain module (no ``__path__``),
and django-filter, django-storages, djangorestframework itself and django-mptt have no
migrations module.

``REALPROJ_DATABASES``
    A JSON object used verbatim as ``DATABASES``.
``REALPROJ_DIR``
    Directory of the SQLite file ``db.sqlite3`` used when ``REALPROJ_DATABASES`` is unset.
``REALPROJ_USER_MODEL``
    ``AUTH_USER_MODEL``, when set (a settings change that moves the graph).
``REALPROJ_MIGRATION_MODULES``
    A JSON object used as ``MIGRATION_MODULES`` (default: none).
"""

import json
import os
from pathlib import Path

SECRET_KEY = "realproj-not-a-secret"
DEBUG = False
ALLOWED_HOSTS: list[str] = []

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "django_prometheus",
    "taggit",
    "mptt",
    "django_filters",
    "rest_framework",
    "rest_framework.authtoken",
    "storages",
    "social_django",
    "django_rq",
    "django_celery_beat",
    "django_celery_results",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "guardian",
    "simple_history",
    "reversion",
    "axes",
    "oauth2_provider",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "waffle",
    "constance",
    "shop",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if "REALPROJ_DATABASES" in os.environ:
    DATABASES = json.loads(os.environ["REALPROJ_DATABASES"])
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(Path(os.environ.get("REALPROJ_DIR", ".")) / "db.sqlite3"),
        }
    }

MIGRATION_MODULES = json.loads(os.environ.get("REALPROJ_MIGRATION_MODULES", "{}"))
if os.environ.get("REALPROJ_USER_MODEL"):
    AUTH_USER_MODEL = os.environ["REALPROJ_USER_MODEL"]

SITE_ID = 1
RQ_QUEUES = {"default": {"HOST": "127.0.0.1", "PORT": 6379, "DB": 0}}
CONSTANCE_BACKEND = "constance.backends.database.DatabaseBackend"
CONSTANCE_CONFIG = {"GREETING": ("hello", "the greeting")}
STATIC_URL = "static/"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
