#!/usr/bin/env python
"""Command-line utility for the squash test project."""

import os
import sys

from django.core.management import execute_from_command_line


def main() -> None:
    """Run a Django management command against the squash test project."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "squashproj.settings")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
