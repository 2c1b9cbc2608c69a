"""A small Django project whose migrations exercise the entrypoint in tests."""
