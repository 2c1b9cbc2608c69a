"""A model whose verbose name is translated: a change only while a translation is active."""
