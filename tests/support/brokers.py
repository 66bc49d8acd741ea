"""Where tests find real brokers.

1. ``KAFKA_BOOTSTRAP_SERVERS`` / ``MQTT_URL`` when set (``scripts/brokers.sh env``; CI sets them);
2. else testcontainers (Kafka in KRaft mode, Mosquitto) when a Docker engine answers;
3. else the test is skipped, except under ``CI=true``, where a missing broker fails the run: a
   skipped broker test in CI would be a green build that proved nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from tests.support.ci import missing


def unavailable(what: str) -> NoReturn:
    """Fail under CI, skip elsewhere."""
    missing(f"{what} is not available: start it with `scripts/brokers.sh start` or run Docker")


def _docker_socket_accepts() -> bool:
    """Whether a local Docker socket takes connections (TCP hosts are left to the client to try).

    Checked first because the Docker client, when the socket refuses, leaves its own socket
    unclosed, and the ResourceWarning then fails an unrelated test.
    """
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return True
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(host.removeprefix("unix://"))
        except OSError:
            return False
    return True


def docker_available() -> bool:
    """Whether a Docker engine answers (for testcontainers)."""
    if not _docker_socket_accepts():
        return False
    try:
        import docker  # type: ignore[import-untyped]

        client: Any = docker.from_env()
    except Exception:
        return False
    try:
        client.ping()
    except Exception:
        return False
    finally:
        client.close()
    return True


@contextmanager
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real Kafka."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if not docker_available():
        unavailable("Kafka")
    from testcontainers.community.kafka import KafkaContainer

    with KafkaContainer().with_kraft() as container:
        yield container.get_bootstrap_server()


@contextmanager
def mqtt_url() -> Iterator[str]:
    """URL of a real MQTT broker (mqtt://host:port)."""
    configured = os.environ.get("MQTT_URL")
    if configured:
        yield configured
        return
    if not docker_available():
        unavailable("An MQTT broker")
    from testcontainers.community.mqtt import MosquittoContainer

    with MosquittoContainer() as container:
        yield f"mqtt://{container.get_container_host_ip()}:{container.get_exposed_port(container.MQTT_PORT)}"
