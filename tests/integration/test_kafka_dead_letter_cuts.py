"""A dead letter larger than its Kafka topic accepts is written cut, and the source partition moves on.

The dead-letter topic is created with a small ``max.message.bytes`` (64 KiB) on the real broker;
a 200 KiB message dead-lettered to it must land there cut, marked and described in headers, and the
source partition's offset must commit past it.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import orjson
import pytest
import yaml
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from prometheus_client import CollectorRegistry

from consumer.cli import main
from consumer.config import KafkaDeadLetterConfig
from consumer.deadletter import DeadLetterRecord
from consumer.deadletter.kafka import KafkaDeadLetterWriter, record_from_kafka_message
from consumer.fakeapi import FakeVisionEventsApi
from consumer.metrics import Metrics
from tests.integration.test_kafka_source import (
    _committed,
    _create_topics,
    _name,
    _payload,
    _produce,
    _read_all,
    _source_config,
    _start,
    _valid,
)

pytestmark = pytest.mark.integration

TOPIC_LIMIT = 64 * 1024


def create_small_topic(bootstrap: str, topic: str, max_message_bytes: int = TOPIC_LIMIT) -> None:
    """A one-partition topic whose broker refuses records over ``max_message_bytes``."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(
        topic, num_partitions=1, replication_factor=1, config={"max.message.bytes": str(max_message_bytes)}
    )
    for future in admin.create_topics([new]).values():
        future.result(timeout=30)


def test_an_oversized_dead_letter_is_written_cut_and_the_partition_commits_past_it(
    kafka_bootstrap: str,
) -> None:
    topic, dlq, group = _name("in"), _name("dlq-small"), _name("group")
    _create_topics(kafka_bootstrap, topic)
    create_small_topic(kafka_bootstrap, dlq)
    oversized = b"{not json " + bytes(range(256)) * 800  # 200 KiB: over the 64 KiB topic
    # The oversized message first on partition 0, valid ones behind it on the same partition.
    behind = [(0, v) for _, v in _valid(0, 3)]
    _produce(kafka_bootstrap, topic, [(0, oversized), *behind, *[(p, _payload(10 + p)) for p in (1, 2, 3)]])
    config = _source_config(kafka_bootstrap, group, topic)
    metrics = Metrics(CollectorRegistry())
    writer = KafkaDeadLetterWriter(
        KafkaDeadLetterConfig(topic=dlq, timeout_seconds=10), config, metrics=metrics
    )

    async def scenario() -> None:
        running = _start(config, dead_letters=writer)
        await running.until(lambda: running.pipeline.stats.settled() == 7, what="all settled")
        assert running.pipeline.stats.dead_lettered == 1
        assert not running.pipeline.dead_letter_failing
        assert await running.shutdown()
        await writer.aclose()

    asyncio.run(scenario())
    # Partition 0 commits past the oversized message and the three behind it.
    assert _committed(kafka_bootstrap, group, topic) == {0: 4, 1: 1, 2: 1, 3: 1}

    [message] = _read_all(kafka_bootstrap, dlq, 1)
    headers = dict(message.headers())
    assert headers["vec.payload_truncated"] == b"true"
    assert headers["vec.original_size"] == str(len(oversized)).encode()
    assert headers["vec.original_sha256"] == hashlib.sha256(oversized).hexdigest().encode()
    assert headers["vec.reason"] == b"invalid_json"
    value = message.value()
    assert 0 < len(value) < TOPIC_LIMIT
    assert oversized.startswith(value)
    record = record_from_kafka_message(message)
    assert record.payload_truncated
    assert record.original_size == len(oversized)
    assert record.coordinates["offset"] == 0 and record.coordinates["partition"] == 0
    sample = metrics.registry.get_sample_value(
        "vision_events_dead_letters_truncated_total", {"destination": "kafka"}
    )
    assert sample == 1


def test_records_refused_only_together_are_written_whole_one_by_one(kafka_bootstrap: str) -> None:
    """Small records that the producer batched over the topic's limit are not cut: each fits alone."""
    dlq = _name("dlq-small")
    create_small_topic(kafka_bootstrap, dlq)
    writer = KafkaDeadLetterWriter(
        KafkaDeadLetterConfig(topic=dlq, timeout_seconds=10, bootstrap_servers=kafka_bootstrap), None
    )
    records = [
        DeadLetterRecord(
            payload=bytes([i]) * (40 * 1024),
            reason="invalid_json",
            detail="",
            coordinates={"source": "kafka", "topic": "t", "partition": 0, "offset": i},
            received_at=1.0,
            dead_lettered_at=2.0,
        )
        for i in range(3)
    ]

    async def scenario() -> None:
        await writer.write(records)
        await writer.aclose()

    asyncio.run(scenario())
    read = [record_from_kafka_message(m) for m in _read_all(kafka_bootstrap, dlq, 3)]
    assert sorted(r.payload for r in read) == sorted(r.payload for r in records)
    assert not any(r.payload_truncated for r in read)


def test_replay_reports_a_cut_record_and_does_not_replay_it(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cut prefix is valid JSON here: replayed as if whole it would become an event, wrongly."""
    dlq = _name("dlq-small")
    create_small_topic(kafka_bootstrap, dlq)
    padded = _payload(1) + b" " * (100 * 1024)  # valid JSON, over the topic's limit
    whole = _payload(2)
    records = [
        DeadLetterRecord(
            payload=payload,
            reason="api_unavailable",
            detail="",
            coordinates={"source": "kafka", "topic": "cams", "partition": 0, "offset": offset},
            received_at=1.0,
            dead_lettered_at=2.0,
        )
        for offset, payload in enumerate([padded, whole])
    ]
    writer = KafkaDeadLetterWriter(
        KafkaDeadLetterConfig(topic=dlq, timeout_seconds=10, bootstrap_servers=kafka_bootstrap), None
    )

    async def write() -> None:
        await writer.write(records)
        await writer.aclose()

    asyncio.run(write())
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes: [{name: all, match: '#'}]")
    dead = tmp_path / "dead-again.jsonl"
    with FakeVisionEventsApi(api_keys=("k",), use_cases=["u"]) as api:
        config = tmp_path / "settings.yaml"
        settings = {
            "routes": str(routes),
            "sink": {"cloud": {"base_url": api.url, "api_key": "k"}},
            "dead_letter": {"jsonl": {"path": str(dead)}, "kafka": {"bootstrap_servers": kafka_bootstrap}},
            "batch": {"linger_ms": 10},
            "http": {"host": "127.0.0.1", "port": 0},
            "log": {"level": "WARNING"},
        }
        config.write_text(yaml.safe_dump(settings))
        sha256 = hashlib.sha256(padded).hexdigest()

        assert main(["replay", "--config", str(config), "--from", f"kafka:{dlq}", "--dry-run"]) == 0
        outcomes = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert sorted(o["result"] for o in outcomes) == ["event", "truncated"]
        [cut] = [o for o in outcomes if o["result"] == "truncated"]
        assert cut["original_size"] == len(padded) and cut["original_sha256"] == sha256

        assert main(["replay", "--config", str(config), "--from", f"kafka:{dlq}"]) == 0
        stderr = capsys.readouterr().err  # the logs (configure_logging writes to stderr), then the summary
        delivered = list(api.events().values())
    assert "replayed 1 " in stderr and "cut and not replayed 1" in stderr
    warnings = [line for line in stderr.splitlines() if "not replaying a cut dead letter" in line]
    assert len(warnings) == 1 and str(len(padded)) in warnings[0] and sha256 in warnings[0]
    assert len(delivered) == 1  # only the whole record became an event
    assert not dead.exists() or dead.read_bytes() == b""
    # Left in place: the topic still holds both dead letters.
    assert len(_read_all(kafka_bootstrap, dlq, 2)) == 2
