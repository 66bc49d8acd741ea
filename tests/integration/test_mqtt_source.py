"""MqttSource and the MQTT dead-letter writer against a real Mosquitto (``mqtt_url``).

Every test uses its own topics and client ids, and removes the persistent sessions it made, so
tests can share one broker (also with other suites running at the same time).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from consumer.config import BatchConfig, MqttDeadLetterConfig, MqttSourceConfig
from consumer.deadletter import DeadLetterRecord
from consumer.deadletter.mqtt import MqttDeadLetterWriter, record_from_mqtt_payload
from consumer.delivery import DeadLetterGate
from consumer.errors import DeadLetterError
from consumer.metrics import Metrics
from consumer.model import InboundMessage
from consumer.pipeline import Pipeline
from consumer.sources.mqtt import MqttSource
from tests.support.ci import missing
from tests.support.doubles import MemorySink
from tests.support.messages import normalizer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BASH = shutil.which("bash") or "/bin/bash"
WAIT = 20.0

# -- helpers --------------------------------------------------------------------------------------


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 1883


def _valid(prefix: str, index: int) -> bytes:
    return orjson.dumps({"event_type": "custom", "use_case": "u", "custom_value": f"{prefix}-{index}"})


def _invalid(index: int) -> bytes:
    return b"not json {" + str(index).encode() + b"\xff"


class Publisher:
    """An edge device: publishes at QoS 1 and waits for every PUBACK."""

    def __init__(self, url: str, protocol: MQTTProtocolVersion = paho.MQTTv5) -> None:
        host, port = _host_port(url)
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:10]}", protocol=protocol
        )
        self.client.reconnect_delay_set(1, 2)
        self.client.connect(host, port)
        self.client.loop_start()

    def publish(self, topic: str, payloads: Sequence[bytes], qos: int = 1) -> None:
        infos = [self.client.publish(topic, p, qos=qos) for p in payloads]
        for info in infos:
            info.wait_for_publish(WAIT)
            assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class DeadLetterReader:
    """An operator watching the dead-letter topic."""

    def __init__(self, url: str, topic: str) -> None:
        host, port = _host_port(url)
        self.records: list[DeadLetterRecord] = []
        self.user_properties: list[dict[str, str]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"dlq-reader-{uuid.uuid4().hex[:10]}", protocol=paho.MQTTv5
        )
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert subscribed.wait(WAIT), "dead-letter subscription not confirmed"

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        props = dict(getattr(msg.properties, "UserProperty", []) or [])
        with self._lock:
            self.records.append(record_from_mqtt_payload(msg.payload))
            self.user_properties.append(props)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def forget_session(url: str, client_id: str) -> None:
    """Remove a persistent session from the broker (clean start, expiry 0)."""
    host, port = _host_port(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    with suppress(OSError):
        client.connect(host, port, clean_start=True)
        client.loop_start()
        deadline = time.monotonic() + 5
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        client.disconnect()
        client.loop_stop()


@contextmanager
def sessions(url: str, *client_ids: str) -> Iterator[None]:
    try:
        yield
    finally:
        for client_id in client_ids:
            forget_session(url, client_id)


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Consumer:
    """One consumer process in miniature: MqttSource -> Pipeline -> MemorySink, MQTT dead letters."""

    def __init__(
        self,
        url: str,
        prefix: str,
        client_id: str,
        *,
        dlq_topic: str,
        sink: MemorySink | None = None,
        protocol: str = "5",
        batch: BatchConfig | None = None,
        put_timeout_seconds: float | None = None,
        max_buffered: int | None = None,
        pipeline_class: type[Pipeline] = Pipeline,
        **source: Any,
    ) -> None:
        self.metrics = Metrics(CollectorRegistry())
        table = f"routes: [{{name: all, match: '{prefix}/#'}}]"
        self.config = MqttSourceConfig.model_validate(
            {
                "url": url,
                "client_id": client_id,
                "protocol": protocol,
                "session_expiry_seconds": 300,
                "reconnect_min_seconds": 1,
                "reconnect_max_seconds": 2,
                **source,
            }
        )
        self.source = MqttSource(
            self.config,
            [f"{prefix}/#"],
            self.metrics,
            put_timeout_seconds=put_timeout_seconds,
            max_buffered=max_buffered,
        )
        self.sink = sink or MemorySink()
        self.dead_letters = MqttDeadLetterWriter(
            MqttDeadLetterConfig(topic=dlq_topic, timeout_seconds=10),
            self.config,
            source_filters=[s.filter for s in self.source.subscriptions],
        )
        self.pipeline = pipeline_class(
            normalizer(table),
            self.sink,
            DeadLetterGate(self.dead_letters, self.metrics),
            self.metrics,
            batch or BatchConfig(max_events=10, linger_ms=20),
        )
        self.stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.source.run(self.pipeline, self.stop))
        await wait_until(lambda: self.source.connected, "the source to connect and subscribe")

    async def close(self, deadline: float = 5.0) -> bool:
        """The app's shutdown order: stop, run returns, drain the pipeline, then aclose."""
        self.stop.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, WAIT)
        drained = await self.pipeline.close(deadline)
        await self.source.aclose()
        await self.dead_letters.aclose()
        assert not self.source.connected
        return drained


@asynccontextmanager
async def running(consumer: Consumer) -> AsyncIterator[Consumer]:
    await consumer.start()
    try:
        yield consumer
    finally:
        if not consumer.stop.is_set():
            await consumer.close()


def _uid() -> str:
    return uuid.uuid4().hex[:10]


# -- (1) and (6): delivery and dead letters, MQTT 5 and 3.1.1 --------------------------------------


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_valid_messages_are_delivered_once_and_invalid_ones_dead_lettered(
    mqtt_url: str, protocol: str
) -> None:
    uid = _uid()
    prefix, dlq_topic, client_id = f"it-{uid}", f"it-dlq-{uid}", f"it-src-{uid}"
    valid = [_valid(prefix, i) for i in range(60)]
    invalid = [_invalid(i) for i in range(6)]
    mixed = [*valid[:20], *invalid[:3], *valid[20:40], *invalid[3:], *valid[40:]]

    async def scenario() -> None:
        reader = DeadLetterReader(mqtt_url, dlq_topic)
        publisher = Publisher(mqtt_url, paho.MQTTv5 if protocol == "5" else paho.MQTTv311)
        consumer = Consumer(mqtt_url, prefix, client_id, dlq_topic=dlq_topic, protocol=protocol)
        try:
            async with running(consumer):
                await asyncio.to_thread(publisher.publish, f"{prefix}/cam/1", mixed)
                await wait_until(
                    lambda: len(consumer.sink.events) >= len(valid) and len(reader.records) >= len(invalid),
                    "every message to settle",
                )
                await wait_until(lambda: consumer.source.stats.acks_sent == len(mixed), "every PUBACK")
                assert await consumer.close()
            assert Counter(consumer.sink.payloads()) == Counter(valid)
            assert sorted(r.payload for r in reader.records) == sorted(invalid)
            assert {r.reason for r in reader.records} == {"invalid_json"}
            assert all(r.coordinates["topic"] == f"{prefix}/cam/1" for r in reader.records)
            assert all(r.coordinates["qos"] == 1 for r in reader.records)
            if protocol == "5":
                assert all(p["reason"] == "invalid_json" for p in reader.user_properties)
                assert all(p["source_topic"] == f"{prefix}/cam/1" for p in reader.user_properties)
            assert consumer.source.stats.dropped == 0
            assert {e.message.subscription for e in consumer.sink.events} == {f"{prefix}/#"}
        finally:
            publisher.close()
            reader.close()

    with sessions(mqtt_url, client_id):
        asyncio.run(scenario())
        # Everything was acknowledged: a restart with the same client id gets nothing again.
        assert _redelivered(mqtt_url, client_id, prefix, protocol) == 0


def _redelivered(url: str, client_id: str, prefix: str, protocol: str) -> int:
    async def scenario() -> int:
        consumer = Consumer(url, prefix, client_id, dlq_topic=f"unused-{_uid()}", protocol=protocol)
        async with running(consumer):
            await asyncio.sleep(1.0)
        return consumer.source.stats.received

    with sessions(url, client_id):
        return asyncio.run(scenario())


def test_qos0_and_qos2_messages_flow_and_qos2_is_completed(mqtt_url: str) -> None:
    uid = _uid()
    prefix, client_id = f"it-{uid}", f"it-src-{uid}"
    by_qos = {qos: [_valid(prefix, qos * 100 + i) for i in range(10)] for qos in (0, 1, 2)}

    async def scenario() -> None:
        publisher = Publisher(mqtt_url)
        consumer = Consumer(
            mqtt_url,
            prefix,
            client_id,
            dlq_topic=f"it-dlq-{uid}",
            subscriptions=[{"filter": f"{prefix}/#", "qos": 2}],
        )
        try:
            async with running(consumer):
                for qos, payloads in by_qos.items():
                    await asyncio.to_thread(publisher.publish, f"{prefix}/q{qos}", payloads, qos)
                await wait_until(lambda: len(consumer.sink.events) == 30, "every message")
                # PUBACK for QoS 1, PUBCOMP for QoS 2, nothing for QoS 0.
                await wait_until(lambda: consumer.source.stats.acks_sent == 20, "the acknowledgements")
                await consumer.close()
        finally:
            publisher.close()
        assert Counter(consumer.sink.payloads()) == Counter(p for ps in by_qos.values() for p in ps)
        assert {e.message.qos for e in consumer.sink.events} == {0, 1, 2}

    with sessions(mqtt_url, client_id):
        asyncio.run(scenario())
        assert _redelivered(mqtt_url, client_id, prefix, "5") == 0


# -- (2) ack order ----------------------------------------------------------------------------------


def test_pubacks_follow_receive_order_when_batches_finish_out_of_order(mqtt_url: str) -> None:
    uid = _uid()
    prefix, client_id = f"it-{uid}", f"it-src-{uid}"
    payloads = [_valid(prefix, i) for i in range(40)]
    slow = {payloads[i] for i in (0, 1, 12, 13, 25)}

    async def scenario() -> None:
        sink = MemorySink(delay=lambda e: 0.4 if e.message.payload in slow else 0.0)
        consumer = Consumer(
            mqtt_url,
            prefix,
            client_id,
            dlq_topic=f"it-dlq-{uid}",
            sink=sink,
            batch=BatchConfig(max_events=2, linger_ms=5, max_in_flight_batches=8),
        )
        received: list[int] = []
        acked: list[int] = []
        client = consumer.source.client
        on_message = client.on_message
        real_ack = client.ack

        def spy_message(c: paho.Client, u: Any, msg: paho.MQTTMessage) -> None:
            received.append(msg.mid)
            assert on_message is not None
            on_message(c, u, msg)

        def spy_ack(mid: int, qos: int) -> MQTTErrorCode:
            acked.append(mid)
            return real_ack(mid, qos)

        client.on_message = spy_message
        client.ack = spy_ack  # type: ignore[method-assign]
        publisher = Publisher(mqtt_url)
        try:
            async with running(consumer):
                await asyncio.to_thread(publisher.publish, f"{prefix}/a", payloads)
                await wait_until(lambda: len(acked) == len(payloads), "every PUBACK")
                await consumer.close()
        finally:
            publisher.close()
        assert sorted(sink.payloads()) == sorted(payloads)
        assert sink.payloads() != payloads, "the sink should have finished batches out of order"
        assert acked == received
        assert len(set(acked)) == len(payloads)

    with sessions(mqtt_url, client_id):
        asyncio.run(scenario())
        assert _redelivered(mqtt_url, client_id, prefix, "5") == 0


# -- (3) persistent session -------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_restarted_consumer_gets_unacked_and_missed_messages(mqtt_url: str, protocol: str) -> None:
    uid = _uid()
    prefix, client_id = f"it-{uid}", f"it-src-{uid}"
    first = [_valid(prefix, i) for i in range(30)]
    while_down = [_valid(prefix, i) for i in range(30, 50)]
    held = set(first[10:20])  # the first run never finishes these: they stay unacknowledged
    proto = paho.MQTTv5 if protocol == "5" else paho.MQTTv311

    async def scenario() -> None:
        publisher = Publisher(mqtt_url, proto)
        try:
            # A gate never opened: the held messages stay in flight until the shutdown deadline.
            sink1 = MemorySink(hold=lambda e: e.message.payload in held)
            sink1.gate = asyncio.Event()
            one = Consumer(
                mqtt_url,
                prefix,
                client_id,
                dlq_topic=f"it-dlq-{uid}",
                sink=sink1,
                protocol=protocol,
                batch=BatchConfig(max_events=1, linger_ms=0, max_in_flight_batches=16),
            )
            async with running(one):
                await asyncio.to_thread(publisher.publish, f"{prefix}/x", first)
                await wait_until(lambda: len(sink1.events) == len(first) - len(held), "the first run")
                assert not await one.close(deadline=0.5)  # deadline reached: held ones unsettled
            assert one.source.stats.acks_sent == 10  # only the prefix before the first held one

            await asyncio.to_thread(publisher.publish, f"{prefix}/x", while_down)

            two = Consumer(mqtt_url, prefix, client_id, dlq_topic=f"it-dlq-{uid}", protocol=protocol)
            async with running(two):
                await wait_until(
                    lambda: set(two.sink.payloads()) >= held | set(while_down),
                    "the redelivered and new messages",
                )
                await asyncio.sleep(0.3)
                await two.close()
            delivered = set(sink1.payloads()) | set(two.sink.payloads())
            assert delivered == set(first) | set(while_down)
            # At least once: messages acked late may come again, none may be missing.
            assert set(two.sink.payloads()) <= set(first[10:]) | set(while_down)
        finally:
            publisher.close()

    with sessions(mqtt_url, client_id):
        asyncio.run(scenario())


# -- (4) shared subscriptions -----------------------------------------------------------------------


def test_two_sources_in_a_shared_group_split_the_load(mqtt_url: str) -> None:
    uid = _uid()
    prefix, ids = f"it-{uid}", (f"it-a-{uid}", f"it-b-{uid}")
    payloads = [_valid(prefix, i) for i in range(60)]

    async def scenario() -> None:
        publisher = Publisher(mqtt_url)
        a = Consumer(mqtt_url, prefix, ids[0], dlq_topic=f"it-dlq-{uid}", shared_group=f"g-{uid}")
        b = Consumer(mqtt_url, prefix, ids[1], dlq_topic=f"it-dlq-{uid}", shared_group=f"g-{uid}")
        try:
            async with running(a), running(b):
                await asyncio.to_thread(publisher.publish, f"{prefix}/cam/7", payloads)
                await wait_until(
                    lambda: len(a.sink.events) + len(b.sink.events) >= len(payloads), "the shared delivery"
                )
                await asyncio.sleep(0.3)
                await a.close()
                await b.close()
        finally:
            publisher.close()
        assert a.sink.events and b.sink.events, "both members should get a share"
        assert Counter(a.sink.payloads() + b.sink.payloads()) == Counter(payloads)

    with sessions(mqtt_url, *ids):
        asyncio.run(scenario())


# -- (5) reconnects ---------------------------------------------------------------------------------


def test_a_broker_that_lost_the_session_gets_the_subscriptions_back(mqtt_url: str) -> None:
    uid = _uid()
    prefix, client_id = f"it-{uid}", f"it-src-{uid}"
    before = [_valid(prefix, i) for i in range(10)]
    after = [_valid(prefix, i) for i in range(10, 30)]

    async def scenario() -> None:
        publisher = Publisher(mqtt_url)
        consumer = Consumer(mqtt_url, prefix, client_id, dlq_topic=f"it-dlq-{uid}")
        try:
            async with running(consumer):
                await asyncio.to_thread(publisher.publish, f"{prefix}/a", before)
                await wait_until(lambda: len(consumer.sink.events) == len(before), "the first messages")
                # Another connection with our id and a clean start: the broker drops us and the session.
                await asyncio.to_thread(forget_session, mqtt_url, client_id)
                await wait_until(lambda: consumer.source.stats.reconnects >= 1, "the reconnect")
                await wait_until(lambda: consumer.source.connected, "the subscriptions to be restored")
                await asyncio.to_thread(publisher.publish, f"{prefix}/a", after)
                await wait_until(
                    lambda: len(consumer.sink.events) == len(before) + len(after), "later messages"
                )
                await consumer.close()
        finally:
            publisher.close()
        assert Counter(consumer.sink.payloads()) == Counter(before + after)
        reconnects = consumer.metrics.registry.get_sample_value(
            "vision_events_source_reconnects_total", {"source": "mqtt"}
        )
        assert reconnects is not None
        assert reconnects >= 1

    with sessions(mqtt_url, client_id):
        asyncio.run(scenario())


def _restartable_broker(url: str) -> None:
    """Skip (fail in CI) unless ``url`` is the broker scripts/brokers.sh runs."""
    script = REPO / "scripts" / "brokers.sh"
    reason = ""
    if _host_port(url) != ("127.0.0.1", int(os.environ.get("MQTT_PORT", "1883"))):
        reason = f"{url} is not the scripts/brokers.sh broker"
    elif not script.exists() or "stop-mqtt" not in script.read_text(encoding="utf-8"):
        reason = "scripts/brokers.sh cannot restart Mosquitto (no stop-mqtt/start-mqtt)"
    else:
        status = subprocess.run(
            [BASH, str(script), "status"], capture_output=True, text=True, check=False, cwd=REPO
        )
        if "mqtt:  running" not in status.stdout:
            reason = "Mosquitto is not run by scripts/brokers.sh"
    if reason:
        missing(f"cannot restart the MQTT broker: {reason}")


def _brokers_sh(command: str) -> None:
    result = subprocess.run(
        [BASH, str(REPO / "scripts" / "brokers.sh"), command],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, f"brokers.sh {command} failed: {result.stderr[-2000:]}"


def test_a_broker_restart_mid_stream_loses_nothing(mqtt_url: str) -> None:
    _restartable_broker(mqtt_url)
    uid = _uid()
    prefix, client_id = f"it-{uid}", f"it-src-{uid}"
    first = [_valid(prefix, i) for i in range(80)]
    second = [_valid(prefix, i) for i in range(80, 120)]

    async def scenario() -> None:
        sink = MemorySink(delay=lambda _e: 0.03)  # slow enough that the restart lands mid-stream
        consumer = Consumer(
            mqtt_url,
            prefix,
            client_id,
            dlq_topic=f"it-dlq-{uid}",
            sink=sink,
            batch=BatchConfig(max_events=2, linger_ms=5, max_in_flight_batches=1),
        )
        publisher = Publisher(mqtt_url)
        try:
            async with running(consumer):
                await asyncio.to_thread(publisher.publish, f"{prefix}/a", first)
                await wait_until(lambda: len(sink.events) >= 10, "the stream to start")
                await asyncio.to_thread(_brokers_sh, "stop-mqtt")
                in_flight_at_stop = len(first) - len(set(sink.payloads()))
                await asyncio.to_thread(_brokers_sh, "start-mqtt")
                await wait_until(lambda: consumer.source.connected, "the reconnect", timeout=25)
                await wait_until(publisher.client.is_connected, "the publisher's reconnect")
                await asyncio.to_thread(publisher.publish, f"{prefix}/a", second)
                await wait_until(
                    lambda: set(sink.payloads()) >= set(first + second), "every message after the restart"
                )
                await consumer.close()
        finally:
            publisher.close()
        assert in_flight_at_stop > 0, "the restart should have happened mid-stream"
        assert consumer.source.stats.reconnects >= 1
        assert set(sink.payloads()) == set(first + second)

    with sessions(mqtt_url, client_id):
        asyncio.run(scenario())


# -- overload ---------------------------------------------------------------------------------------


class HeldPipeline(Pipeline):
    """Takes nothing until ``release`` says so: the handoff behind it fills up."""

    release: Callable[[], bool] = staticmethod(lambda: True)

    async def submit(self, messages: Sequence[InboundMessage]) -> None:
        deadline = time.monotonic() + WAIT
        while not self.release():
            assert time.monotonic() < deadline, "the handoff never overflowed"
            await asyncio.sleep(0.02)
        await super().submit(messages)


def test_messages_that_find_the_handoff_full_are_redelivered_not_lost(mqtt_url: str) -> None:
    uid = _uid()
    prefix, client_id = f"it-{uid}", f"it-src-{uid}"
    payloads = [_valid(prefix, i) for i in range(60)]

    async def scenario() -> None:
        # The broker may send up to Receive Maximum (1000) at once; the handoff holds only 4.
        consumer = Consumer(
            mqtt_url,
            prefix,
            client_id,
            dlq_topic=f"it-dlq-{uid}",
            max_buffered=4,
            put_timeout_seconds=0.2,
            pipeline_class=HeldPipeline,
        )
        held = consumer.pipeline
        assert isinstance(held, HeldPipeline)
        held.release = lambda: consumer.source.stats.dropped > 0
        publisher = Publisher(mqtt_url)
        try:
            async with running(consumer):
                await asyncio.to_thread(publisher.publish, f"{prefix}/a", payloads)
                await wait_until(lambda: set(consumer.sink.payloads()) == set(payloads), "every message", 25)
                await consumer.close()
        finally:
            publisher.close()
        assert consumer.source.stats.dropped > 0
        assert consumer.source.stats.reconnects >= 1

    with sessions(mqtt_url, client_id):
        asyncio.run(scenario())
        assert _redelivered(mqtt_url, client_id, prefix, "5") == 0


# -- credentials ------------------------------------------------------------------------------------


def test_credentials_reach_the_broker_but_never_the_logs(
    mqtt_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    uid = _uid()
    prefix, client_id = f"it-{uid}", f"it-src-{uid}"
    secret = f"pw-{uuid.uuid4().hex}"

    async def scenario() -> None:
        consumer = Consumer(
            mqtt_url,
            prefix,
            client_id,
            dlq_topic=f"it-dlq-{uid}",
            username="svc",
            password=SecretStr(secret),
        )
        publisher = Publisher(mqtt_url)
        try:
            async with running(consumer):
                await asyncio.to_thread(publisher.publish, f"{prefix}/a", [_invalid(1), _valid(prefix, 1)])
                await wait_until(lambda: consumer.source.stats.acks_sent == 2, "both acks")
                await consumer.close()
        finally:
            publisher.close()

    with caplog.at_level(logging.DEBUG), sessions(mqtt_url, client_id):
        asyncio.run(scenario())
    assert "Sending CONNECT (u1, p1" in caplog.text  # paho's debug log saw the credentials go out
    assert secret not in caplog.text


# -- (7) dead-letter broker unreachable ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_an_unreachable_dead_letter_broker_fails_within_the_timeout() -> None:
    source = MqttSourceConfig(url="mqtt://127.0.0.1:1883", client_id=f"it-{_uid()}")
    writer = MqttDeadLetterWriter(
        MqttDeadLetterConfig(url=f"mqtt://127.0.0.1:{_free_port()}", topic="dlq", timeout_seconds=1.5), source
    )
    record = DeadLetterRecord(
        payload=b"x", reason="invalid_json", detail="", coordinates={}, received_at=0.0, dead_lettered_at=0.0
    )

    async def scenario() -> float:
        started = time.monotonic()
        with pytest.raises(DeadLetterError, match="not reachable"):
            await writer.write([record])
        elapsed = time.monotonic() - started
        with pytest.raises(DeadLetterError):  # and again: a retry fails the same way
            await writer.write([record])
        await writer.aclose()
        return elapsed

    assert asyncio.run(scenario()) < 5.0


def test_dead_letter_publishes_are_confirmed_with_mqtt5_properties(mqtt_url: str) -> None:
    uid = _uid()
    topic = f"it-dlq-{uid}"
    source = MqttSourceConfig(url=mqtt_url, client_id=f"it-{uid}")
    records = [
        DeadLetterRecord(
            payload=bytes([i, 255, 0]),
            reason="no_route",
            detail="no route",
            coordinates={"source": "mqtt", "topic": f"t/{i}"},
            received_at=1.0,
            dead_lettered_at=2.0,
        )
        for i in range(25)
    ]

    async def scenario() -> None:
        reader = DeadLetterReader(mqtt_url, topic)
        writer = MqttDeadLetterWriter(MqttDeadLetterConfig(topic=topic, qos=2), source)
        try:
            await writer.write(records[:5])
            await writer.write(records[5:])
            assert writer.published == len(records)
            await wait_until(lambda: len(reader.records) == len(records), "the dead letters")
            await writer.aclose()
        finally:
            reader.close()
        assert reader.records == records
        assert all(p["reason"] == "no_route" for p in reader.user_properties)

    asyncio.run(scenario())


def test_publish_properties_are_not_required_by_mqtt311_readers(mqtt_url: str) -> None:
    # A 3.1.1 dead-letter writer: plain JSON, no properties, still confirmed.
    uid = _uid()
    topic = f"it-dlq-{uid}"
    source = MqttSourceConfig(url=mqtt_url, client_id=f"it-{uid}", protocol="3.1.1")
    record = DeadLetterRecord(
        payload=b"\x00\x01",
        reason="invalid_json",
        detail="d",
        coordinates={},
        received_at=0.0,
        dead_lettered_at=0.0,
    )

    async def scenario() -> None:
        reader = DeadLetterReader(mqtt_url, topic)
        writer = MqttDeadLetterWriter(MqttDeadLetterConfig(topic=topic), source)
        try:
            await writer.write([record])
            await wait_until(lambda: len(reader.records) == 1, "the dead letter")
            await writer.aclose()
        finally:
            reader.close()
        assert reader.records == [record]
        assert reader.user_properties == [{}]

    asyncio.run(scenario())
