"""The whole consumer, as a process, against real brokers and the API stand-in over sockets.

For MQTT (Mosquitto) and Kafka each: 10 000 mixed messages; API failures with a SIGKILL and a
restart mid-stream; SIGTERM under load; two consumers sharing the load. Every valid message's
event must arrive (by eventId), every invalid one must be in the dead-letter topic with its
reason and original bytes, and the process's own metrics must agree.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from consumer.cli import main
from consumer.fakeapi import FakeVisionEventsApi
from tests.support.corpus import USE_CASES
from tests.support.process import ConsumerProcess, wait_until
from tests.support.stack import API_KEY, Stack, open_stack
from tests.support.transports import KafkaTransport, MqttTransport, Transport

pytestmark = pytest.mark.e2e

BROKERS_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "brokers.sh"
DRAIN_DEADLINE = 15.0


@pytest.fixture(params=["mqtt", "kafka"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    if request.param == "mqtt":
        transport: Transport = MqttTransport(request.getfixturevalue("mqtt_url"))
    else:
        transport = KafkaTransport(request.getfixturevalue("kafka_bootstrap"))
    with open_stack(transport, tmp_path, drain_deadline=DRAIN_DEADLINE) as built:
        yield built


def test_ten_thousand_mixed_messages(stack: Stack) -> None:
    corpus = stack.corpus(10_000, seed=21)
    consumer = stack.consumer("single").start()
    consumer.wait_ready()
    stack.transport.publish(corpus)
    stack.wait_for_everything(corpus)
    valid = sum(1 for m in corpus if m.event_type is not None)
    invalid = len(corpus) - valid
    wait_until(
        lambda: consumer.metric_total("vision_events_events_delivered_total") == valid,
        10,
        "the delivered counter to catch up",
    )
    metrics = consumer.metrics()
    assert consumer.metric_total("vision_events_messages_received_total") == len(corpus)
    assert consumer.metric_total("vision_events_dead_letters_total") == invalid
    assert metrics["vision_events_in_flight_events"] == 0
    assert consumer.terminate(DRAIN_DEADLINE + 10) == 0
    stack.check_outcome(corpus, exactly_once_dead_letters=True)


def test_api_failures_and_sigkill_lose_nothing(stack: Stack) -> None:
    corpus = stack.corpus(10_000, seed=22)
    valid = [m for m in corpus if m.event_type is not None]
    stack.api.add_fault("/vision-events/batch", statuses=(500, 429), retry_after=1, times=20, fail_ratio=0.5)
    stack.api.add_fault("/vision-events/upload", statuses=(503,), times=10, fail_ratio=0.3)
    first = stack.consumer("victim").start()
    first.wait_ready()
    stack.transport.publish(corpus[:5000])
    wait_until(lambda: len(stack.api.events()) > len(valid) // 5, 60, "some events delivered before the kill")
    first.kill()
    stack.transport.publish(corpus[5000:])
    # Restarted as the same replica (same MQTT client id), as a StatefulSet pod is.
    second = stack.consumer("victim").start()
    second.wait_ready()
    stack.wait_for_everything(corpus)
    stack.check_outcome(corpus, exactly_once_dead_letters=False)
    requests = stack.api.stats()["requests"]["POST /vision-events/batch"]
    assert requests.get("500", 0) + requests.get("429", 0) > 0
    assert second.terminate(DRAIN_DEADLINE + 10) == 0


def test_sigterm_under_load_drains_within_the_deadline(stack: Stack) -> None:
    corpus = stack.corpus(10_000, seed=23)
    valid = [m for m in corpus if m.event_type is not None]
    stack.api.set_latency(0.05)  # a slow API keeps work in flight when SIGTERM arrives
    first = stack.consumer("draining").start()
    first.wait_ready()
    stack.transport.publish(corpus)
    wait_until(lambda: len(stack.api.events()) > len(valid) // 4, 60, "a quarter delivered")
    began = time.monotonic()
    code = first.terminate(DRAIN_DEADLINE + 10)
    took = time.monotonic() - began
    assert code == 0, first.log_tail()
    assert took < DRAIN_DEADLINE + 5
    stack.api.set_latency(0.0)
    second = stack.consumer("draining").start()
    second.wait_ready()
    stack.wait_for_everything(corpus)
    stack.check_outcome(corpus, exactly_once_dead_letters=False)
    assert second.terminate(DRAIN_DEADLINE + 10) == 0


def test_two_consumers_share_the_load(stack: Stack) -> None:
    corpus = stack.corpus(10_000, seed=24)
    # Kafka: the topics exist before the group forms, so both members are assigned partitions before
    # anything is published (otherwise the first member may drain everything before the second joins).
    stack.transport.prepare(corpus)
    one = stack.consumer("one").start()
    two = stack.consumer("two").start()
    one.wait_ready()
    two.wait_ready()
    if stack.transport.name == "kafka":
        wait_until(
            lambda: all(p.log_contains('"partitions assigned"') for p in (one, two)), 60, "both assigned"
        )
    time.sleep(3)  # let the group settle (MQTT: the shared subscription of both)
    stack.transport.publish(corpus)
    stack.wait_for_everything(corpus)
    delivered = [p.metric_total("vision_events_events_delivered_total") for p in (one, two)]
    logs = "\n---\n".join(p.log_tail(30) for p in (one, two))
    assert all(d > 0 for d in delivered), f"one consumer did all the work: {delivered}\n{logs}"
    assert sum(delivered) >= sum(1 for m in corpus if m.event_type is not None)
    stack.check_outcome(corpus, exactly_once_dead_letters=False)
    assert one.terminate(DRAIN_DEADLINE + 10) == 0
    assert two.terminate(DRAIN_DEADLINE + 10) == 0


def test_replay_from_the_dead_letter_topic(stack: Stack) -> None:
    corpus = [m for m in stack.corpus(2_000, seed=25) if m.event_type is not None]
    refused = {m.event_id for m in corpus if m.event_type == "inventory_count"}
    consumer = stack.consumer("replayed")
    if stack.transport.name == "mqtt":
        # MQTT keeps nothing for an absent subscriber: create the replay session first.
        assert (
            main(
                [
                    "replay",
                    "--config",
                    str(consumer.config),
                    "--from",
                    _dlq(stack),
                    "--dry-run",
                    "--idle-seconds",
                    "0.5",
                ]
            )
            == 0
        )
    # The API does not know the "inventory" use case yet: those events are refused for good.
    port = stack.api.port
    stack.api.stop()
    known = [u for u in USE_CASES if u != "inventory"]
    stack.api = FakeVisionEventsApi(port=port, api_keys=(API_KEY,), use_cases=known).start()
    consumer.start().wait_ready()
    stack.transport.publish(corpus)
    wait_until(
        lambda: len(stack.transport.dead_letters()) >= len(refused), 60, "the refused events dead-lettered"
    )
    assert consumer.terminate(DRAIN_DEADLINE + 10) == 0
    assert {r.reason for r in stack.transport.dead_letters()} == {"api_rejected"}
    assert not refused & stack.api.events().keys()

    stack.api.stop()
    stack.api = FakeVisionEventsApi(port=port, api_keys=(API_KEY,), use_cases=USE_CASES).start()
    args = ["replay", "--config", str(consumer.config), "--from", _dlq(stack), "--reason", "api_rejected"]
    assert main([*args, "--idle-seconds", "2"]) == 0
    assert stack.api.events().keys() == refused


def _dlq(stack: Stack) -> str:
    return f"{stack.transport.name}:{stack.transport.dlq_topic}"


def test_broker_restart_is_survived_and_readiness_follows(stack: Stack) -> None:
    corpus = stack.corpus(4_000, seed=26)
    consumer = stack.consumer("steadfast").start()
    consumer.wait_ready()
    stack.transport.publish(corpus[:2000])
    wait_until(lambda: len(stack.api.events()) > 500, 60, "some events delivered")
    broker = "kafka" if stack.transport.name == "kafka" else "mqtt"
    subprocess.run([str(BROKERS_SCRIPT), f"stop-{broker}"], check=True, capture_output=True)
    try:
        wait_until(lambda: not _ready(consumer), 30, "readiness to turn false while the broker is down")
    finally:
        subprocess.run([str(BROKERS_SCRIPT), f"start-{broker}"], check=True, capture_output=True)
    consumer.wait_ready(90)
    stack.transport.publish(corpus[2000:])
    stack.wait_for_everything(corpus)
    stack.check_outcome(corpus, exactly_once_dead_letters=False)
    assert consumer.terminate(DRAIN_DEADLINE + 10) == 0


def _ready(consumer: ConsumerProcess) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{consumer.port}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
