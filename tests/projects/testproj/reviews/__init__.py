"""An app whose first migration depends on catalog's latest one (rollback tests)."""
