"""``python -m entrypoint``: the same as the ``django-entrypoint`` console script."""

from entrypoint.cli import console

console()
