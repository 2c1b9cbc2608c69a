"""An app with two leaf migrations, the case ``makemigrations --merge`` resolves."""
