"""The Kafka dead-letter writer against a real broker, over the SASL listener as well."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Sequence

import pytest
from confluent_kafka import Consumer, Message
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from consumer.config import KafkaDeadLetterConfig, KafkaSourceConfig
from consumer.deadletter import DeadLetterRecord
from consumer.deadletter.kafka import KafkaDeadLetterWriter, record_from_kafka_message
from consumer.model import InboundMessage
from tests.support import brokers

pytestmark = pytest.mark.integration


def _topic() -> str:
    return f"vec-it-dlq-{uuid.uuid4().hex[:10]}"


def _create(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)]).values():
        future.result(timeout=30)


def _read(settings: dict[str, str], topic: str, count: int) -> list[Message]:
    consumer = Consumer(
        {**settings, "group.id": f"reader-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    found: list[Message] = []
    deadline = time.monotonic() + 20
    try:
        while len(found) < count and time.monotonic() < deadline:
            found += [m for m in consumer.consume(100, 0.5) if m.error() is None]
    finally:
        consumer.close()
    return found


def _records(count: int) -> list[DeadLetterRecord]:
    out: list[DeadLetterRecord] = []
    for i in range(count):
        message = InboundMessage(
            source="kafka",
            topic="factory/line-1/qc",
            payload=b"\x00\xff raw bytes %d" % i,
            received_at=1712345678.25 + i,
            key=f"cam-{i}".encode() if i % 2 else None,
            headers=(("trace", b"t-%d" % i),),
            partition=i % 4,
            offset=1000 + i,
        )
        out.append(
            DeadLetterRecord.for_message(
                message, reason="invalid_json", detail=f"bad byte at {i}", now=1712345700.5, path=""
            )
        )
    return out


def _by_offset(records: Sequence[DeadLetterRecord]) -> dict[int, DeadLetterRecord]:
    return {int(r.coordinates["offset"]): r for r in records}


def test_records_written_are_acknowledged_and_read_back_byte_exact(kafka_bootstrap: str) -> None:
    topic = _topic()
    _create(kafka_bootstrap, topic)
    source = KafkaSourceConfig(bootstrap_servers=kafka_bootstrap, topics=["t"])
    writer = KafkaDeadLetterWriter(KafkaDeadLetterConfig(topic=topic, timeout_seconds=10), source)
    written = _records(12)

    async def scenario() -> None:
        await writer.write(written[:5])
        await writer.write(written[5:])
        await writer.aclose()

    asyncio.run(scenario())
    read = [record_from_kafka_message(m) for m in _read({"bootstrap.servers": kafka_bootstrap}, topic, 12)]
    assert _by_offset(read) == _by_offset(written)


def test_the_writer_inherits_the_sources_sasl_credentials(kafka_bootstrap: str) -> None:
    sasl_bootstrap = os.environ.get("KAFKA_SASL_BOOTSTRAP_SERVERS")
    user, password = os.environ.get("KAFKA_SASL_USERNAME"), os.environ.get("KAFKA_SASL_PASSWORD")
    if not (sasl_bootstrap and user and password):
        brokers.unavailable("Kafka's SASL listener (KAFKA_SASL_* from `scripts/brokers.sh env`)")
    assert sasl_bootstrap and user and password
    topic = _topic()
    _create(kafka_bootstrap, topic)
    security = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.username": user}
    source = KafkaSourceConfig(
        bootstrap_servers=sasl_bootstrap, topics=["t"], sasl_password=password, settings=security
    )
    writer = KafkaDeadLetterWriter(KafkaDeadLetterConfig(topic=topic, timeout_seconds=10), source)
    assert password not in repr(writer)
    written = _records(3)

    async def scenario() -> None:
        await writer.write(written)
        await writer.aclose()

    asyncio.run(scenario())
    read = [record_from_kafka_message(m) for m in _read({"bootstrap.servers": kafka_bootstrap}, topic, 3)]
    assert _by_offset(read) == _by_offset(written)
