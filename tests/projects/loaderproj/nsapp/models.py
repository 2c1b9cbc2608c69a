"""No models: its migrations directory is a namespace package."""
