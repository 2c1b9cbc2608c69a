"""Products and warehouses: a seed data migration, a slow migration, plain schema changes."""
