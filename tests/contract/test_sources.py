"""The source contract (source_contract.py) run against the file source, real MQTT and real Kafka.

Each test gets its own file, MQTT client id and topic, or Kafka topic and group, so tests never
see each other's messages, sessions or offsets on the shared brokers. Under ``CI=true`` a missing
broker fails these tests (tests/support/brokers.py), it never skips them.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from consumer.config import KafkaSourceConfig, MqttSourceConfig
from consumer.metrics import Metrics
from consumer.sources.base import Source
from consumer.sources.file import FileSource
from consumer.sources.kafka import KafkaSource
from consumer.sources.mqtt import MqttSource
from tests.contract.source_contract import (
    BOUND,
    Restart,
    Running,
    SourceCapabilities,
    SourceContract,
    SourceHarness,
)
from tests.support.corpus import CorpusMessage
from tests.support.intake import RecordingIntake
from tests.support.process import free_port
from tests.support.transports import KafkaTransport, MqttTransport


def _message(topic: str, payload: bytes) -> CorpusMessage:
    return CorpusMessage(topic=topic, payload=payload, event_type=None, reason=None)


# -- file ---------------------------------------------------------------------------------------------


class FileHarness(SourceHarness):
    """A JSONL file: "publishing" appends byte-exact lines; a restart reads the file again."""

    capabilities = SourceCapabilities(
        restart=Restart.READS_ALL,
        asks_before_submitting=False,
        stop_ends_a_waiting_hand_off=False,
        has_broker=False,
    )
    source_name = "file"

    def __init__(self, directory: Path) -> None:
        self.path = directory / "input.jsonl"
        self.path.touch()
        self.topic = "contract/file"

    def publish(self, payloads: Sequence[bytes]) -> None:
        """Append one ``payload_base64`` line per payload, so any bytes survive."""
        with self.path.open("ab") as handle:
            for payload in payloads:
                line = {"topic": self.topic, "payload_base64": base64.b64encode(payload).decode()}
                handle.write(orjson.dumps(line) + b"\n")

    def new_source(self) -> Source:
        """A reader of the same file."""
        return FileSource(str(self.path), default_topic="contract/default")


# -- MQTT ---------------------------------------------------------------------------------------------


class MqttHarness(SourceHarness):
    """Mosquitto: one client id (a persistent session, QoS 1) for every source of the test."""

    capabilities = SourceCapabilities(
        restart=Restart.SKIPS_ACKED,
        asks_before_submitting=False,
        stop_ends_a_waiting_hand_off=False,
        has_broker=True,
    )
    source_name = "mqtt"

    def __init__(self, url: str) -> None:
        self.url = url
        self.transport = MqttTransport(url)
        self.topic = self.transport.topics.topic("camera")
        self.client_id = f"contract-src-{self.transport.uid}"
        self._filters = [f"{self.transport.topics.prefix}/#"]

    def _config(self, url: str) -> MqttSourceConfig:
        return MqttSourceConfig.model_validate(
            {
                "url": url,
                "client_id": self.client_id,
                "session_expiry_seconds": 300,
                "reconnect_min_seconds": 1,
                "reconnect_max_seconds": 2,
            }
        )

    def publish(self, payloads: Sequence[bytes]) -> None:
        """QoS 1, every PUBACK awaited."""
        self.transport.publish([_message(self.topic, payload) for payload in payloads])

    def new_source(self) -> Source:
        """A source resuming the test's persistent session."""
        return MqttSource(self._config(self.url), self._filters, Metrics(CollectorRegistry()))

    def unreachable_source(self) -> Source:
        """The same source pointed at a closed port."""
        url = f"mqtt://127.0.0.1:{free_port()}"
        return MqttSource(self._config(url), self._filters, Metrics(CollectorRegistry()))

    async def open_session(self) -> None:
        """Subscribe once, so that the broker queues what is published before the next start."""
        source = self.new_source()
        running = Running(source, RecordingIntake())
        try:
            await running.intake.until(lambda: source.connected, "the session to be created", BOUND)
        finally:
            await running.close()

    def close(self) -> None:
        """Remove the persistent session (clean start, expiry 0) and disconnect the publisher."""
        self.transport.close()
        parts = urlsplit(self.url)
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv5)
        with suppress(OSError):
            client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, clean_start=True)
            client.loop_start()
            deadline = time.monotonic() + 5
            while not client.is_connected() and time.monotonic() < deadline:
                time.sleep(0.02)
            client.disconnect()
            client.loop_stop()


# -- Kafka --------------------------------------------------------------------------------------------


class KafkaHarness(SourceHarness):
    """Kafka: one topic (4 partitions) and one consumer group for every source of the test."""

    capabilities = SourceCapabilities(
        restart=Restart.SKIPS_ACKED,
        asks_before_submitting=True,
        stop_ends_a_waiting_hand_off=True,
        has_broker=True,
    )
    source_name = "kafka"

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.transport = KafkaTransport(bootstrap)
        self.topic = self.transport.topics.topic("camera")
        self.group = f"contract-{uuid.uuid4().hex[:10]}"
        self.transport.prepare([_message(self.topic, b"")])

    def _config(self, bootstrap: str) -> KafkaSourceConfig:
        return KafkaSourceConfig.model_validate(
            {
                "bootstrap_servers": bootstrap,
                "group_id": self.group,
                "topics": [self.topic],
                "commit_interval_seconds": 0.2,
                "settings": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
            }
        )

    def publish(self, payloads: Sequence[bytes]) -> None:
        """acks=all, every delivery report awaited; keys spread the messages over the partitions."""
        self.transport.publish(
            [
                CorpusMessage(topic=self.topic, payload=p, event_type=None, reason=None, key=b"k%d" % i)
                for i, p in enumerate(payloads)
            ]
        )

    def new_source(self) -> Source:
        """A member of the test's group (a restart resumes from the committed offsets)."""
        return KafkaSource(self._config(self.bootstrap), Metrics(CollectorRegistry()))

    def unreachable_source(self) -> Source:
        """The same source pointed at a closed port."""
        return KafkaSource(self._config(f"127.0.0.1:{free_port()}"), Metrics(CollectorRegistry()))

    def close(self) -> None:
        """Flush the publisher."""
        self.transport.close()


# -- the suites ---------------------------------------------------------------------------------------


class TestFileSource(SourceContract):
    """The contract against :class:`FileSource`."""

    @pytest.fixture
    def harness(self, tmp_path: Path) -> SourceHarness:
        """A fresh file."""
        return FileHarness(tmp_path)


@pytest.mark.integration
class TestMqttSource(SourceContract):
    """The contract against :class:`MqttSource` and a real Mosquitto."""

    @pytest.fixture
    def harness(self, mqtt_url: str) -> Iterator[SourceHarness]:
        """A fresh topic and persistent session, removed afterwards."""
        harness = MqttHarness(mqtt_url)
        try:
            asyncio.run(harness.open_session())
            yield harness
        finally:
            harness.close()


@pytest.mark.integration
class TestKafkaSource(SourceContract):
    """The contract against :class:`KafkaSource` and a real Kafka."""

    @pytest.fixture
    def harness(self, kafka_bootstrap: str) -> Iterator[SourceHarness]:
        """A fresh topic and consumer group."""
        harness = KafkaHarness(kafka_bootstrap)
        try:
            yield harness
        finally:
            harness.close()
