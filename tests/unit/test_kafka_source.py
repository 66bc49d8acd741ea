"""KafkaSource without a broker: offset bookkeeping, settings, secrets, and the consumer thread
driven through a scripted fake of confluent_kafka.Consumer."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry

from consumer.clients.kafka import consumer_settings, mask_settings
from consumer.clients.kafka import redact_settings as redact
from consumer.config import BatchConfig, KafkaSourceConfig
from consumer.delivery import DeadLetterGate
from consumer.errors import ConfigError, KafkaSourceError
from consumer.metrics import Metrics
from consumer.pipeline import Pipeline
from consumer.sources.kafka import KafkaSource
from consumer.sources.offsets import OffsetBook
from tests.support.doubles import MemoryDeadLetters, MemorySink
from tests.support.messages import normalizer

SECRET = "s3cr3t-Pa55word"
ROUTES = "routes: [{name: all, match: '#'}]"


# -- OffsetBook ---------------------------------------------------------------------------------------


def test_acks_out_of_order_commit_only_up_to_the_lowest_offset_in_flight() -> None:
    book = OffsetBook()
    acks = [book.register("t", 0, offset) for offset in range(5)]
    other = book.register("t", 1, 40)
    acks[2]()
    acks[1]()
    assert book.committable() == {}
    acks[0]()
    assert book.committable() == {("t", 0): 3}
    acks[4]()
    assert book.committable() == {("t", 0): 3}
    assert book.in_flight("t", 0) == 2
    other()
    acks[3]()
    assert book.committable() == {("t", 0): 5, ("t", 1): 41}


def test_offsets_to_store_are_only_those_that_advanced_and_only_of_the_given_partitions() -> None:
    book = OffsetBook()
    book.register("t", 0, 7)()
    book.register("t", 1, 3)()
    assert book.take_unstored({("t", 0)}) == {("t", 0): 8}
    assert book.take_unstored({("t", 0), ("t", 1)}) == {("t", 1): 4}
    assert book.take_unstored({("t", 0), ("t", 1)}) == {}
    book.register("t", 0, 8)()
    assert book.take_unstored({("t", 0), ("t", 1)}) == {("t", 0): 9}


def test_a_revoked_partition_forgets_its_offsets_and_late_acks_do_nothing() -> None:
    book = OffsetBook()
    early = book.register("t", 0, 10)
    late = book.register("t", 0, 11)
    early()
    assert book.release({("t", 0)}) == {("t", 0): 11}
    late()  # settled after the revoke: nothing may be released or committed for it
    assert book.committable() == {}
    # The partition comes back (this or another rebalance) and is redelivered from 11.
    again = book.register("t", 0, 11)
    assert book.committable() == {}
    again()
    assert book.committable() == {("t", 0): 12}


def test_a_stale_ack_never_releases_a_message_of_the_partitions_next_assignment() -> None:
    book = OffsetBook()
    stale = book.register("t", 0, 5)
    book.release({("t", 0)})
    fresh = book.register("t", 0, 6)
    stale()
    assert book.committable() == {}
    fresh()
    assert book.committable() == {("t", 0): 7}


def test_a_rewind_starts_a_new_lane_so_release_order_stays_offset_order() -> None:
    book = OffsetBook()
    first = [book.register("t", 0, offset) for offset in (100, 101, 102)]
    first[0]()
    # librdkafka re-fetches from 101 (an offset reset): 101 and 102 arrive again.
    second = [book.register("t", 0, offset) for offset in (101, 102)]
    first[2]()  # the old copy of 102 settles: it must not release 102 past the new 101
    assert book.committable() == {("t", 0): 101}
    second[1]()
    assert book.committable() == {("t", 0): 101}
    second[0]()
    assert book.committable() == {("t", 0): 103}


def test_the_wake_callback_fires_when_a_settle_released_something() -> None:
    woken: list[int] = []
    book = OffsetBook(on_release=lambda: woken.append(1))
    a, b = book.register("t", 0, 0), book.register("t", 0, 1)
    b()
    assert woken == []
    a()
    assert woken == [1]


def test_settle_many_advances_each_partition_as_settling_one_by_one_would() -> None:
    woken: list[int] = []
    book, alone = OffsetBook(on_release=lambda: woken.append(1)), OffsetBook()
    coordinates = [("t", partition, offset) for offset in range(10, 15) for partition in (0, 1)]
    acks, singles = book.register_many(coordinates), alone.register_many(coordinates)
    chosen = [i for i, (_t, partition, offset) in enumerate(coordinates) if (partition, offset) != (1, 12)]
    book.settle_many([acks[i] for i in chosen])
    for i in chosen:
        singles[i]()
    assert book.committable() == alone.committable() == {("t", 0): 15, ("t", 1): 12}
    assert woken == [1]  # once for the whole batch
    book.settle_many([acks[coordinates.index(("t", 1, 12))]])
    assert book.committable() == {("t", 0): 15, ("t", 1): 15}


def test_settle_many_of_a_revoked_partition_commits_nothing() -> None:
    book = OffsetBook()
    acks = book.register_many([("t", 0, 0), ("t", 0, 1)])
    assert book.release([("t", 0)]) == {}
    book.settle_many(acks)
    assert book.committable() == {}


def test_settling_from_many_threads_commits_exactly_the_contiguous_prefix() -> None:
    book = OffsetBook()
    acks = [book.register("t", 0, offset) for offset in range(2000)]
    held = acks.pop(1500)
    threads = [threading.Thread(target=lambda chunk=acks[i::4]: [a() for a in chunk]) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert book.committable() == {("t", 0): 1500}
    held()
    assert book.committable() == {("t", 0): 2000}


# -- settings and secrets ---------------------------------------------------------------------------------


def _config(**values: Any) -> KafkaSourceConfig:
    base: dict[str, Any] = {"topics": ["events"], "bootstrap_servers": "127.0.0.1:1"}
    base.update(values)
    return KafkaSourceConfig(**base)


def test_settings_defaults_then_passthrough_on_top_with_offset_handling_forced() -> None:
    settings = consumer_settings(
        _config(
            group_id="g",
            settings={
                "auto.offset.reset": "latest",
                "statistics.interval.ms": 1000,
                "enable.auto.commit": True,
                "enable.auto.offset.store": "true",
                "security.protocol": "SASL_SSL",
            },
            sasl_password=SECRET,
        )
    )
    assert settings["group.id"] == "g"
    assert settings["bootstrap.servers"] == "127.0.0.1:1"
    assert settings["partition.assignment.strategy"] == "cooperative-sticky"
    assert settings["auto.offset.reset"] == "latest"
    assert settings["statistics.interval.ms"] == 1000
    assert settings["security.protocol"] == "SASL_SSL"
    assert settings["sasl.password"] == SECRET
    assert settings["enable.auto.commit"] is False
    assert settings["enable.auto.offset.store"] is False


def test_the_broker_side_group_protocol_gets_no_client_assignor() -> None:
    settings = consumer_settings(_config(settings={"group.protocol": "consumer"}))
    assert "partition.assignment.strategy" not in settings
    overridden = consumer_settings(_config(settings={"partition.assignment.strategy": "range"}))
    assert overridden["partition.assignment.strategy"] == "range"


def test_a_source_without_topics_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="topics"):
        KafkaSource(KafkaSourceConfig(), Metrics(CollectorRegistry()))


def test_masking_and_redaction_hide_every_secret() -> None:
    settings = {
        "sasl.password": SECRET,
        "ssl.key.password": "kp",
        "sasl.oauthbearer.client.secret": "cs",
        "sasl.jaas.config": "jaas",
        "ssl.key.pem": "-----BEGIN",
        "sasl.username": "vec",
        "error_cb": print,
    }
    masked = mask_settings(settings)
    assert masked == {
        "sasl.password": "**********",
        "ssl.key.password": "**********",
        "sasl.oauthbearer.client.secret": "**********",
        "sasl.jaas.config": "**********",
        "ssl.key.pem": "**********",
        "sasl.username": "vec",
    }
    assert redact(f"bad value {SECRET!r} and kp", settings) == "bad value '**********' and **********"


def test_the_password_never_reaches_repr_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    config = _config(settings={"security.protocol": "bogus", "sasl.username": "vec"}, sasl_password=SECRET)
    source = KafkaSource(config, Metrics(CollectorRegistry()))
    assert SECRET not in repr(source)
    assert "**********" in repr(source)

    async def scenario() -> None:
        with pytest.raises(ConfigError) as raised:
            await source.run(_pipeline(MemorySink()), asyncio.Event())
        # A real librdkafka refusal (security.protocol), and nothing of the secret in it.
        assert "security.protocol" in str(raised.value)
        assert SECRET not in str(raised.value)
        assert raised.value.__cause__ is None and raised.value.__context__ is None
        await source.aclose()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(scenario())
    assert caplog.records
    for record in caplog.records:
        assert SECRET not in repr(vars(record))
        assert SECRET not in record.getMessage()


def test_a_library_error_echoing_the_password_is_redacted() -> None:
    def echoing_factory(config: dict[str, Any]) -> Any:
        raise KafkaException(KafkaError(KafkaError._INVALID_ARG, f"sasl.password={config['sasl.password']}"))

    source = KafkaSource(
        _config(sasl_password=SECRET), Metrics(CollectorRegistry()), consumer_factory=echoing_factory
    )

    async def scenario() -> None:
        with pytest.raises(ConfigError) as raised:
            await source.run(_pipeline(MemorySink()), asyncio.Event())
        assert SECRET not in str(raised.value)
        assert "sasl.password=**********" in str(raised.value)

    asyncio.run(scenario())


# -- the consumer thread, against a fake consumer ----------------------------------------------------------


class FakeConsumer:
    """Enough of confluent_kafka.Consumer for the source's thread; tests script it from outside.

    Everything the thread calls is recorded. ``feed`` queues messages; ``call_in_consume`` runs a
    callable inside the next consume(), the way librdkafka serves callbacks.
    """

    def __init__(self, config: dict[str, Any], partitions: Sequence[tuple[str, int]]) -> None:
        self.config = config
        self.initial = list(partitions)
        self.callbacks: dict[str, Callable[..., None]] = {}
        self.messages: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self.actions: queue.SimpleQueue[Callable[[FakeConsumer], None]] = queue.SimpleQueue()
        self.held: list[Message] = []
        self.assigned: set[tuple[str, int]] = set()
        self.paused: set[tuple[str, int]] = set()
        self.pauses = 0
        self.resumes = 0
        self.stored: dict[tuple[str, int], int] = {}
        self.async_commits = 0
        self.sync_commits: list[dict[tuple[str, int], int]] = []
        self.closed = False
        self.thread: threading.Thread | None = None

    def feed(self, topic: str, partition: int, offsets: Sequence[int], value: bytes | None = None) -> None:
        for offset in offsets:
            payload = value if value is not None else _payload(f"{topic}-{partition}-{offset}")
            self.messages.put(Message(topic=topic, partition=partition, offset=offset, value=payload))

    def call_in_consume(self, action: Callable[[FakeConsumer], None]) -> None:
        self.actions.put(action)

    def revoke(self, lanes: Sequence[tuple[str, int]]) -> None:
        self.callbacks["on_revoke"](self, [TopicPartition(t, p) for t, p in lanes])
        self.assigned -= set(lanes)

    # -- the Consumer surface ----------------------------------------------------------------------

    def subscribe(self, topics: list[str], **callbacks: Callable[..., None]) -> None:
        self.thread = threading.current_thread()
        self.callbacks = callbacks

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        assert threading.current_thread() is self.thread, "the consumer is used from one thread only"
        if self.initial:
            lanes, self.initial = self.initial, []
            self.callbacks["on_assign"](self, [TopicPartition(t, p) for t, p in lanes])
            self.assigned |= set(lanes)
        while not self.actions.empty():
            self.actions.get()(self)
        while not self.messages.empty():
            self.held.append(self.messages.get())
        out: list[Message] = []
        for message in list(self.held):
            if len(out) == num_messages:
                break
            if (message.topic(), message.partition()) not in self.paused:
                self.held.remove(message)
                out.append(message)
        if not out and timeout:
            time.sleep(min(timeout, 0.01))
        return out

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.pauses += 1
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.resumes += 1
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        for tp in offsets:
            assert (tp.topic, tp.partition) in self.assigned, "offsets are stored only for owned partitions"
            self.stored[(tp.topic, tp.partition)] = tp.offset

    def commit(self, offsets: list[TopicPartition] | None = None, asynchronous: bool = True) -> Any:
        if asynchronous:
            self.async_commits += 1
            return None
        assert offsets is not None
        self.sync_commits.append({(tp.topic, tp.partition): tp.offset for tp in offsets})
        return offsets

    def close(self) -> None:
        self.revoke(sorted(self.assigned))
        self.closed = True


def _payload(value: str) -> bytes:
    return orjson.dumps({"event_type": "custom", "use_case": "u", "custom_value": value})


def _pipeline(
    sink: MemorySink, metrics: Metrics | None = None, dead: MemoryDeadLetters | None = None, **batch: int
) -> Pipeline:
    metrics = metrics or Metrics(CollectorRegistry())
    return Pipeline(
        normalizer(ROUTES),
        sink,
        DeadLetterGate(dead or MemoryDeadLetters(), metrics),
        metrics,
        BatchConfig(**{"linger_ms": 0, **batch}),
    )


class _Harness:
    def __init__(
        self, partitions: Sequence[tuple[str, int]], *, sink: MemorySink | None = None, **batch: int
    ) -> None:
        self.metrics = Metrics(CollectorRegistry())
        self.sink = sink or MemorySink()
        self.dead = MemoryDeadLetters()
        self.pipeline = _pipeline(self.sink, self.metrics, self.dead, **batch)
        self.fakes: list[FakeConsumer] = []

        def factory(config: dict[str, Any]) -> Any:
            fake = FakeConsumer(config, partitions)
            self.fakes.append(fake)
            return fake

        self.source = KafkaSource(
            _config(consume_batch_size=10, consume_timeout_seconds=0.01, commit_interval_seconds=0.05),
            self.metrics,
            pause_after_seconds=0.02,
            submit_grace_seconds=0.5,
            consumer_factory=factory,
        )
        self.stop = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self.source.run(self.pipeline, self.stop))

    @property
    def fake(self) -> FakeConsumer:
        return self.fakes[0]

    async def until(self, condition: Callable[[], bool], timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.task.done():
                self.task.result()
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.01)

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 5)
        await self.pipeline.close(5)
        await self.source.aclose()

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels or {})


def test_a_revoke_commits_only_the_revoked_partitions_settled_offsets_and_drops_the_rest() -> None:
    async def scenario() -> None:
        sink = MemorySink()
        sink.gate = asyncio.Event()
        h = _Harness([("t", 0), ("t", 1)], sink=sink)
        await h.until(lambda: bool(h.fakes) and h.source.assignment == {("t", 0), ("t", 1)})
        h.fake.feed("t", 0, range(3))
        h.fake.feed("t", 1, range(3))
        await h.until(lambda: h.pipeline.in_flight == 6)
        h.fake.call_in_consume(lambda fake: fake.revoke([("t", 0)]))
        await h.until(lambda: h.source.assignment == {("t", 1)})
        assert h.fake.sync_commits == []  # nothing of t[0] was settled: nothing to commit
        sink.gate.set()  # t[0]'s messages settle after their revoke: their acks must do nothing
        await h.until(lambda: h.pipeline.in_flight == 0)
        await h.until(lambda: h.fake.stored == {("t", 1): 3})
        await h.shutdown()
        assert h.fake.sync_commits == [{("t", 1): 3}]  # at shutdown, only what this member owns
        assert h.fake.closed
        assert h.value("vision_events_kafka_rebalances_total", {"kind": "revoke"}) == 2

    asyncio.run(scenario())


def test_messages_consumed_but_not_handed_over_are_dropped_with_their_revoked_partition() -> None:
    async def scenario() -> None:
        sink = MemorySink()
        sink.gate = asyncio.Event()
        h = _Harness([("t", 0), ("t", 1)], sink=sink, max_in_flight_events=2)
        await h.until(lambda: bool(h.fakes) and len(h.source.assignment) == 2)
        h.fake.feed("t", 1, range(2))
        await h.until(lambda: h.pipeline.in_flight == 2)
        h.fake.feed("t", 0, range(5))  # no room: consumed, held back, partitions paused
        await h.until(lambda: h.value("vision_events_kafka_paused_partitions") == 2)
        h.fake.call_in_consume(lambda fake: fake.revoke([("t", 0)]))
        await h.until(lambda: h.source.assignment == {("t", 1)})
        sink.gate.set()
        await h.until(lambda: h.value("vision_events_kafka_paused_partitions") == 0)  # room again: resumed
        await asyncio.sleep(0.1)
        assert sorted(str(e.event_data["value"]) for e in sink.events) == ["t-1-0", "t-1-1"]
        await h.shutdown()
        assert h.fake.sync_commits == [{("t", 1): 2}]

    asyncio.run(scenario())


def test_backpressure_pauses_every_partition_and_resumes_with_room_for_a_batch() -> None:
    async def scenario() -> None:
        sink = MemorySink()
        sink.gate = asyncio.Event()
        h = _Harness([("t", 0), ("t", 1)], sink=sink, max_in_flight_events=5, max_events=5)
        await h.until(lambda: bool(h.fakes) and len(h.source.assignment) == 2)
        h.fake.feed("t", 0, range(10))
        h.fake.feed("t", 1, range(10))
        await h.until(lambda: h.value("vision_events_kafka_paused_partitions") == 2)
        assert h.value("vision_events_kafka_paused_partitions") == 2
        assert h.pipeline.in_flight <= 10  # the bound, or one batch when nothing was in flight
        sink.gate.set()
        await h.until(lambda: len(sink.events) == 20)
        await h.until(lambda: h.value("vision_events_kafka_paused_partitions") == 0)
        assert h.fake.pauses >= 1 and h.fake.resumes >= 1
        await h.shutdown()
        assert h.fake.sync_commits == [{("t", 0): 10, ("t", 1): 10}]
        assert h.value("vision_events_kafka_paused_partitions") == 0

    asyncio.run(scenario())


def test_after_stop_nothing_more_is_handed_over_and_the_final_commit_follows_the_drain() -> None:
    async def scenario() -> None:
        sink = MemorySink()
        sink.gate = asyncio.Event()
        h = _Harness([("t", 0)], sink=sink)
        await h.until(lambda: bool(h.fakes) and len(h.source.assignment) == 1)
        h.fake.feed("t", 0, range(4))
        await h.until(lambda: h.pipeline.in_flight == 4)
        h.stop.set()
        await asyncio.wait_for(h.task, 2)  # returns promptly, with messages still in flight
        await h.until(lambda: h.fake.paused == {("t", 0)})
        h.fake.feed("t", 0, range(4, 8))  # arrives after stop: never handed over
        await asyncio.sleep(0.1)
        assert h.fake.sync_commits == []
        sink.gate.set()
        assert await h.pipeline.close(5)
        await h.source.aclose()
        assert h.fake.sync_commits == [{("t", 0): 4}]
        assert len(sink.events) == 4
        assert not h.source.connected

    asyncio.run(scenario())


def test_errors_statistics_and_connection_state() -> None:
    async def scenario() -> None:
        h = _Harness([("t", 0), ("t", 1)])
        await h.until(lambda: bool(h.fakes) and len(h.source.assignment) == 2)
        assert h.source.connected  # an assignment means we reached the group coordinator
        config = h.fake.config
        h.fake.call_in_consume(lambda _f: config["error_cb"](KafkaError(KafkaError._ALL_BROKERS_DOWN)))
        await h.until(lambda: not h.source.connected)
        assert h.value("vision_events_source_connected", {"source": "kafka"}) == 0
        stats = {
            "brokers": {"b:9092/1": {"state": "UP"}},
            "topics": {
                "t": {
                    "partitions": {
                        "0": {"consumer_lag": 7, "consumer_lag_stored": 2},
                        "1": {"consumer_lag": -1, "consumer_lag_stored": 4},
                        "-1": {"consumer_lag": -1, "consumer_lag_stored": -1},
                    }
                },
                "other": {"partitions": {"0": {"consumer_lag": 99}}},
            },
        }
        h.fake.call_in_consume(lambda _f: config["stats_cb"](orjson.dumps(stats).decode()))
        await h.until(lambda: h.source.connected)
        assert h.value("vision_events_source_reconnects_total", {"source": "kafka"}) == 1
        assert h.value("vision_events_kafka_consumer_lag", {"topic": "t", "partition": "0"}) == 7
        assert h.value("vision_events_kafka_consumer_lag", {"topic": "t", "partition": "1"}) == 4
        assert h.value("vision_events_kafka_consumer_lag", {"topic": "other", "partition": "0"}) is None
        h.fake.call_in_consume(lambda fake: fake.revoke([("t", 0)]))
        await h.until(lambda: h.source.assignment == {("t", 1)})
        assert h.value("vision_events_kafka_consumer_lag", {"topic": "t", "partition": "0"}) is None
        unknown = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
        h.fake.messages.put(Message(topic="t", partition=1, error=KafkaError(KafkaError._PARTITION_EOF)))
        h.fake.messages.put(Message(topic="t", partition=1, error=unknown))
        await h.until(
            lambda: h.value("vision_events_kafka_errors_total", {"code": "UNKNOWN_TOPIC_OR_PART"}) == 1
        )
        assert h.value("vision_events_kafka_errors_total", {"code": "_PARTITION_EOF"}) is None
        await h.shutdown()

    asyncio.run(scenario())


def test_a_fatal_error_stops_the_source_with_a_clear_exception() -> None:
    async def scenario() -> None:
        h = _Harness([("t", 0)])
        await h.until(lambda: bool(h.fakes))
        config = h.fake.config
        h.fake.call_in_consume(
            lambda _f: config["error_cb"](
                KafkaError(KafkaError._FATAL, "fenced by a newer instance", fatal=True)
            )
        )
        with pytest.raises(KafkaSourceError, match="fenced by a newer instance"):
            await asyncio.wait_for(h.task, 5)
        assert h.fake.closed
        await h.source.aclose()

    asyncio.run(scenario())


def test_tombstones_and_headers_become_messages_with_kafka_coordinates() -> None:
    async def scenario() -> None:
        h = _Harness([("t", 0)])
        await h.until(lambda: bool(h.fakes))
        h.fake.messages.put(
            Message(topic="t", partition=0, offset=0, key=b"k", value=None, headers=[("h", b"1")])
        )
        h.fake.messages.put(
            Message(topic="t", partition=0, offset=1, value=_payload("x"), headers=[("n", None)])
        )
        await h.until(lambda: h.pipeline.stats.settled() == 2)
        [tombstone] = h.dead.records
        assert tombstone.payload == b""
        assert tombstone.coordinates == {
            "source": "kafka",
            "topic": "t",
            "partition": 0,
            "offset": 0,
            "key": "k",
        }
        assert tombstone.headers == (("h", b"1"),)
        [event] = h.sink.events
        assert event.message.headers == (("n", b""),)
        assert event.message.subscription == "t"
        await h.shutdown()
        assert h.fake.sync_commits == [{("t", 0): 2}]

    asyncio.run(scenario())


def test_a_non_fatal_consume_exception_is_counted_and_consuming_goes_on() -> None:
    def transport_down(_fake: FakeConsumer) -> None:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "connection reset"))

    async def scenario() -> None:
        h = _Harness([("t", 0)])
        await h.until(lambda: bool(h.fakes) and len(h.source.assignment) == 1)
        h.fake.call_in_consume(transport_down)
        h.fake.feed("t", 0, range(3))
        await h.until(lambda: len(h.sink.events) == 3)
        assert h.value("vision_events_kafka_errors_total", {"code": "_TRANSPORT"}) == 1
        await h.shutdown()
        assert h.fake.sync_commits == [{("t", 0): 3}]

    asyncio.run(scenario())


def test_a_fatal_consume_exception_stops_the_source() -> None:
    def fenced(_fake: FakeConsumer) -> None:
        raise KafkaException(KafkaError(KafkaError._FATAL, "fenced", fatal=True))

    async def scenario() -> None:
        h = _Harness([("t", 0)])
        await h.until(lambda: bool(h.fakes))
        h.fake.call_in_consume(fenced)
        with pytest.raises(KafkaSourceError, match="fenced"):
            await asyncio.wait_for(h.task, 5)
        await h.source.aclose()

    asyncio.run(scenario())
