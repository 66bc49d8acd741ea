# syntax=docker/dockerfile:1
# vision-events-consumer: a virtualenv built from pyproject.toml, run as uid 10001 on a read-only root.
#
#   docker build -t vision-events-consumer:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker run --rm --read-only --tmpfs /tmp -v "$PWD/deploy-config:/etc/vision-events:ro" \
#     -v vec-data:/var/lib/vision-events -p 9108:9108 vision-events-consumer:0.1.0
#
# The Helm chart (deploy/helm/vision-events-consumer) mounts the settings and routes at
# /etc/vision-events, a volume at /var/lib/vision-events (dead-letter file, spool) and /tmp.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---------------------------------------------------------------------------------------------
# builder: dependencies, then the package, into /opt/venv
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependency layer: rebuilt only when pyproject.toml (or README.md, the package's readme) changes.
# A stub package lets the same `pip install .` that CI runs resolve every dependency from
# pyproject.toml before any source is copied; the stub itself is uninstalled again.
COPY pyproject.toml README.md ./
RUN mkdir consumer \
    && touch consumer/__init__.py \
    && python -m pip install --no-cache-dir . \
    && python -m pip uninstall --yes vision-events-consumer \
    && rm -rf consumer build ./*.egg-info

# The package itself (dependencies are already there). pip precompiles the bytecode here, so the
# runtime never needs to write .pyc files on its read-only filesystem.
COPY consumer ./consumer
RUN python -m pip install --no-cache-dir --no-deps . \
    && vision-events-consumer --help >/dev/null

# ---------------------------------------------------------------------------------------------
# runtime: the venv, a non-root user, nothing else
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""

LABEL org.opencontainers.image.title="vision-events-consumer" \
      org.opencontainers.image.description="Consumes computer-vision inference results from MQTT or Kafka and delivers them as Roboflow Vision Events." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# uid/gid 10001: outside the range distributions hand out, numeric so runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 vec \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/vision-events --no-create-home \
        --shell /usr/sbin/nologin vec \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/vision-events \
    && install -d -o root -g root -m 0755 /etc/vision-events

COPY --from=builder /opt/venv /opt/venv

# No bytecode writes, unbuffered logs (JSON lines on stderr), the venv first on PATH.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1

# Relative paths in the settings (dead-letters.jsonl by default) land in the data directory, the only
# place besides /tmp that is writable when the root filesystem is read-only.
WORKDIR /var/lib/vision-events
USER 10001:10001

EXPOSE 9108

# For plain Docker/Compose; Kubernetes uses the chart's probes on the same endpoint.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"]

ENTRYPOINT ["vision-events-consumer"]
CMD ["run", "--config", "/etc/vision-events/settings.yaml"]
