"""A backend the entrypoint has no lock for: SQLite under another vendor name."""
