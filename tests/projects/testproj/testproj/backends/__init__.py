"""Database backends used only by the tests."""
