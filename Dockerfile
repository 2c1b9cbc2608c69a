# The example site behind django-entrypoint, served by gunicorn.
#
#   docker build -t example .
#   docker run --rm -p 8000:8000 -p 8081:8081 -e DATABASE_URL=postgres://... example
#
# For your own project keep the shape: install django-entrypoint next to your requirements,
# copy your code, set DJANGO_SETTINGS_MODULE, and keep ENTRYPOINT, CMD and HEALTHCHECK as here.
#
# Offline builds (no package index reachable from the build): put every wheel the build needs,
# for the base image's Python, in docker/wheelhouse/ and pass PIP_NO_INDEX=1 (docs/deploy.md
# shows the pip download command). An empty wheelhouse costs nothing: pip then uses the index.
#
# BASE_IMAGE must provide python3 with the venv module (official python images do, as does the
# Debian image docker/build-base-image.sh makes without a registry).
ARG BASE_IMAGE=python:3.12-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ARG PIP_NO_INDEX
ARG GUNICORN="gunicorn>=23"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_FIND_LINKS=/wheelhouse \
    PYTHONDONTWRITEBYTECODE=1
COPY docker/wheelhouse/ /wheelhouse/
WORKDIR /src
COPY pyproject.toml README.md ./
COPY entrypoint/ entrypoint/
# Wheels first (the project's own is built here from source), then a venv installed from them
# alone: the runtime stage copies the venv and never sees a compiler, pip cache or source tree.
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip wheel --wheel-dir /wheels . "${GUNICORN}" \
    && /opt/venv/bin/pip install --no-index --find-links /wheels django-entrypoint "${GUNICORN}" \
    && /opt/venv/bin/django-entrypoint --version

FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=example.settings \
    EXAMPLE_SQLITE_PATH=/tmp/example.sqlite3 \
    ENTRYPOINT_HEALTH_PORT=8081 \
    ENTRYPOINT_LOG_FORMAT=json \
    ENTRYPOINT_MANIFEST=/app/migrations.manifest.json
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY docker/example/ ./
# Bytecode is compiled now, owned by root: the app user cannot change the code, and a
# read-only root filesystem (readOnlyRootFilesystem, docker run --read-only) costs nothing.
# freeze writes the migration manifest (no database needed): a start with nothing to migrate
# then execs the app server without setting Django up.
RUN python3 -m compileall -q /app && django-entrypoint freeze
USER 10001:10001
EXPOSE 8000 8081
# 503 until migrations are done, then 200 for the life of the container; no curl needed. The
# start period covers the longest expected migration plus the lock wait (see docs/deploy.md).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10m --retries=3 \
    CMD ["django-entrypoint", "probe"]
# Exec form: django-entrypoint is PID 1 while it waits and migrates, then execs the CMD, which
# becomes PID 1 itself and receives docker stop's SIGTERM directly.
ENTRYPOINT ["django-entrypoint", "run", "--"]
CMD ["gunicorn", "--config", "/app/gunicorn.conf.py", "example.wsgi"]
