"""A dead letter larger than the MQTT broker's maximum packet size is published cut, not refused forever.

Each test starts its own Mosquitto with ``max_packet_size 65536`` (the shared broker is not
reconfigured); a 200 KiB message dead-lettered there must arrive cut, marked and described.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from consumer.config import MqttDeadLetterConfig, MqttSourceConfig
from consumer.deadletter import DeadLetterRecord
from consumer.deadletter.mqtt import MqttDeadLetterWriter
from consumer.metrics import Metrics
from tests.integration.test_mqtt_source import DeadLetterReader, wait_until
from tests.support.mosquitto import own_mosquitto

pytestmark = pytest.mark.integration

MAX_PACKET = 65536
OVERSIZED = b"\x00not json " + bytes(range(256)) * 800  # 200 KiB: over the broker's limit


@pytest.fixture
def small_broker(tmp_path: Path) -> Iterator[str]:
    """A Mosquitto of this test's own whose packets may not exceed 64 KiB."""
    with own_mosquitto(tmp_path, f"max_packet_size {MAX_PACKET}") as url:
        yield url


def _record(payload: bytes, offset: int) -> DeadLetterRecord:
    return DeadLetterRecord(
        payload=payload,
        reason="message_too_large",
        detail="the message is larger than limits.max_message_bytes",
        coordinates={"source": "mqtt", "topic": f"cams/{offset}", "qos": 1},
        received_at=1.0,
        dead_lettered_at=2.0,
    )


Read = tuple[list[DeadLetterRecord], list[dict[str, str]]]


def _write_and_read(
    url: str, protocol: str, config: MqttDeadLetterConfig, records: list[DeadLetterRecord], metrics: Metrics
) -> Read:
    """Write ``records`` and return what a subscriber of the dead-letter topic received."""
    source = MqttSourceConfig(url=url, client_id=f"it-{uuid.uuid4().hex[:10]}", protocol=protocol)

    async def scenario() -> Read:
        reader = DeadLetterReader(url, config.topic)
        writer = MqttDeadLetterWriter(config, source, metrics=metrics)
        try:
            await writer.write(records)
            await wait_until(lambda: len(reader.records) == len(records), "the dead letters")
        finally:
            await writer.aclose()
            reader.close()
            # paho keeps its wake-up socket pair open after loop_stop; reinitialise closes it, so
            # no unclosed socket is left for the garbage collector to warn about.
            reader.client.reinitialise()
        return reader.records, reader.user_properties

    return asyncio.run(scenario())


def _assert_cut(record: DeadLetterRecord) -> None:
    assert record.payload_truncated
    assert record.original_size == len(OVERSIZED)
    assert record.original_sha256 == hashlib.sha256(OVERSIZED).hexdigest()
    assert 0 < len(record.payload) < MAX_PACKET
    assert OVERSIZED.startswith(record.payload)
    assert record.reason == "message_too_large" and record.coordinates["topic"] == "cams/0"


def _truncated(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value(
        "vision_events_dead_letters_truncated_total", {"destination": "mqtt"}
    )


def test_mqtt5_reads_the_brokers_maximum_packet_size_and_cuts_what_exceeds_it(small_broker: str) -> None:
    metrics = Metrics(CollectorRegistry())
    small = _record(b"{small", 1)
    config = MqttDeadLetterConfig(topic=f"dlq-{uuid.uuid4().hex[:8]}", timeout_seconds=5)
    read, properties = _write_and_read(small_broker, "5", config, [_record(OVERSIZED, 0), small], metrics)
    cut, whole = read
    _assert_cut(cut)
    assert whole == small  # a record that fits goes whole, unmarked
    assert properties[0]["payload_truncated"] == "true"
    assert properties[0]["original_size"] == str(len(OVERSIZED))
    assert properties[0]["original_sha256"] == hashlib.sha256(OVERSIZED).hexdigest()
    assert "payload_truncated" not in properties[1]
    assert _truncated(metrics) == 1


def test_mqtt311_cuts_at_the_configured_maximum_packet_size(small_broker: str) -> None:
    metrics = Metrics(CollectorRegistry())
    config = MqttDeadLetterConfig(
        topic=f"dlq-{uuid.uuid4().hex[:8]}", timeout_seconds=5, max_packet_bytes=MAX_PACKET
    )
    [cut], _ = _write_and_read(small_broker, "3.1.1", config, [_record(OVERSIZED, 0)], metrics)
    _assert_cut(cut)
    assert _truncated(metrics) == 1
