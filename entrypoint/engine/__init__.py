"""Django's migration machinery, through its public APIs: the graph (plan, conflicts, history,
squashes), applying and unapplying with progress events, DDL failures and retries, the session
of the migration connection, and the read-only problems ``check`` reports."""
