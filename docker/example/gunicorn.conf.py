"""gunicorn settings of the example image, each overridable from the environment.

``PORT`` (default 8000) and ``HOST`` (default 0.0.0.0) make the bind address, ``WEB_CONCURRENCY``
the number of workers (default 2), ``GRACEFUL_TIMEOUT`` how long SIGTERM waits for requests in
flight (default 25 s: below Kubernetes' 30 s terminationGracePeriodSeconds and compose's
stop_grace_period here, so gunicorn exits 0 before anything sends SIGKILL).
"""

import os

bind = [f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "25"))
# The worker heartbeat file lives in memory: it works on a read-only root filesystem and never
# stalls on a slow disk.
worker_tmp_dir = "/dev/shm"  # noqa: S108 - a tmpfs private to the container
accesslog = "-"
errorlog = "-"
