"""Publishers: the benchmark's edge devices, on the brokers' core (Kafka: acks=all; MQTT: QoS 1)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as paho
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.messages import Payloads

# Paced publishing checks the clock every this many messages.
_PACE_EVERY = 20
# MQTT: at most this many messages published and not yet acknowledged by the broker.
_MQTT_WINDOW = 5_000


class KafkaPublisher:
    """Produces to Kafka topics it creates (and deletes at the end)."""

    def __init__(self, bootstrap: str, partitions: int = 4) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "linger.ms": 5,
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
            }
        )
        self.created: list[str] = []
        self.failures = 0

    def create_topics(self, names: Sequence[str]) -> None:
        """Create ``names`` with the configured partitions and wait for them."""
        futures = self._admin.create_topics(
            [NewTopic(n, num_partitions=self.partitions, replication_factor=1) for n in names]
        )
        for future in futures.values():
            future.result(30)
        self.created.extend(names)

    def delete_topics(self) -> None:
        """Delete every topic this publisher created."""
        if not self.created:
            return
        futures = self._admin.delete_topics(self.created, operation_timeout=30)
        for future in futures.values():
            with contextlib.suppress(KafkaException):
                future.result(30)
        self.created = []

    def _report(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failures += 1

    def publish(
        self,
        topic: str,
        kind: str,
        payloads: Payloads,
        count: int,
        *,
        start: int = 0,
        rate: float | None = None,
    ) -> float:
        """Produce ``count`` messages (at ``rate``/s when given), wait for every ack; returns seconds."""
        produce = self._producer.produce
        poll = self._producer.poll
        make = payloads.make
        now = time.time
        began = time.monotonic()
        for index in range(count):
            value = make(kind, start + index, now())
            while True:
                try:
                    produce(topic, value, on_delivery=self._report)
                    break
                except BufferError:
                    poll(0.05)
            if index % _PACE_EVERY == 0:
                poll(0)
                if rate is not None:
                    _pace(began, index, rate)
        if self._producer.flush(120) != 0:
            raise RuntimeError("Kafka producer: messages still unsent after 120 s")
        return time.monotonic() - began

    def close(self) -> None:
        """Flush."""
        self._producer.flush(30)


def _pace(began: float, index: int, rate: float) -> None:
    ahead = (index + 1) / rate - (time.monotonic() - began)
    if ahead > 0:
        time.sleep(ahead)


class MqttPublisher:
    """Publishes QoS 1 to Mosquitto (MQTT 5) and waits for every PUBACK."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        self.host, self.port = host, port
        self._acked = 0
        self._lock = threading.Condition()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.on_publish = self._on_publish
        self._client.connect(host, port)
        self._client.loop_start()

    def _on_publish(self, *_args: Any) -> None:
        with self._lock:
            self._acked += 1
            self._lock.notify_all()

    def publish(
        self,
        topic_of: Callable[[int], str],
        kind: str,
        payloads: Payloads,
        count: int,
        *,
        start: int = 0,
        rate: float | None = None,
    ) -> float:
        """Publish ``count`` messages (at ``rate``/s when given), wait for the PUBACKs; returns seconds."""
        with self._lock:
            target = self._acked + count
        publish = self._client.publish
        make = payloads.make
        now = time.time
        began = time.monotonic()
        for index in range(count):
            seq = start + index
            publish(topic_of(seq), make(kind, seq, now()), qos=1)
            if rate is not None and index % _PACE_EVERY == 0:
                _pace(began, index, rate)
            if index % _MQTT_WINDOW == _MQTT_WINDOW - 1:
                # Keep paho's own queue short: its per-PUBACK bookkeeping grows with it.
                done = target - count + index + 1 - _MQTT_WINDOW

                def caught_up(done: int = done) -> bool:
                    return self._acked >= done

                with self._lock:
                    if not self._lock.wait_for(caught_up, 60):
                        raise RuntimeError("MQTT publisher: PUBACKs missing (was the broker restarted?)")
        with self._lock:
            if not self._lock.wait_for(lambda: self._acked >= target, 60 + count / 1000):
                raise RuntimeError("MQTT publisher: PUBACKs missing (was the broker restarted?)")
        return time.monotonic() - began

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


def mqtt_session(host: str, port: int, client_id: str, filters: Sequence[str], *, expiry: int = 600) -> None:
    """Create (``filters`` given) or delete (``expiry=0``, no filters) a persistent MQTT 5 session."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    done = threading.Event()
    client.on_subscribe = lambda *_a: done.set()
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = expiry
    client.connect(host, port, clean_start=not filters, properties=properties)
    client.loop_start()
    try:
        for topic in filters:
            done.clear()
            client.subscribe(topic, qos=1)
            if not done.wait(10):
                raise RuntimeError(f"MQTT: no SUBACK for {topic}")
        if not filters:
            time.sleep(0.1)
    finally:
        client.disconnect()
        client.loop_stop()
