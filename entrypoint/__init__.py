"""django-entrypoint: migrate a Django project safely as a step of the container's start."""

__version__ = "0.1.0"
