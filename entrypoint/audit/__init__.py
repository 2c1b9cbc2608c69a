"""The audit trail: one row per run in ``entrypoint_migration_run``, on the database it migrated.

The table and its dialects (:mod:`.table`), typed rows with their ``Status`` and ``Kind``
(:mod:`.rows`), reading (:mod:`.read`), recording a run as it goes (:mod:`.recording`) and the
interrupted-run gate (:mod:`.gate`). Nothing is imported here: the fast path reads the statuses
from :mod:`.rows` without the rest.
"""
