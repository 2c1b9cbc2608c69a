"""An app with no models and no migrations."""
