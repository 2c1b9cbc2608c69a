"""The databases of a run: targets and their connection parameters, error reasons, the wait
for them to accept connections, and cancelling a statement in flight."""
