"""An app with no migrations module at all."""
