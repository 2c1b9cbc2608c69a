"""An app whose second migration fails on every backend."""
