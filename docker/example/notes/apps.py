"""App configuration of the notes app."""

from django.apps import AppConfig


class NotesConfig(AppConfig):
    """The notes app."""

    name = "notes"
