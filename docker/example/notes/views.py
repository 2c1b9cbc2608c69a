"""Views of the notes app."""

from django.http import HttpRequest, HttpResponse

from notes.models import Note


def home(request: HttpRequest) -> HttpResponse:
    """Answer with the number of notes, so the page proves the schema is there."""
    count = Note.objects.count()
    return HttpResponse(f"notes: {count}\n", content_type="text/plain")
