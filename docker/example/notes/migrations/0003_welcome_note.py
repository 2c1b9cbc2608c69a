"""Write a first note, so a fresh site shows something; the reverse removes it."""

from django.db import migrations

WELCOME_TITLE = "Welcome"
WELCOME_BODY = "This note was written by a data migration."


def add_welcome(apps, schema_editor):
    Note = apps.get_model("notes", "Note")
    db = schema_editor.connection.alias
    Note.objects.using(db).create(title=WELCOME_TITLE, body=WELCOME_BODY, pinned=True)


def remove_welcome(apps, schema_editor):
    Note = apps.get_model("notes", "Note")
    db = schema_editor.connection.alias
    Note.objects.using(db).filter(title=WELCOME_TITLE, body=WELCOME_BODY).delete()


class Migration(migrations.Migration):
    dependencies = [("notes", "0002_note_pinned")]

    operations = [migrations.RunPython(add_welcome, remove_welcome)]
