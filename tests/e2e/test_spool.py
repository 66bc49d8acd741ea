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
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.brokers import unavailable
from tests.support.corpus import CorpusMessage
from tests.support.process import ConsumerProcess, free_port, wait_until
from tests.support.stack import Stack, open_stack
from tests.support.transports import KafkaTransport, MqttTransport, Transport

pytestmark = pytest.mark.e2e

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


def _stack(transport: Transport, tmp_path: Path) -> AbstractContextManager[Stack]:
    # Every consumer of a test shares one spool file, so a restart finds what was spooled before; the
    # dead letters go to a file, read back the same way for either broker. A short retry backoff lets
    # the drain resume soon after the API comes back.
    return open_stack(
        transport,
        tmp_path,
        drain_deadline=DRAIN_DEADLINE,
        spool=True,
        dead_letter_file=True,
        retry_max_seconds=0.5,
    )


@pytest.fixture
def mqtt_stack(default_mosquitto: Mosquitto, tmp_path: Path) -> Iterator[Stack]:
    with _stack(MqttTransport(default_mosquitto.url), tmp_path) as stack:
        yield stack


@pytest.fixture(params=["mqtt", "kafka"])
def any_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    if request.param == "mqtt":
        transport: Transport = MqttTransport(request.getfixturevalue("default_mosquitto").url)
    else:
        transport = KafkaTransport(request.getfixturevalue("kafka_bootstrap"))
    with _stack(transport, tmp_path) as stack:
        yield stack


def _publish_at_the_consumers_pace(
    stack: Stack, consumer: ConsumerProcess, corpus: list[CorpusMessage], *, lead: int = 1000
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
    mqtt_stack: Stack, default_mosquitto: Mosquitto
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


def test_sigkill_while_draining_loses_nothing(mqtt_stack: Stack) -> None:
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


def test_a_full_spool_stops_acknowledging_and_loses_nothing(any_stack: Stack) -> None:
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
