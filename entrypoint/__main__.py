"""``python -m entrypoint``: the same as the ``django-entrypoint`` console script."""

from entrypoint.cli import main

raise SystemExit(main())
