"""Health endpoints: the run's state (:mod:`.state`), the metrics (:mod:`.metrics`), the pure
WSGI app (:mod:`.app`), the server child that outlives the exec (:mod:`.server`), the handle the
entrypoint feeds it through (:mod:`.process`), and the probe client (:mod:`.probe`).

Nothing is imported here: the health child imports this package and stays small for the life
of the container.
"""
