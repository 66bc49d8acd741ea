"""Dead letters published to an MQTT topic as JSON records, confirmed by the broker before ``write`` returns.

Each record is ``DeadLetterRecord.to_json_dict()`` as JSON (``payload_base64`` keeps the original
bytes). With MQTT 5 the reason, path, detail and source topic also travel as user properties, so a
subscriber can filter without parsing. ``write`` returns once every publish was confirmed (PUBACK
for QoS 1, PUBCOMP for QoS 2) with a success reason code, and raises
:class:`consumer.errors.DeadLetterError` otherwise, within ``timeout_seconds``.

The writer has its own connection (client id: the source's + ``-dlq``, a clean session) to the
source's broker unless ``dead_letter.mqtt.url`` names another; credentials and TLS files are the
source's. After a failed write the connection is discarded, with whatever paho still held queued,
so that retries of the same records do not pile up unbounded in memory.

A record whose PUBLISH would exceed the broker's Maximum Packet Size (MQTT 5: from its CONNACK;
``dead_letter.mqtt.max_packet_bytes`` when set, the smaller of both) is written *cut*: the JSON
record keeps a prefix of the payload that fits (possibly none) and adds ``"payload_truncated":
true``, ``"original_size"`` and ``"original_sha256"`` (with MQTT 5 also as user properties). A
broker drops the connection on an oversized packet, so the whole record would be resent, and
refused, forever. Each cut is logged with the origin's coordinates and counted in
``vision_events_dead_letters_truncated_total{destination="mqtt"}``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import orjson
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from consumer.clients.mqtt import new_client, parse_mqtt_url
from consumer.config import MqttDeadLetterConfig, MqttSourceConfig
from consumer.deadletter_record import DeadLetterRecord
from consumer.errors import ConfigError, DeadLetterError
from consumer.metrics import Metrics

log = logging.getLogger(__name__)

_MAX_PROPERTY_CHARS = 512
_STOP_TIMEOUT_SECONDS = 5.0
# MQTT's own limit on a packet (the largest Remaining Length, 268435455, plus the fixed header).
_MQTT_MAX_PACKET_BYTES = 268_435_460
# Slack under the packet limit when cutting: the Remaining Length may grow by a byte or more.
_CUT_HEADROOM_BYTES = 64


def record_from_mqtt_payload(payload: bytes | bytearray) -> DeadLetterRecord:
    """The record a dead-letter message carries (for ``replay``). Raises ValueError if it is not one."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not a dead-letter record: invalid JSON ({exc})") from None
    if not isinstance(data, dict) or "payload_base64" not in data or "reason" not in data:
        raise ValueError("not a dead-letter record: expected a JSON object with payload_base64 and reason")
    try:
        return DeadLetterRecord.from_json_dict(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a dead-letter record: {exc}") from None


class MqttDeadLetterWriter:
    """Publishes dead letters and waits for the broker's confirmation (see the module docstring)."""

    def __init__(
        self,
        config: MqttDeadLetterConfig,
        source: MqttSourceConfig,
        *,
        source_filters: Sequence[str] = (),
        metrics: Metrics | None = None,
    ) -> None:
        """``source_filters``: what the MQTT source subscribes to, when it reads the same broker.

        A dead-letter topic that one of them matches is refused: the consumer would read its own
        dead letters, fail on them and dead-letter them again, forever.
        """
        if not config.topic or any(ch in config.topic for ch in "+#\0"):
            raise ConfigError(
                f"dead_letter.mqtt.topic {config.topic!r}: must be a topic name without wildcards"
            )
        self._config = config
        self._source = source
        self._v5 = source.protocol == "5"
        self.address = parse_mqtt_url(config.url or source.url, tls=source.tls.enabled)
        if self.address == parse_mqtt_url(source.url, tls=source.tls.enabled):
            for written in source_filters:
                topic_filter = written
                if written.startswith("$share/"):  # $share/<group>/<filter>
                    topic_filter = written.split("/", 2)[2] if written.count("/") >= 2 else written
                if paho.topic_matches_sub(topic_filter, config.topic):
                    raise ConfigError(
                        f"dead_letter.mqtt.topic {config.topic!r} matches the source subscription "
                        f"{topic_filter!r}: the consumer would read its own dead letters"
                    )
        self.client_id = f"{source.client_id}-dlq"
        self._metrics = metrics
        self._broker_max_packet: int | None = None
        self._client: paho.Client | None = None
        self._lock = asyncio.Lock()
        self._state = threading.Condition()
        self._link_up = False
        self._confirmed: dict[int, ReasonCode] = {}
        self.published = 0

    def __repr__(self) -> str:
        return f"MqttDeadLetterWriter(url={str(self.address)!r}, topic={self._config.topic!r})"

    async def write(self, records: Sequence[DeadLetterRecord]) -> None:
        """Publish every record and wait for the broker to confirm each, else raise DeadLetterError."""
        if not records:
            return
        messages = [(r, orjson.dumps(r.to_json_dict()), self._properties(r)) for r in records]
        async with self._lock:
            try:
                await asyncio.to_thread(self._publish_all, messages)
            except DeadLetterError:
                await asyncio.to_thread(self._discard_client)
                raise

    async def aclose(self) -> None:
        """Disconnect cleanly and stop the network thread."""
        async with self._lock:
            await asyncio.to_thread(self._discard_client)

    # -- worker thread ----------------------------------------------------------------------------------

    def _publish_all(self, messages: list[tuple[DeadLetterRecord, bytes, Properties | None]]) -> None:
        timeout = self._config.timeout_seconds
        deadline = time.monotonic() + timeout
        client = self._ensure_client()
        with self._state:
            if not self._state.wait_for(lambda: self._link_up, timeout=max(0.0, deadline - time.monotonic())):
                raise DeadLetterError(f"dead-letter broker {self.address} not reachable within {timeout:g}s")
        mids = []
        limit = self._max_packet()
        for record, whole, whole_properties in messages:
            payload, properties = self._fitting(record, whole, whole_properties, limit)
            try:
                info = client.publish(
                    self._config.topic, payload, qos=self._config.qos, properties=properties
                )
            except ValueError as exc:  # payload too large for MQTT, invalid topic
                raise DeadLetterError(f"cannot publish a dead letter: {exc}") from exc
            if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
                # NO_CONN: queued, paho sends it after reconnecting; anything else was refused.
                raise DeadLetterError(f"cannot publish a dead letter: {paho.error_string(info.rc)}")
            mids.append(info.mid)
        with self._state:
            done = self._state.wait_for(
                lambda: all(mid in self._confirmed for mid in mids),
                timeout=max(0.0, deadline - time.monotonic()),
            )
            if not done:
                missing = sum(1 for mid in mids if mid not in self._confirmed)
                raise DeadLetterError(
                    f"dead-letter broker {self.address} did not confirm {missing} of {len(mids)} "
                    f"publish(es) within {timeout:g}s"
                )
            reasons = [self._confirmed.pop(mid) for mid in mids]
        refused = [reason for reason in reasons if reason.is_failure]
        if refused:
            raise DeadLetterError(
                f"dead-letter broker {self.address} refused {len(refused)} publish(es) to "
                f"{self._config.topic!r}: {refused[0]}"
            )
        self.published += len(mids)

    def _max_packet(self) -> int:
        """The largest PUBLISH this connection may send (see the module docstring)."""
        limits = [_MQTT_MAX_PACKET_BYTES]
        if self._config.max_packet_bytes is not None:
            limits.append(self._config.max_packet_bytes)
        with self._state:
            if self._broker_max_packet is not None:
                limits.append(self._broker_max_packet)
        return min(limits)

    def _packet_size(self, payload: bytes, properties: Properties | None) -> int:
        """The bytes of the PUBLISH packet carrying ``payload``: what the broker's limit counts."""
        remaining = 2 + len(self._config.topic.encode("utf-8")) + 2 + len(payload)  # topic, packet id
        if properties is not None:
            remaining += len(properties.pack())  # type: ignore[no-untyped-call]
        return 1 + 4 + remaining  # the fixed header, its Remaining Length counted at its longest

    def _fitting(
        self, record: DeadLetterRecord, payload: bytes, properties: Properties | None, limit: int
    ) -> tuple[bytes, Properties | None]:
        """``record``'s message, cut when its packet would exceed ``limit``."""
        if self._packet_size(payload, properties) <= limit:
            return payload, properties
        empty = record.cut(0)
        overhead = self._packet_size(orjson.dumps(empty.to_json_dict()), self._properties(empty))
        room = limit - overhead - _CUT_HEADROOM_BYTES
        if room < 0:
            raise DeadLetterError(
                f"a dead letter does not fit the broker's maximum packet size ({limit} bytes) "
                f"even without its payload"
            )
        # The payload travels as base64: 4 characters for every 3 bytes.
        cut = record.cut(min(len(record.payload), room // 4 * 3))
        coordinates = record.coordinates
        log.warning(
            "dead letter cut to fit the MQTT broker's maximum packet size (%d bytes): kept %d of %d "
            "bytes of the message from %s, sha256 %s",
            limit,
            len(cut.payload),
            cut.original_size,
            coordinates.get("topic"),
            cut.original_sha256,
            extra={
                "dead_letter_topic": self._config.topic,
                "source_topic": coordinates.get("topic"),
                "source_partition": coordinates.get("partition"),
                "source_offset": coordinates.get("offset"),
                "original_size": cut.original_size,
                "original_sha256": cut.original_sha256,
                "kept_bytes": len(cut.payload),
            },
        )
        if self._metrics is not None:
            self._metrics.dead_letters_truncated.labels("mqtt").inc()
        return orjson.dumps(cut.to_json_dict()), self._properties(cut)

    def _ensure_client(self) -> paho.Client:
        if self._client is not None:
            return self._client
        client = new_client(
            self._source,
            self.address,
            client_id=self.client_id,
            persistent=False,
            manual_ack=False,
            logger=log,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        if self._v5:
            client.connect_async(
                self.address.host,
                self.address.port,
                keepalive=self._source.keepalive_seconds,
                clean_start=True,
            )
        else:
            client.connect_async(
                self.address.host, self.address.port, keepalive=self._source.keepalive_seconds
            )
        client.loop_start()
        self._client = client
        return client

    def _discard_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        stopper = threading.Thread(target=client.loop_stop, name="mqtt-dlq-stop", daemon=True)
        stopper.start()
        stopper.join(_STOP_TIMEOUT_SECONDS)
        with self._state:
            self._link_up = False
            self._confirmed.clear()

    def _properties(self, record: DeadLetterRecord) -> Properties | None:
        if not self._v5:
            return None
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.PayloadFormatIndicator = 1
        properties.ContentType = "application/json"
        pairs = {
            "reason": record.reason,
            "path": record.path,
            "detail": record.detail,
            "source_topic": str(record.coordinates.get("topic", "")),
            "event_id": record.event_id or "",
            "status": "" if record.status is None else str(record.status),
            "attempts": str(record.attempts),
        }
        if record.payload_truncated:
            pairs |= {
                "payload_truncated": "true",
                "original_size": str(record.original_size),
                "original_sha256": record.original_sha256 or "",
            }
        properties.UserProperty = [
            (key, value[:_MAX_PROPERTY_CHARS]) for key, value in pairs.items() if value
        ]
        return properties

    # -- paho callbacks (network thread) ----------------------------------------------------------------

    def _on_connect(
        self, _c: paho.Client, _u: Any, _f: Any, reason: ReasonCode, properties: Properties | None
    ) -> None:
        if reason.is_failure:
            log.error(
                "the dead-letter broker refused the connection: %s",
                reason,
                extra={"broker": str(self.address)},
            )
            return
        # MQTT 5: the broker announces the largest packet it accepts (absent: no limit but MQTT's).
        announced = getattr(properties, "MaximumPacketSize", None) if self._v5 else None
        with self._state:
            self._broker_max_packet = announced if isinstance(announced, int) else None
            self._link_up = True
            self._state.notify_all()

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        with self._state:
            was_up, self._link_up = self._link_up, False
        if was_up and self._client is not None:
            log.warning("lost the dead-letter broker connection (%s); reconnecting", reason)

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        with self._state:
            self._confirmed[mid] = reason
            self._state.notify_all()
