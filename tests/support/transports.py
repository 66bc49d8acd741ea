"""Publish to and read dead letters from the real brokers, the way an edge device and an operator would."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from paho.mqtt.enums import CallbackAPIVersion

from consumer.deadletter import DeadLetterRecord
from consumer.deadletter.kafka import record_from_kafka_message
from consumer.deadletter.mqtt import record_from_mqtt_payload
from tests.support.corpus import CorpusMessage, Topics


class Transport(Protocol):
    """One broker, seen from the test."""

    name: str
    topics: Topics
    dlq_topic: str

    def source_settings(self, client_id: str, group: str) -> dict[str, Any]:
        """The consumer's ``source`` and ``dead_letter`` settings for this transport."""
        ...

    def publish(self, messages: Sequence[CorpusMessage], rate: float | None = None) -> None:
        """Publish every message (QoS 1 / acks=all), at most ``rate`` per second."""
        ...

    def prepare(self, messages: Sequence[CorpusMessage]) -> None:
        """Create whatever the broker needs before ``messages`` are published (Kafka: their topics)."""
        ...

    def dead_letters(self) -> list[DeadLetterRecord]:
        """Every record in the dead-letter topic so far."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 1883


class MqttTransport:
    """Mosquitto: publishes QoS 1, collects the dead-letter topic with a live subscription."""

    name = "mqtt"

    def __init__(self, url: str) -> None:
        self.url = url
        self.uid = uuid.uuid4().hex[:8]
        self.topics = Topics(prefix=f"e2e-{self.uid}", sep="/")
        # Outside the subscriptions: the consumer must never read its own dead letters.
        self.dlq_topic = f"dlq-e2e-{self.uid}"
        self._records: list[DeadLetterRecord] = []
        self._lock = threading.Lock()
        host, port = _host_port(url)
        # A persistent session: dead letters published while the reader reconnects (a broker
        # restart) are queued for it instead of going to no one.
        self._dlq = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"dlq-reader-{self.uid}", clean_session=False
        )
        subscribed = threading.Event()
        self._dlq.on_connect = lambda client, *_: client.subscribe(self.dlq_topic, qos=1)
        self._dlq.on_subscribe = lambda *_: subscribed.set()
        self._dlq.on_message = self._on_dead_letter
        self._dlq.connect(host, port)
        self._dlq.loop_start()
        assert subscribed.wait(10), "dead-letter subscription not confirmed"
        self._publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"publisher-{self.uid}")
        self._publisher.max_queued_messages_set(0)
        self._publisher.connect(host, port)
        self._publisher.loop_start()

    def _on_dead_letter(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        record = record_from_mqtt_payload(message.payload)
        with self._lock:
            self._records.append(record)

    def source_settings(self, client_id: str, group: str) -> dict[str, Any]:
        """Subscribe to the whole prefix (so unrouted messages arrive), shared by ``group``."""
        return {
            "source": {
                "type": "mqtt",
                "mqtt": {
                    "url": self.url,
                    "client_id": client_id,
                    "shared_group": group,
                    "subscriptions": [
                        {"filter": f"{self.topics.prefix}/#", "qos": 1},
                        {"filter": f"{self.topics.prefix}-unrouted/#", "qos": 1},
                    ],
                },
            },
            "dead_letter": {"type": "mqtt", "mqtt": {"topic": self.dlq_topic}},
        }

    def prepare(self, messages: Sequence[CorpusMessage]) -> None:
        """Nothing to create: MQTT topics exist once published to."""

    def publish(self, messages: Sequence[CorpusMessage], rate: float | None = None) -> None:
        """Publish at QoS 1 and wait for every PUBACK."""
        start = time.monotonic()
        infos = []
        for index, item in enumerate(messages):
            infos.append(self._publisher.publish(item.topic, item.payload, qos=1))
            if rate is not None and index % 100 == 0:
                ahead = index / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published(), "a test message was not acknowledged by the broker"

    def dead_letters(self) -> list[DeadLetterRecord]:
        """Records received on the dead-letter topic."""
        with self._lock:
            return list(self._records)

    def close(self) -> None:
        """Disconnect both clients."""
        for client in (self._publisher, self._dlq):
            client.disconnect()
            client.loop_stop()


class KafkaTransport:
    """Kafka: topics created with 4 partitions, dead letters read back from the beginning."""

    name = "kafka"

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.uid = uuid.uuid4().hex[:8]
        self.topics = Topics(prefix=f"e2e-{self.uid}", sep=".")
        # Outside the subscription regex: the consumer must never read its own dead letters.
        self.dlq_topic = f"dlq-e2e-{self.uid}"
        self._producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
        self._created: set[str] = set()
        self._create([self.dlq_topic])

    def _create(self, names: Sequence[str]) -> None:
        wanted = [n for n in names if n not in self._created]
        if not wanted:
            return
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(n, num_partitions=4, replication_factor=1) for n in wanted])
        for future in futures.values():
            future.result(30)
        self._created.update(wanted)

    def source_settings(self, client_id: str, group: str) -> dict[str, Any]:
        """Subscribe by regex to every topic of this test."""
        return {
            "source": {
                "type": "kafka",
                "kafka": {
                    "bootstrap_servers": self.bootstrap,
                    "group_id": group,
                    "topics": [f"^{self.topics.prefix}[.-].*"],
                    "settings": {
                        "client.id": client_id,
                        "topic.metadata.refresh.interval.ms": 1000,
                        # A SIGKILLed member holds its partitions until the session times out.
                        "session.timeout.ms": 6000,
                        "heartbeat.interval.ms": 1000,
                    },
                },
            },
            "dead_letter": {"type": "kafka", "kafka": {"topic": self.dlq_topic}},
        }

    def prepare(self, messages: Sequence[CorpusMessage]) -> None:
        """Create the topics of ``messages`` so that subscribers can be assigned them first."""
        self._create(sorted({m.topic for m in messages}))

    def publish(self, messages: Sequence[CorpusMessage], rate: float | None = None) -> None:
        """Produce with acks=all and wait for every delivery report."""
        self._create(sorted({m.topic for m in messages}))
        failures: list[str] = []

        def report(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        start = time.monotonic()
        for index, item in enumerate(messages):
            while True:
                try:
                    self._producer.produce(item.topic, item.payload, key=item.key, on_delivery=report)
                    break
                except BufferError:
                    self._producer.poll(0.1)
            if rate is not None and index % 100 == 0:
                ahead = index / rate - (time.monotonic() - start)
                if ahead > 0:
                    self._producer.poll(ahead)
            self._producer.poll(0)
        assert self._producer.flush(60) == 0, "test messages still unsent"
        assert not failures, failures[:3]

    def dead_letters(self) -> list[DeadLetterRecord]:
        """Read the dead-letter topic from the beginning up to its current end."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        try:
            metadata = consumer.list_topics(self.dlq_topic, timeout=10)
            partitions = [
                TopicPartition(self.dlq_topic, p, 0) for p in metadata.topics[self.dlq_topic].partitions
            ]
            ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in partitions}
            consumer.assign(partitions)
            records: list[DeadLetterRecord] = []
            remaining = sum(ends.values())
            deadline = time.monotonic() + 30
            while remaining > 0 and time.monotonic() < deadline:
                for msg in consumer.consume(500, timeout=1):
                    if msg.error() is None:
                        records.append(record_from_kafka_message(msg))
                        remaining -= 1
            return records
        finally:
            consumer.close()

    def close(self) -> None:
        """Flush the producer."""
        self._producer.flush(10)
