"""An app whose data migration cannot be unapplied."""
