# syntax=docker/dockerfile:1
# Amifampridine CDS Hooks service. Production builds use the official Python image; tests can build on a
# locally made base: --build-arg BASE_IMAGE=localhost/debian-python:bookworm (Debian's Python 3.11).
ARG BASE_IMAGE=python:3.12-slim

# ---- builder: make the project's wheel and install it with its dependencies into a virtualenv ----
# Serving only: no extras (the tools extra - evaluate, simulate, the preview page - is for people at a
# terminal), so the image carries neither rich/pygments/markdown nor the fixtures.
FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md constraints.txt ./
COPY cds_service ./cds_service
COPY cards ./cards
# The service runs from bytecode compiled here (the root filesystem may be read-only); pip and
# setuptools are not needed at run time.
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-cache-dir --constraint constraints.txt /wheels/*.whl \
    && /opt/venv/bin/pip uninstall --yes --quiet setuptools pip \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# ---- final: no compilers, no build tools, no sources; a non-root user ----
FROM ${BASE_IMAGE}
# Set by the release build (make container-test passes them too): what this image is, and from which commit.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="cds-service" \
      org.opencontainers.image.description="Amifampridine safety checks as a CDS Hooks 2.0.1 service" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"

RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin cds \
    && mkdir -p /data /app \
    && chown 10001:10001 /data

COPY --from=builder /opt/venv /opt/venv
COPY cards /app/cards

# Secure defaults: authentication on; the service refuses to start without CDS_TRUSTED_CLIENTS.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    CDS_AUTH=on \
    CDS_CARDS_DIR=/app/cards \
    CDS_DATA_DIR=/data

# Audit database (SQLite by default) lives in /data; everything else may be a read-only root filesystem.
# /tmp (TMPDIR: gunicorn's heartbeat files, the Prometheus multiprocess folder) is a volume of the image,
# so it stays writable under `docker run --read-only`, which, unlike podman, mounts no tmpfs there.
# Kubernetes mounts an emptyDir over it.
ENV TMPDIR=/tmp
VOLUME ["/data", "/tmp"]
WORKDIR /app
USER 10001:10001
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=2)"]

# gunicorn's master is PID 1 and drains in-flight requests and queued audit writes on SIGTERM.
STOPSIGNAL SIGTERM
ENTRYPOINT ["cds-service"]
CMD ["serve"]
