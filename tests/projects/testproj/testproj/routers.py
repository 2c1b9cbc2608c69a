"""Database routing of the test project: ``analytics`` on ``other``, the rest on ``default``."""

from typing import Any

from django.db.models import Model

ANALYTICS_APP = "analytics"
ANALYTICS_ALIAS = "other"


class AnalyticsRouter:
    """Send the ``analytics`` app to the ``other`` alias and every other app to ``default``."""

    def _alias_for(self, app_label: str) -> str:
        return ANALYTICS_ALIAS if app_label == ANALYTICS_APP else "default"

    def db_for_read(self, model: type[Model], **hints: Any) -> str:
        """Read a model from the alias its app lives on."""
        return self._alias_for(model._meta.app_label)

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        """Write a model to the alias its app lives on."""
        return self._alias_for(model._meta.app_label)

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        """Allow relations only between models that live on the same alias."""
        return self._alias_for(obj1._meta.app_label) == self._alias_for(obj2._meta.app_label)

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        """Migrate each app on its own alias and nowhere else."""
        return db == self._alias_for(app_label)
