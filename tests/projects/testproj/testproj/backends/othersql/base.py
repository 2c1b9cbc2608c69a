"""SQLite's backend reporting the vendor ``othersql``, standing in for any third-party backend."""

from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteDatabaseWrapper


class DatabaseWrapper(SQLiteDatabaseWrapper):
    """Behaves as SQLite, but is not one of the backends with a migration lock."""

    vendor = "othersql"
    display_name = "OtherSQL"
