"""Admin registration of the notes app."""

from django.contrib import admin

from notes.models import Note


@admin.register(Note)
class NoteAdmin(admin.ModelAdmin):
    """List notes with their pin and creation time."""

    list_display = ["title", "pinned", "created"]
    list_filter = ["pinned"]
