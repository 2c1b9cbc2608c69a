"""The no-op fast path: the manifest of the migration graph written at image build time
(:mod:`.manifest`), and the check at every start, without Django, that nothing is pending:
files (:mod:`.files`), the graph's answers (:mod:`.graph`), one query per alias
(:mod:`.probes`), all of it together (:mod:`.check`)."""
