"""Not a migrations package: a plain module of the app that happens to be named migrations
(django-prometheus ships one of its metrics under this name)."""

MIGRATIONS_SEEN = 0
