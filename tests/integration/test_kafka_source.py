"""KafkaSource and the Kafka dead-letter writer against a real broker.

Every test uses its own topics (4 partitions) and consumer group, so tests never see each
other's messages or offsets on the shared broker.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from prometheus_client import CollectorRegistry

from consumer.config import BatchConfig, KafkaDeadLetterConfig, KafkaSourceConfig
from consumer.deadletter.kafka import KafkaDeadLetterWriter, record_from_kafka_message
from consumer.delivery import DeadLetterGate
from consumer.errors import Reason
from consumer.metrics import Metrics
from consumer.pipeline import Pipeline
from consumer.sources.kafka import KafkaSource
from tests.support.doubles import MemoryDeadLetters, MemorySink
from tests.support.messages import normalizer

pytestmark = pytest.mark.integration

PARTITIONS = 4
ROUTES = "routes: [{name: all, match: '#'}]"
OFFSET_INVALID = -1001


# -- broker helpers -----------------------------------------------------------------------------------


def _name(kind: str) -> str:
    return f"vec-it-{kind}-{uuid.uuid4().hex[:10]}"


def _create_topics(bootstrap: str, *topics: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=PARTITIONS, replication_factor=1) for t in topics]
    )
    for future in futures.values():
        future.result(timeout=30)
    # Metadata settles asynchronously: wait until every partition has a leader.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        metadata = admin.list_topics(timeout=5)
        if all(t in metadata.topics and len(metadata.topics[t].partitions) == PARTITIONS for t in topics):
            return
        time.sleep(0.1)
    raise AssertionError(f"topics {topics} did not appear")


def _payload(i: int) -> bytes:
    return orjson.dumps({"event_type": "custom", "use_case": "u", "custom_value": f"v{i}"})


def _produce(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[int, bytes | None]],
    *,
    key: Callable[[int], bytes | None] = lambda _i: None,
    headers: Sequence[tuple[str, bytes]] = (),
) -> None:
    """Produce (partition, value) records in order, keys from their index."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    errors: list[str] = []

    def report(error: Any, _msg: Any) -> None:
        if error is not None:
            errors.append(str(error))

    for index, (partition, value) in enumerate(records):
        producer.produce(
            topic, value=value, key=key(index), partition=partition, headers=list(headers), on_delivery=report
        )
    assert producer.flush(30) == 0
    assert errors == []


def _valid(start: int, count: int) -> list[tuple[int, bytes | None]]:
    return [(i % PARTITIONS, _payload(i)) for i in range(start, start + count)]


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": _name("watermarks")})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        }
    finally:
        consumer.close()


def _read_all(bootstrap: str, topic: str, count: int, timeout: float = 20) -> list[Any]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": _name("reader"), "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count and time.monotonic() < deadline:
            found += [m for m in consumer.consume(100, 0.5) if m.error() is None]
        return found
    finally:
        consumer.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- pipeline harness -----------------------------------------------------------------------------------


@dataclass
class Running:
    source: KafkaSource
    pipeline: Pipeline
    sink: MemorySink
    metrics: Metrics
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def until(self, condition: Callable[[], bool], timeout: float = 20, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.task is not None and self.task.done():
                self.task.result()  # raises the source's failure
                raise AssertionError("the source returned early")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or condition}")
            await asyncio.sleep(0.05)

    async def shutdown(self, deadline: float = 10) -> bool:
        """The app's order: stop -> run returns -> pipeline.close -> source.aclose."""
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 15)
        drained = await self.pipeline.close(deadline)
        await self.source.aclose()
        return drained


def _source_config(bootstrap: str, group: str, topic: str, **overrides: Any) -> KafkaSourceConfig:
    values: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": group,
        "topics": [topic],
        "consume_batch_size": 50,
        "consume_timeout_seconds": 0.2,
        "commit_interval_seconds": 0.5,
        "settings": {"statistics.interval.ms": 500},
    }
    values.update(overrides)
    return KafkaSourceConfig(**values)


def _start(
    config: KafkaSourceConfig,
    *,
    sink: MemorySink | None = None,
    dead_letters: Any = None,
    batch: BatchConfig | None = None,
    **source_options: Any,
) -> Running:
    metrics = Metrics(CollectorRegistry())
    sink = sink or MemorySink()
    pipeline = Pipeline(
        normalizer(ROUTES),
        sink,
        DeadLetterGate(dead_letters if dead_letters is not None else MemoryDeadLetters(), metrics),
        metrics,
        batch or BatchConfig(linger_ms=20),
    )
    source = KafkaSource(config, metrics, **source_options)
    running = Running(source, pipeline, sink, metrics)
    running.task = asyncio.get_running_loop().create_task(source.run(pipeline, running.stop))
    return running


def _sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.registry.get_sample_value(name, labels or {}) or 0.0


async def _committed_async(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    return await asyncio.to_thread(_committed, bootstrap, group, topic)


# -- the tests -------------------------------------------------------------------------------------------


def test_every_message_delivered_once_invalid_ones_dead_lettered_to_kafka_and_all_committed(
    kafka_bootstrap: str,
) -> None:
    topic, dlq, group = _name("in"), _name("dlq"), _name("group")
    _create_topics(kafka_bootstrap, topic, dlq)
    valid = _valid(0, 60)
    invalid: list[tuple[int, bytes | None]] = [(0, b"not json {"), (1, b'{"event_type": "custom"'), (2, None)]
    _produce(kafka_bootstrap, topic, valid)
    _produce(kafka_bootstrap, topic, invalid, key=lambda i: f"bad-{i}".encode(), headers=[("trace", b"t-1")])
    config = _source_config(kafka_bootstrap, group, topic)
    writer = KafkaDeadLetterWriter(KafkaDeadLetterConfig(topic=dlq, timeout_seconds=10), config)

    async def scenario() -> None:
        running = _start(config, dead_letters=writer)
        await running.until(lambda: running.source.connected, what="connected")
        await running.until(lambda: running.pipeline.stats.settled() == 63, what="all settled")
        assert Counter(running.sink.values()) == Counter(f"v{i}" for i in range(60))
        assert all(count == 1 for count in Counter(running.sink.ids()).values())
        assert running.pipeline.stats.dead_lettered == 3
        assert await running.shutdown()
        await writer.aclose()
        metrics = running.metrics
        assert _sample(metrics, "vision_events_source_connected", {"source": "kafka"}) == 0
        assert _sample(metrics, "vision_events_kafka_commits_total", {"outcome": "ok"}) >= 1
        assert _sample(metrics, "vision_events_kafka_rebalances_total", {"kind": "assign"}) >= 1

    asyncio.run(scenario())
    assert _committed(kafka_bootstrap, group, topic) == _end_offsets(kafka_bootstrap, topic)
    records = [record_from_kafka_message(m) for m in _read_all(kafka_bootstrap, dlq, 3)]
    by_key = {r.coordinates["key"]: r for r in records}
    assert sorted(by_key) == ["bad-0", "bad-1", "bad-2"]
    assert by_key["bad-0"].payload == b"not json {"
    assert by_key["bad-1"].payload == b'{"event_type": "custom"'
    assert by_key["bad-2"].payload == b""  # a tombstone: dead-lettered, never silently dropped
    for record in records:
        assert record.reason == Reason.INVALID_JSON.value
        assert record.coordinates["source"] == "kafka"
        assert record.coordinates["topic"] == topic
        assert isinstance(record.coordinates["offset"], int)
        assert record.headers == (("trace", b"t-1"),)
        assert record.received_at > 0 and record.dead_lettered_at >= record.received_at


def test_an_unsettled_message_holds_back_only_its_own_partition(kafka_bootstrap: str) -> None:
    topic, group = _name("in"), _name("group")
    _create_topics(kafka_bootstrap, topic)
    _produce(kafka_bootstrap, topic, _valid(0, 40))  # 10 per partition, offsets 0..9
    config = _source_config(kafka_bootstrap, group, topic)

    async def scenario() -> None:
        sink = MemorySink(hold=lambda e: e.message.partition == 0 and e.message.offset == 3)
        sink.gate = asyncio.Event()
        running = _start(
            config, sink=sink, batch=BatchConfig(max_events=1, linger_ms=0, max_in_flight_batches=16)
        )
        await running.until(lambda: len(sink.events) == 39, what="all but the held event")
        expected = {0: 3, 1: 10, 2: 10, 3: 10}
        committed: dict[int, int] = {}
        deadline = time.monotonic() + 15
        while committed != expected and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            committed = await _committed_async(kafka_bootstrap, group, topic)
        assert committed == expected
        sink.gate.set()
        await running.until(lambda: len(sink.events) == 40, what="the held event")
        assert await running.shutdown()

    asyncio.run(scenario())
    assert _committed(kafka_bootstrap, group, topic) == dict.fromkeys(range(PARTITIONS), 10)


def test_backpressure_pauses_and_resumes_partitions_and_loses_nothing(kafka_bootstrap: str) -> None:
    topic, group = _name("in"), _name("group")
    _create_topics(kafka_bootstrap, topic)
    _produce(kafka_bootstrap, topic, _valid(0, 200))
    config = _source_config(kafka_bootstrap, group, topic, consume_batch_size=10)

    async def scenario() -> None:
        sink = MemorySink(delay=lambda _e: 0.03)
        running = _start(
            config,
            sink=sink,
            batch=BatchConfig(max_events=5, linger_ms=5, max_in_flight_batches=1, max_in_flight_events=10),
            pause_after_seconds=0.02,
        )
        paused_seen: list[float] = []
        in_flight_seen: list[int] = []

        async def watch() -> None:
            while True:
                paused_seen.append(_sample(running.metrics, "vision_events_kafka_paused_partitions"))
                in_flight_seen.append(running.pipeline.in_flight)
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        await running.until(lambda: len(sink.events) >= 200, timeout=25, what="200 events")
        watcher.cancel()
        assert max(paused_seen) > 0, "partitions were never paused"
        first_pause = next(i for i, value in enumerate(paused_seen) if value > 0)
        assert 0 in paused_seen[first_pause:], "partitions were never resumed"
        assert max(in_flight_seen) <= 10
        assert await running.shutdown()
        assert Counter(sink.values()) == Counter(f"v{i}" for i in range(200))

    asyncio.run(scenario())
    assert _committed(kafka_bootstrap, group, topic) == dict.fromkeys(range(PARTITIONS), 50)


def test_large_messages_pause_on_the_byte_bound_before_the_count_bound(kafka_bootstrap: str) -> None:
    """Messages of ~9 KB, a 64 KiB byte bound and a count bound far away: bytes decide."""
    topic, group = _name("in"), _name("group")
    _create_topics(kafka_bootstrap, topic)
    filler = "x" * 9_000
    records: list[tuple[int, bytes | None]] = [
        (
            i % PARTITIONS,
            orjson.dumps({"event_type": "custom", "use_case": "u", "custom_value": f"v{i}{filler}"}),
        )
        for i in range(120)
    ]
    _produce(kafka_bootstrap, topic, records)
    size = max(len(value or b"") for _, value in records)
    bound = 64 * 1024
    config = _source_config(kafka_bootstrap, group, topic, consume_batch_size=3)

    async def scenario() -> None:
        # One slow batch at a time keeps the pipeline full long enough for pauses to be seen.
        sink = MemorySink(delay=lambda _e: 0.05)
        running = _start(
            config,
            sink=sink,
            batch=BatchConfig(
                max_events=2,
                linger_ms=5,
                max_in_flight_batches=1,
                max_in_flight_events=10_000,
                max_in_flight_bytes=bound,
            ),
            pause_after_seconds=0.02,
        )
        bytes_seen: list[int] = []
        paused_seen: list[float] = []

        async def watch() -> None:
            while True:
                bytes_seen.append(running.pipeline.in_flight_bytes)
                paused_seen.append(_sample(running.metrics, "vision_events_kafka_paused_partitions"))
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        await running.until(lambda: len(sink.events) >= 120, timeout=30, what="120 events")
        watcher.cancel()
        assert max(paused_seen) > 0, "partitions were never paused on the byte bound"
        # A hand-off is let in only while it fits; only an empty pipeline takes a batch past it.
        assert max(bytes_seen) <= max(bound, 3 * size)
        assert max(bytes_seen) > bound // 2, "the bound was never approached: the test proves nothing"
        assert await running.shutdown()
        assert Counter(v[: v.index("x")] for v in sink.values()) == Counter(f"v{i}" for i in range(120))

    asyncio.run(scenario())
    assert _committed(kafka_bootstrap, group, topic) == dict.fromkeys(range(PARTITIONS), 30)


def test_two_members_of_one_group_share_the_partitions_and_deliver_everything(kafka_bootstrap: str) -> None:
    topic, group = _name("in"), _name("group")
    _create_topics(kafka_bootstrap, topic)
    config = _source_config(kafka_bootstrap, group, topic)

    async def scenario() -> None:
        first = _start(config)
        await first.until(lambda: len(first.source.assignment) == PARTITIONS, what="first member assigned")
        second = _start(config)

        def shared() -> bool:
            a, b = first.source.assignment, second.source.assignment
            return len(a) == 2 and len(b) == 2 and not (a & b)

        await second.until(shared, timeout=25, what="a 2+2 split")
        await asyncio.to_thread(_produce, kafka_bootstrap, topic, _valid(0, 80))
        await second.until(
            lambda: set(first.sink.values()) | set(second.sink.values()) == {f"v{i}" for i in range(80)},
            what="all 80 delivered",
        )
        assert first.sink.events and second.sink.events
        ids = Counter(first.sink.ids() + second.sink.ids())
        assert len(ids) == 80  # one id per message; duplicates could only repeat an id, never add one
        assert all(count == 1 for count in ids.values()), "no rebalance happened after producing"
        assert await second.shutdown()
        assert await first.shutdown()

    asyncio.run(scenario())
    assert _committed(kafka_bootstrap, group, topic) == dict.fromkeys(range(PARTITIONS), 20)


def test_a_restart_resumes_from_the_committed_offsets(kafka_bootstrap: str) -> None:
    topic, group = _name("in"), _name("group")
    _create_topics(kafka_bootstrap, topic)
    config = _source_config(kafka_bootstrap, group, topic)
    _produce(kafka_bootstrap, topic, _valid(0, 40))

    async def first_run() -> None:
        running = _start(config)
        await running.until(lambda: len(running.sink.events) == 40, what="first 40")
        assert await running.shutdown()

    asyncio.run(first_run())
    assert _committed(kafka_bootstrap, group, topic) == dict.fromkeys(range(PARTITIONS), 10)
    _produce(kafka_bootstrap, topic, _valid(40, 20))

    async def second_run() -> None:
        running = _start(config)
        await running.until(lambda: len(running.sink.events) == 20, what="the 20 new ones")
        await asyncio.sleep(1.0)  # anything redelivered would have arrived by now
        assert Counter(running.sink.values()) == Counter(f"v{i}" for i in range(40, 60))
        assert await running.shutdown()

    asyncio.run(second_run())
    assert _committed(kafka_bootstrap, group, topic) == dict.fromkeys(range(PARTITIONS), 15)


def test_dead_letter_destination_down_acknowledges_and_commits_nothing(kafka_bootstrap: str) -> None:
    topic, group = _name("in"), _name("group")
    _create_topics(kafka_bootstrap, topic)
    _produce(kafka_bootstrap, topic, [(i % PARTITIONS, b"not json") for i in range(8)])
    config = _source_config(kafka_bootstrap, group, topic)
    writer = KafkaDeadLetterWriter(
        KafkaDeadLetterConfig(
            topic=_name("dlq"), bootstrap_servers=f"127.0.0.1:{_closed_port()}", timeout_seconds=0.5
        ),
        config,
    )

    async def scenario() -> None:
        running = _start(config, dead_letters=writer, submit_grace_seconds=1.0)
        await running.until(lambda: running.pipeline.dead_letter_failing, what="dead letters failing")
        await asyncio.sleep(1.5)  # a few periodic commit intervals
        assert running.pipeline.stats.dead_lettered == 0
        assert _sample(running.metrics, "vision_events_dead_letter_write_failures_total") >= 1
        nothing = dict.fromkeys(range(PARTITIONS), OFFSET_INVALID)
        assert await _committed_async(kafka_bootstrap, group, topic) == nothing
        started = time.monotonic()
        await running.shutdown(deadline=1)
        assert time.monotonic() - started < 10
        await writer.aclose()

    asyncio.run(scenario())
    assert _committed(kafka_bootstrap, group, topic) == dict.fromkeys(range(PARTITIONS), OFFSET_INVALID)
