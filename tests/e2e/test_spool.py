"""Store-and-forward end to end: the consumer as a process, real brokers, the API stand-in down for a while.

MQTT runs against a private Mosquitto started for this module with Mosquitto's DEFAULT limits
(``max_queued_messages`` 1000: beyond that a broker drops messages for a client that does not take
them), which is what a site's broker usually has. Kafka uses the shared broker.

1. The API is down (503 to everything) for a whole run of 50 000 MQTT messages: every message is
   spooled and acknowledged, so the broker drops nothing; then the API comes back and every event
   arrives once, by eventId.
2. SIGKILL while the spool drains: after a restart everything arrives (a duplicate can only be the
   same eventId sent again).
3. A full spool: the source stops acknowledging (backpressure) and nothing is lost once it drains.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from consumer.deadletter import read_dead_letters
from consumer.fakeapi import FakeVisionEventsApi
from tests.support.brokers import unavailable
from tests.support.corpus import USE_CASES, CorpusMessage, build_corpus
from tests.support.process import ConsumerProcess, free_port, wait_until, write_settings
from tests.support.transports import KafkaTransport, MqttTransport, Transport

pytestmark = pytest.mark.e2e

API_KEY = "e2e-spool-key"
DRAIN_DEADLINE = 10.0
MOSQUITTO = "/usr/sbin/mosquitto"


@dataclass
class Mosquitto:
    """A private broker with Mosquitto's default queue limits."""

    url: str
    log: Path

    def dropped(self) -> list[str]:
        """Broker log lines saying it dropped messages for a client."""
        return [
            line for line in self.log.read_text(errors="replace").splitlines() if "dropped" in line.lower()
        ]


@pytest.fixture(scope="module")
def default_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    binary = MOSQUITTO if Path(MOSQUITTO).exists() else shutil.which("mosquitto")
    if binary is None:
        unavailable("mosquitto (apt-get install mosquitto)")
        return
    directory = tmp_path_factory.mktemp("mosquitto")
    port = free_port()
    config = directory / "mosquitto.conf"
    # Nothing about queues or in-flight windows: Mosquitto's defaults (max_queued_messages 1000).
    config.write_text(
        f"user {getpass.getuser()}\n"
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "log_dest stderr\n"
        "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
    )
    log = directory / "mosquitto.log"
    with log.open("ab") as output:
        broker = subprocess.Popen(
            [binary, "-c", str(config)], stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
    try:

        def listening() -> bool:
            if broker.poll() is not None:
                raise AssertionError(f"mosquitto exited: {log.read_text()}")
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, 20, "the private mosquitto to listen")
        yield Mosquitto(f"mqtt://127.0.0.1:{port}", log)
    finally:
        broker.terminate()
        try:
            broker.wait(10)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait(10)


@dataclass
class SpoolStack:
    """A transport, the stand-in, and consumers sharing one spool file and one dead-letter file."""

    transport: Transport
    api: FakeVisionEventsApi
    tmp: Path
    routes: Path
    started: list[ConsumerProcess] = field(default_factory=list)

    @property
    def dead_path(self) -> Path:
        return self.tmp / "dead-letters.jsonl"

    def consumer(self, name: str, **overrides: Any) -> ConsumerProcess:
        port = free_port()
        settings: dict[str, Any] = {
            "routes": str(self.routes),
            **self.transport.source_settings(
                client_id=f"{self.transport.topics.prefix}-spool",
                group=f"{self.transport.topics.prefix}-group",
            ),
            "sink": {"type": "cloud", "cloud": {"base_url": self.api.url, "api_key": API_KEY}},
            "dead_letter": {"type": "jsonl", "jsonl": {"path": str(self.dead_path)}},
            "spool": {"enabled": True, "path": str(self.tmp / "spool" / "spool.db")},
            "batch": {"linger_ms": 50, "max_in_flight_events": 4000},
            "retry": {"initial_backoff_seconds": 0.05, "max_backoff_seconds": 0.5},
            "http": {"host": "127.0.0.1", "port": port},
            "shutdown_deadline_seconds": DRAIN_DEADLINE,
            "log": {"level": "INFO"},
        }
        for dotted, value in overrides.items():
            tree = settings
            *parents, last = dotted.split(".")
            for key in parents:
                tree = tree.setdefault(key, {})
            tree[last] = value
        config = write_settings(self.tmp / f"{name}.yaml", settings)
        process = ConsumerProcess(config, port, self.tmp / f"{name}.log")
        self.started.append(process)
        return process

    def corpus(self, count: int, seed: int) -> list[CorpusMessage]:
        return build_corpus(count, seed=seed, topics=self.transport.topics)

    def api_down(self) -> None:
        self.api.add_fault("/vision-events", statuses=(503,), fail_ratio=1.0, times=None)

    def dead_letters(self) -> list[tuple[bytes, str]]:
        if not self.dead_path.exists():
            return []
        return [(r.payload, r.reason) for r in read_dead_letters(self.dead_path)]

    def logs(self) -> str:
        return "\n---\n".join(p.log_tail(20) for p in self.started)

    def wait_for_everything(self, corpus: list[CorpusMessage], timeout: float = 120) -> None:
        valid = {m.event_id for m in corpus if m.event_type is not None}
        invalid = {(m.payload, m.reason) for m in corpus if m.reason is not None}

        def done() -> bool:
            return valid <= self.api.events().keys() and invalid <= set(self.dead_letters())

        try:
            wait_until(done, timeout, "every event delivered and every invalid message dead-lettered", 0.5)
        except AssertionError:
            missing = len(valid - self.api.events().keys())
            raise AssertionError(f"{missing} events missing\n{self.logs()}") from None

    def check_outcome(self, corpus: list[CorpusMessage]) -> None:
        """Every valid message arrived with its type and nothing else arrived; every invalid one is dead."""
        valid = {m.event_id: m.event_type for m in corpus if m.event_type is not None}
        assert {eid: body["eventType"] for eid, body in self.api.events().items()} == valid
        expected_dead = {(m.payload, m.reason) for m in corpus if m.reason is not None}
        assert set(self.dead_letters()) == expected_dead


def _stack(transport: Transport, tmp_path: Path) -> Iterator[SpoolStack]:
    routes = tmp_path / "routes.yaml"
    routes.write_text(transport.topics.routes_yaml())
    api = FakeVisionEventsApi(api_keys=(API_KEY,), use_cases=USE_CASES).start()
    stack = SpoolStack(transport, api, tmp_path, routes)
    try:
        yield stack
    finally:
        for process in stack.started:
            process.stop_quietly()
        api.stop()
        transport.close()


@pytest.fixture
def mqtt_stack(default_mosquitto: Mosquitto, tmp_path: Path) -> Iterator[SpoolStack]:
    yield from _stack(MqttTransport(default_mosquitto.url), tmp_path)


@pytest.fixture(params=["mqtt", "kafka"])
def any_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SpoolStack]:
    if request.param == "mqtt":
        transport: Transport = MqttTransport(request.getfixturevalue("default_mosquitto").url)
    else:
        transport = KafkaTransport(request.getfixturevalue("kafka_bootstrap"))
    yield from _stack(transport, tmp_path)


def _publish_at_the_consumers_pace(
    stack: SpoolStack, consumer: ConsumerProcess, corpus: list[CorpusMessage], *, lead: int = 1000
) -> None:
    """Publish in chunks, never more than ``lead`` ahead of what the consumer settled.

    A device publishing at a rate the consumer sustains: with Mosquitto's defaults (1000 queued, on top
    of our Receive Maximum of 1000) the broker drops nothing as long as the consumer keeps
    acknowledging, which, with the API down, only the spool lets it do. The broker's limit counts
    unacknowledged messages, so the pace follows what was settled (spooled or dead-lettered, then
    acknowledged), not what was received: under load the acknowledgements lag the receipts.
    """
    chunk = 500
    for start in range(0, len(corpus), chunk):
        wait_until(
            lambda start=start: (
                start
                - consumer.metric_total("vision_events_spool_spooled_total")
                - consumer.metric_total("vision_events_dead_letters_total")
                <= lead
            ),
            60,
            f"the consumer to keep up (published {start})\n{stack.logs()}",
            0.05,
        )
        stack.transport.publish(corpus[start : start + chunk])


def test_a_whole_run_with_the_api_down_is_spooled_and_delivered_once(
    mqtt_stack: SpoolStack, default_mosquitto: Mosquitto
) -> None:
    stack = mqtt_stack
    corpus = stack.corpus(50_000, seed=61)
    valid = {m.event_id for m in corpus if m.event_type is not None}
    invalid = len(corpus) - len(valid)
    stack.api_down()
    consumer = stack.consumer("outage").start()
    consumer.wait_ready()
    began = time.monotonic()
    _publish_at_the_consumers_pace(stack, consumer, corpus)
    wait_until(
        lambda: (
            consumer.metric_total("vision_events_spool_spooled_total")
            + consumer.metric_total("vision_events_dead_letters_total")
            == len(corpus)
        ),
        120,
        "every message spooled or dead-lettered",
        0.5,
    )
    spooled_in = time.monotonic() - began
    metrics = consumer.metrics()
    # All 50 000 acknowledged: received, spooled or dead-lettered, none in flight, none delivered.
    assert consumer.metric_total("vision_events_messages_received_total") == len(corpus)
    assert metrics["vision_events_spool_events"] == len(valid)
    assert consumer.metric_total("vision_events_dead_letters_total") == invalid
    assert metrics["vision_events_in_flight_events"] == 0
    assert consumer.metric_total("vision_events_events_delivered_total") == 0
    assert stack.api.events() == {}
    assert metrics["vision_events_ready"] == 1
    assert default_mosquitto.dropped() == [], "the broker dropped messages"
    assert len(stack.dead_letters()) == invalid

    stack.api.clear_faults()
    began = time.monotonic()
    stack.wait_for_everything(corpus)
    drained_in = time.monotonic() - began
    wait_until(lambda: consumer.metrics()["vision_events_spool_events"] == 0, 10, "an empty spool")
    assert consumer.metric_total("vision_events_events_delivered_total") == len(valid)
    assert consumer.metric_total("vision_events_spool_drained_total") == len(valid)
    assert stack.api.overwrites == 0, "an event was delivered twice"
    stack.check_outcome(corpus)
    assert consumer.terminate(DRAIN_DEADLINE + 10) == 0
    print(
        f"50 000 messages: spooled in {spooled_in:.1f} s, {len(valid)} events drained in {drained_in:.1f} s"
    )


def test_sigkill_while_draining_loses_nothing(mqtt_stack: SpoolStack) -> None:
    stack = mqtt_stack
    corpus = stack.corpus(10_000, seed=62)
    valid = [m for m in corpus if m.event_type is not None]
    stack.api_down()
    first = stack.consumer("victim").start()
    first.wait_ready()
    _publish_at_the_consumers_pace(stack, first, corpus)
    wait_until(lambda: first.metrics()["vision_events_spool_events"] == len(valid), 60, "all spooled")
    stack.api.clear_faults()
    stack.api.set_latency(0.02)  # a drain slow enough to be interrupted
    wait_until(lambda: len(stack.api.events()) > len(valid) // 4, 60, "a quarter delivered")
    first.kill()
    assert len(stack.api.events()) < len(valid), "the kill came after the drain"
    stack.api.set_latency(0.0)
    second = stack.consumer("victim").start()  # the same spool file
    second.wait_ready()
    stack.wait_for_everything(corpus)
    stack.check_outcome(corpus)  # only the eventIds of the corpus, each with its own type
    wait_until(lambda: second.metrics()["vision_events_spool_events"] == 0, 10, "an empty spool")
    assert second.terminate(DRAIN_DEADLINE + 10) == 0


def test_a_full_spool_stops_acknowledging_and_loses_nothing(any_stack: SpoolStack) -> None:
    stack = any_stack
    # MQTT with default limits holds 1000 unacknowledged at the consumer plus 1000 queued: 2000 fit.
    count = 2000 if stack.transport.name == "mqtt" else 3000
    corpus = stack.corpus(count, seed=63)
    stack.api_down()
    consumer = stack.consumer(
        "full", **{"spool.max_events": 300, "batch.max_in_flight_events": 1000, "batch.max_events": 50}
    ).start()
    consumer.wait_ready()
    stack.transport.publish(corpus)
    wait_until(
        lambda: consumer.metrics()["vision_events_spool_full"] == 1, 60, f"a full spool\n{stack.logs()}"
    )
    # Messages keep coming until the in-flight window is full, then the source takes no more.
    seen: list[float] = []

    def settled() -> bool:
        seen.append(consumer.metric_total("vision_events_messages_received_total"))
        return len(seen) > 1 and seen[-1] == seen[-2]

    wait_until(settled, 30, "the source to stop taking messages", 1.0)
    received = seen[-1]
    time.sleep(2)
    metrics = consumer.metrics()
    assert metrics["vision_events_spool_events"] <= 300
    assert metrics["vision_events_in_flight_events"] > 0, "messages wait, unacknowledged"
    assert consumer.metric_total("vision_events_messages_received_total") == received < count, (
        "the source stopped taking messages"
    )
    assert metrics["vision_events_ready"] == 1, "a full spool is backpressure, not a failure"
    stack.api.clear_faults()
    stack.wait_for_everything(corpus)
    stack.check_outcome(corpus)
    assert consumer.metrics()["vision_events_spool_full"] == 0
    assert consumer.terminate(DRAIN_DEADLINE + 10) == 0
