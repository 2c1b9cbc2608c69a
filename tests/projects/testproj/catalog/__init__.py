"""An app of two reversible migrations that a later app builds on (rollback tests)."""
