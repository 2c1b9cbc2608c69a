"""An app that lives only on the database alias ``other``."""
