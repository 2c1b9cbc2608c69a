"""An app that overrides the makemigrations command, as some projects do."""
