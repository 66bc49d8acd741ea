"""Where ``replay`` reads dead letters: ``jsonl:PATH``, ``kafka:TOPIC`` or ``mqtt:TOPIC``.

- A JSONL file is read up to its size when opened: when it is also this replay's dead-letter
  destination, records that fail again are appended and must not be replayed in a loop.
- A Kafka topic is read from the beginning to the end offsets it had when the replay started,
  without a consumer group commit: dead letters stay in the topic (retention decides), and
  replaying twice is harmless because the eventIds are the same.
- An MQTT topic keeps nothing for an absent subscriber, so replay uses a persistent session
  (client id ``<source client id>-replay``): dead letters published since that session last
  subscribed are queued by the broker. Each record is acknowledged once its replay settled, in
  order; the replay ends after ``idle_seconds`` without a record.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as paho
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from consumer.clients.kafka import is_security_setting
from consumer.clients.mqtt import new_client, paho_logger, parse_mqtt_url
from consumer.config import Settings, SourceKind
from consumer.deadletter.jsonl import parse_dead_letter_line
from consumer.deadletter.kafka import producer_settings, record_from_kafka_message
from consumer.deadletter.mqtt import record_from_mqtt_payload
from consumer.errors import ConfigError
from consumer.model import no_ack
from consumer.replay import Replayable, ReplayOrigin
from consumer.sources.acks import OrderedAcks

_POLL_SECONDS: Final = 0.5
_CONNECT_TIMEOUT_SECONDS: Final = 15.0


class JsonlOrigin:
    """Records of a JSONL dead-letter file, up to its size when opened."""

    def __init__(self, path: Path) -> None:
        try:
            self._limit = os.path.getsize(path)
            self._handle = path.open("rb")
            self._path = path
            self._line = 0
            self.unreadable = 0
        except OSError as exc:
            raise ConfigError(f"cannot read dead letters from {path}: {exc}") from exc

    def next_batch(self, limit: int) -> list[Replayable] | None:
        """The next ``limit`` records, None at the size the file had when opened."""
        batch: list[Replayable] = []
        while len(batch) < limit and self._handle.tell() < self._limit:
            line = self._handle.readline()
            if not line:
                break
            self._line += 1
            if not line.strip():
                continue
            # A torn line (a kill mid-append) is skipped with a warning; everything after it replays.
            record = parse_dead_letter_line(self._path, self._line, line)
            if record is None:
                self.unreadable += 1
            else:
                batch.append((record, no_ack))
        return batch or None

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


class KafkaOrigin:
    """A Kafka dead-letter topic from the beginning to its end offsets at the start."""

    unreadable = 0  # every Kafka record is a whole record: nothing is torn

    def __init__(self, settings: Settings, topic: str) -> None:
        source = settings.source.kafka if settings.source.type is SourceKind.KAFKA else None
        producer = producer_settings(settings.dead_letter.kafka, source)
        conf: dict[str, Any] = {
            k: v for k, v in producer.items() if k == "bootstrap.servers" or is_security_setting(k)
        }
        conf.update(
            {
                # A throwaway group: nothing is committed, a replay never moves anyone's offsets.
                "group.id": f"vision-events-replay-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": False,
            }
        )
        self._consumer = Consumer(conf)
        try:
            metadata = self._consumer.list_topics(topic, timeout=_CONNECT_TIMEOUT_SECONDS)
            described = metadata.topics.get(topic)
            if described is None or described.error is not None:
                raise ConfigError(
                    f"dead-letter topic {topic!r} is not readable: {described and described.error}"
                )
            self._ends: dict[int, int] = {}
            assignment = []
            for partition in described.partitions:
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=_CONNECT_TIMEOUT_SECONDS
                )
                if high > low:
                    self._ends[partition] = high
                    assignment.append(TopicPartition(topic, partition, OFFSET_BEGINNING))
        except KafkaException as exc:
            self._consumer.close()
            raise ConfigError(f"cannot read dead-letter topic {topic!r}: {exc}") from None
        self._consumer.assign(assignment)

    def next_batch(self, limit: int) -> list[Replayable] | None:
        """The next records; None once every partition reached its end offset."""
        if not self._ends:
            return None
        batch: list[Replayable] = []
        for message in self._consumer.consume(limit, timeout=_POLL_SECONDS):
            if message.error() is not None:
                continue
            partition, offset = message.partition(), message.offset()
            if partition is None or offset is None:
                continue
            end = self._ends.get(partition)
            if end is None or offset >= end:
                continue
            if offset == end - 1:
                del self._ends[partition]
            batch.append((record_from_kafka_message(message), no_ack))
        return batch

    def close(self) -> None:
        """Leave without committing."""
        self._consumer.close()


class MqttOrigin:
    """An MQTT dead-letter topic through a persistent replay session (see the module docstring)."""

    unreadable = 0  # every MQTT message is a whole record: nothing is torn

    def __init__(self, settings: Settings, topic: str, idle_seconds: float) -> None:
        source = settings.source.mqtt
        url = settings.dead_letter.mqtt.url or source.url
        self._address = parse_mqtt_url(url, tls=source.tls.enabled)
        self._v5 = source.protocol == "5"
        self._topic = topic
        self._idle = idle_seconds
        self._queue: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self._acks: OrderedAcks[tuple[int, int]] = OrderedAcks()
        self._ready = threading.Event()
        self._last_seen = time.monotonic()
        self._client = new_client(
            source,
            self._address,
            client_id=f"{source.client_id}-replay",
            persistent=True,
            manual_ack=True,
            logger=paho_logger(__name__),
        )
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_args: self._ready.set()
        self._client.on_message = lambda _c, _u, message: self._queue.put(message)
        properties = None
        if self._v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = source.session_expiry_seconds
        self._client.connect_async(
            self._address.host,
            self._address.port,
            keepalive=source.keepalive_seconds,
            clean_start=False if self._v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        self._client.loop_start()
        if not self._ready.wait(_CONNECT_TIMEOUT_SECONDS):
            self.close()
            raise ConfigError(f"could not subscribe to {topic!r} on {self._address}")
        self._last_seen = time.monotonic()

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe(self._topic, qos=1)

    def next_batch(self, limit: int) -> list[Replayable] | None:
        """Records received so far; None after ``idle_seconds`` without one."""
        batch: list[Replayable] = []
        deadline = time.monotonic() + _POLL_SECONDS
        while len(batch) < limit:
            try:
                message = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self._last_seen = time.monotonic()
            handle = self._acks.register(0, (message.mid, message.qos))
            record = record_from_mqtt_payload(message.payload)
            batch.append((record, lambda handle=handle: self._release(handle)))  # type: ignore[misc]
        if not batch and time.monotonic() - self._last_seen > self._idle:
            return None
        return batch

    def _release(self, handle: Any) -> None:
        for mid, qos in self._acks.settle(handle):
            self._client.ack(mid, qos)

    def close(self) -> None:
        """Disconnect after the acknowledgements went out; the session keeps collecting dead letters."""
        self._client.disconnect()
        self._client.loop_stop()


def open_origin(spec: str, settings: Settings, *, idle_seconds: float = 5.0) -> ReplayOrigin:
    """The origin named by ``jsonl:PATH``, ``kafka:TOPIC`` or ``mqtt:TOPIC``."""
    kind, _, where = spec.partition(":")
    if not where:
        raise ConfigError(f"--from {spec!r}: expected jsonl:PATH, kafka:TOPIC or mqtt:TOPIC")
    if kind == "jsonl":
        return JsonlOrigin(Path(where))
    if kind == "kafka":
        return KafkaOrigin(settings, where)
    if kind == "mqtt":
        return MqttOrigin(settings, where, idle_seconds)
    raise ConfigError(f"--from {spec!r}: unknown origin {kind!r} (jsonl, kafka or mqtt)")
