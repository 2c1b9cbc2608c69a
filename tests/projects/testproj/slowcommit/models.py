"""A PostgreSQL-only app whose second migration spends its time in COMMIT (see migrations)."""
