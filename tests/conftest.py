"""Shared fixtures: real brokers for integration and end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import brokers


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real Kafka's bootstrap servers (see tests/support/brokers.py)."""
    with brokers.kafka_bootstrap() as servers:
        yield servers


@pytest.fixture(scope="session")
def mqtt_url() -> Iterator[str]:
    """A real MQTT broker's URL (see tests/support/brokers.py)."""
    with brokers.mqtt_url() as url:
        yield url
