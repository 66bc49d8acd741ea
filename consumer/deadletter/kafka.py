"""Dead letters as Kafka records: the original bytes as the value, the context in headers.

A record is written with ``acks=all`` and an idempotent producer; :meth:`KafkaDeadLetterWriter.write`
returns only when the broker acknowledged every record, else raises
:class:`~consumer.errors.DeadLetterError` (then nothing is acknowledged upstream). The producer
works off the event loop (``asyncio.to_thread``), one write at a time.

The record::

    key      the original message's key (None when it had none)
    value    the original payload, byte for byte
    headers  the original headers, unchanged, then the context as UTF-8 text:
             vec.reason  vec.detail  vec.path  vec.source  vec.source.topic
             vec.source.partition  vec.source.offset  vec.source.qos  vec.event_id  vec.status
             vec.attempts  vec.received_at  vec.dead_lettered_at
             (a header is left out when its value is unknown)
             a cut record adds: vec.payload_truncated (true)  vec.original_size
             vec.original_sha256 (hex)

A record the broker refuses as too large (``MSG_SIZE_TOO_LARGE``, ``RECORD_LIST_TOO_LARGE``: the
topic's ``max.message.bytes`` is smaller) is written again alone, whole if it fits that limit,
else *cut*: the value keeps a prefix that fits the topic's limit minus the headers and headroom
(or nothing, when even that is refused), marked with the headers above. The source partition then
moves on and the loss is explicit (a warning naming the origin, and
``vision_events_dead_letters_truncated_total{destination="kafka"}``).

:func:`record_from_kafka_message` is the inverse, for replay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource

from consumer.clients.kafka import (
    LibrdkafkaLog,
    Settings,
    is_security_setting,
    mask_settings,
    redact_settings,
)
from consumer.config import KafkaDeadLetterConfig, KafkaSourceConfig
from consumer.deadletter_record import DeadLetterRecord
from consumer.errors import ConfigError, DeadLetterError
from consumer.metrics import Metrics

log = logging.getLogger(__name__)

REASON: Final = "vec.reason"
DETAIL: Final = "vec.detail"
PATH: Final = "vec.path"
SOURCE: Final = "vec.source"
SOURCE_TOPIC: Final = "vec.source.topic"
SOURCE_PARTITION: Final = "vec.source.partition"
SOURCE_OFFSET: Final = "vec.source.offset"
SOURCE_QOS: Final = "vec.source.qos"
EVENT_ID: Final = "vec.event_id"
STATUS: Final = "vec.status"
ATTEMPTS: Final = "vec.attempts"
RECEIVED_AT: Final = "vec.received_at"
DEAD_LETTERED_AT: Final = "vec.dead_lettered_at"
PAYLOAD_TRUNCATED: Final = "vec.payload_truncated"
ORIGINAL_SIZE: Final = "vec.original_size"
ORIGINAL_SHA256: Final = "vec.original_sha256"
CONTEXT_HEADERS: Final = frozenset(
    {
        REASON,
        DETAIL,
        PATH,
        SOURCE,
        SOURCE_TOPIC,
        SOURCE_PARTITION,
        SOURCE_OFFSET,
        SOURCE_QOS,
        EVENT_ID,
        STATUS,
        ATTEMPTS,
        RECEIVED_AT,
        DEAD_LETTERED_AT,
        PAYLOAD_TRUNCATED,
        ORIGINAL_SIZE,
        ORIGINAL_SHA256,
    }
)
# Coordinates carried in headers: (coordinates key, header, is an integer).
_COORDINATES: Final = (
    ("source", SOURCE, False),
    ("topic", SOURCE_TOPIC, False),
    ("partition", SOURCE_PARTITION, True),
    ("offset", SOURCE_OFFSET, True),
    ("qos", SOURCE_QOS, True),
)
# The explanation can be long (an API's error body); it travels in a header, keep it bounded.
MAX_DETAIL_CHARS: Final = 4000
# Above librdkafka's 1 MB default: a dead letter is as large as the message plus its context.
# The dead-letter topic's max.message.bytes must be at least the source topic's.
_DEFAULT_MESSAGE_MAX_BYTES: Final = 16 * 1024 * 1024 + 64 * 1024
# Room for the dead-letter headers (reason, detail, coordinates) and the record overhead.
_RECORD_HEADROOM_BYTES: Final = 64 * 1024
# librdkafka refuses a larger message.max.bytes.
_LIBRDKAFKA_MAX_MESSAGE_BYTES: Final = 1_000_000_000
_FLUSH_MARGIN_SECONDS: Final = 2.0
# The broker's refusals of a record (or of the batch holding it) as too large.
_TOO_LARGE: Final = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})
# Kafka's default max.message.bytes, assumed when the topic's own cannot be read.
_KAFKA_DEFAULT_MAX_MESSAGE_BYTES: Final = 1_048_588
# Room left under the topic's limit when cutting: record and batch framing, varints, and some slack
# for a broker that counts a little differently.
_CUT_HEADROOM_BYTES: Final = 1024
# Aliases of the settings this writer forces.
_FORCED_ALIASES: Final = ("request.required.acks", "delivery.timeout.ms")


# -- the record mapping ----------------------------------------------------------------------------


def record_key(record: DeadLetterRecord) -> bytes | None:
    """The Kafka key of a dead letter: the original message's key, if it had one."""
    key = record.coordinates.get("key")
    return None if key is None else str(key).encode("utf-8")


def record_headers(record: DeadLetterRecord) -> list[tuple[str, bytes]]:
    """The original headers, then the context headers (see the module docstring)."""
    context: list[tuple[str, str]] = [
        (REASON, record.reason),
        (DETAIL, record.detail[:MAX_DETAIL_CHARS]),
        (PATH, record.path),
    ]
    for name, header, _ in _COORDINATES:
        value = record.coordinates.get(name)
        if value is not None:
            context.append((header, str(value)))
    if record.event_id is not None:
        context.append((EVENT_ID, record.event_id))
    if record.status is not None:
        context.append((STATUS, str(record.status)))
    context += [
        (ATTEMPTS, str(record.attempts)),
        (RECEIVED_AT, repr(float(record.received_at))),
        (DEAD_LETTERED_AT, repr(float(record.dead_lettered_at))),
    ]
    if record.payload_truncated:
        context += [
            (PAYLOAD_TRUNCATED, "true"),
            (ORIGINAL_SIZE, str(record.original_size)),
            (ORIGINAL_SHA256, record.original_sha256 or ""),
        ]
    return [*record.headers, *((k, v.encode("utf-8", "backslashreplace")) for k, v in context)]


def record_from_parts(
    value: bytes | None, key: bytes | None, headers: Sequence[tuple[str, bytes | str | None]]
) -> DeadLetterRecord:
    """A dead-letter record from a Kafka record's value, key and headers (inverse of the writer).

    Raises ValueError when the record is not a dead letter (no ``vec.reason``) or a context
    header is malformed.
    """
    context: dict[str, str] = {}
    original: list[tuple[str, bytes]] = []
    for name, raw in headers:
        data = raw.encode("utf-8") if isinstance(raw, str) else (raw or b"")
        if name in CONTEXT_HEADERS:
            context[name] = data.decode("utf-8", "replace")
        else:
            original.append((name, data))
    if REASON not in context:
        raise ValueError(f"not a dead-letter record: no {REASON} header")
    coordinates: dict[str, Any] = {}
    for name, header, numeric in _COORDINATES:
        if header in context:
            coordinates[name] = _int(context, header) if numeric else context[header]
    if key is not None:
        coordinates["key"] = key.decode("utf-8", "backslashreplace")
    return DeadLetterRecord(
        payload=value or b"",
        reason=context[REASON],
        detail=context.get(DETAIL, ""),
        coordinates=coordinates,
        received_at=_float(context, RECEIVED_AT),
        dead_lettered_at=_float(context, DEAD_LETTERED_AT),
        attempts=_int(context, ATTEMPTS) if ATTEMPTS in context else 1,
        path=context.get(PATH, ""),
        event_id=context.get(EVENT_ID),
        status=_int(context, STATUS) if STATUS in context else None,
        headers=tuple(original),
        payload_truncated=context.get(PAYLOAD_TRUNCATED) == "true",
        original_size=_int(context, ORIGINAL_SIZE) if ORIGINAL_SIZE in context else None,
        original_sha256=context.get(ORIGINAL_SHA256),
    )


def record_from_kafka_message(message: Message) -> DeadLetterRecord:
    """The dead-letter record a message of the dead-letter topic carries (for replay)."""
    error = message.error()
    if error is not None:
        raise ValueError(f"not a record: {error}")
    headers = message.headers() or []
    items = list(headers.items()) if isinstance(headers, dict) else list(headers)
    return record_from_parts(message.value(), message.key(), items)


def _int(context: Mapping[str, str], header: str) -> int:
    try:
        return int(context[header])
    except ValueError:
        raise ValueError(f"dead-letter header {header} is not an integer: {context[header]!r}") from None


def _float(context: Mapping[str, str], header: str) -> float:
    if header not in context:
        return 0.0
    try:
        return float(context[header])
    except ValueError:
        raise ValueError(f"dead-letter header {header} is not a number: {context[header]!r}") from None


# -- settings --------------------------------------------------------------------------------------


def producer_settings(
    config: KafkaDeadLetterConfig, source: KafkaSourceConfig | None, max_message_bytes: int | None = None
) -> Settings:
    """The librdkafka producer settings (secrets included: never log them, log a masked copy).

    The bootstrap servers default to the source's. The security settings (``security.protocol``,
    ``sasl.*``, ``ssl.*``) default to the source's as a group: when the dead-letter config sets
    any of them itself, none of the source's are taken, so credentials of two clusters are never
    mixed. ``acks=all``, idempotence and the delivery timeout are forced. ``message.max.bytes``
    follows ``max_message_bytes`` (``limits.max_message_bytes``) plus headroom for the headers, so
    a message refused as ``message_too_large`` still fits the producer that dead-letters it.
    """
    own: Settings = dict(config.settings)
    if config.sasl_password is not None:
        own["sasl.password"] = config.sasl_password.get_secret_value()
    bootstrap = config.bootstrap_servers or (source.bootstrap_servers if source is not None else None)
    if not bootstrap:
        raise ConfigError("dead_letter.kafka.bootstrap_servers is required when the source is not Kafka")
    settings: Settings = {
        "bootstrap.servers": bootstrap,
        "client.id": "vision-events-consumer-dead-letters",
        "linger.ms": 5,
        "message.max.bytes": _message_max_bytes(max_message_bytes),
    }
    if source is not None and not any(is_security_setting(key) for key in own):
        settings.update({k: v for k, v in source.librdkafka().items() if is_security_setting(k)})
    settings.update(own)
    for alias in _FORCED_ALIASES:
        settings.pop(alias, None)
    settings.update(
        {
            "acks": "all",
            "enable.idempotence": True,
            "message.timeout.ms": max(1, int(config.timeout_seconds * 1000)),
        }
    )
    return settings


def _message_max_bytes(max_message_bytes: int | None) -> int:
    if max_message_bytes is None:
        return _DEFAULT_MESSAGE_MAX_BYTES
    wanted = max(_DEFAULT_MESSAGE_MAX_BYTES, max_message_bytes + _RECORD_HEADROOM_BYTES)
    return min(wanted, _LIBRDKAFKA_MAX_MESSAGE_BYTES)


# -- the writer ------------------------------------------------------------------------------------


class KafkaDeadLetterWriter:
    """Writes dead letters to a Kafka topic and returns only once the broker acknowledged them."""

    def __init__(
        self,
        config: KafkaDeadLetterConfig,
        source: KafkaSourceConfig | None,
        max_message_bytes: int | None = None,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.topic = config.topic
        self._timeout = config.timeout_seconds
        self._settings = producer_settings(config, source, max_message_bytes)
        self._metrics = metrics
        self._lock = asyncio.Lock()
        self._fatal = False
        self._producer: Producer | None = self._new_producer()
        log.info(
            "kafka dead-letter writer ready",
            extra={"topic": self.topic, "settings": mask_settings(self._settings)},
        )

    def __repr__(self) -> str:
        return f"KafkaDeadLetterWriter(topic={self.topic!r}, settings={mask_settings(self._settings)!r})"

    def _new_producer(self) -> Producer:
        config: dict[str, Any] = {
            **self._settings,
            "error_cb": self._on_error,
            "logger": LibrdkafkaLog(f"{__name__}.librdkafka"),
        }
        try:
            return Producer(config)
        except (KafkaException, ValueError, TypeError) as exc:
            problem = redact_settings(str(exc), self._settings)
        # Raised outside the except block: the original, unredacted error is not chained.
        raise ConfigError(f"invalid Kafka dead-letter settings: {problem}")

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = True
        log.debug("dead-letter producer: %s", redact_settings(str(error), self._settings))

    async def write(self, records: Sequence[DeadLetterRecord]) -> None:
        """Produce every record and wait for the broker's acknowledgement of each."""
        if not records:
            return
        async with self._lock:
            await asyncio.to_thread(self._write, list(records))

    def _usable_producer(self) -> Producer:
        if self._producer is None or self._fatal:
            # An idempotent producer that hit a fatal error cannot be used again: start afresh.
            self._fatal = False
            self._producer = self._new_producer()
        return self._producer

    def _write(self, records: list[DeadLetterRecord]) -> None:
        producer = self._usable_producer()
        deadline = time.monotonic() + self._timeout
        results: dict[int, KafkaError | None] = {}

        def reporter(index: int) -> Callable[[KafkaError | None, Message], None]:
            def delivered(error: KafkaError | None, _message: Message) -> None:
                if error is not None and error.fatal():
                    self._fatal = True
                results[index] = error

            return delivered

        for index, record in enumerate(records):
            refused = self._produce(producer, record, reporter(index), deadline)
            if refused is not None:
                results[index] = refused
        remaining = producer.flush(max(0.0, deadline - time.monotonic()) + _FLUSH_MARGIN_SECONDS)
        if remaining:
            raise DeadLetterError(
                f"{remaining} dead letter(s) not acknowledged by Kafka topic {self.topic} "
                f"within {self._timeout:g}s"
            )
        too_large: list[int] = []
        failures: list[str] = []
        for index in range(len(records)):
            error = results.get(index, _NO_REPORT)
            if error is None:
                continue
            if error is _NO_REPORT:
                failures.append("no delivery report")
            elif error.code() in _TOO_LARGE:
                too_large.append(index)
            else:
                failures.append(redact_settings(str(error), self._settings))
        if failures:
            raise DeadLetterError(
                f"{len(failures)} of {len(records)} dead letter(s) not written to Kafka topic "
                f"{self.topic}: {failures[0]}"
            )
        if too_large:
            # Read afresh for each write: an operator who raised the limit gets whole records again.
            limit = self._read_topic_limit(deadline)
            for index in too_large:
                self._write_refused(records[index], limit, deadline)

    def _write_refused(self, record: DeadLetterRecord, limit: int, deadline: float) -> None:
        """Write alone a record refused as too large: whole if it fits the topic's ``limit``, else cut."""
        room = limit - _record_size(record.cut(0)) - _CUT_HEADROOM_BYTES
        # Refused in a batch with others, a record that fits on its own is written whole.
        attempts: list[DeadLetterRecord] = [record] if room >= len(record.payload) else []
        if 0 < room < len(record.payload):
            attempts.append(record.cut(room))
        attempts.append(record.cut(0))  # the context and the markers, when no prefix fits
        error: KafkaError | None = None
        for attempt in attempts:
            error = self._produce_alone(attempt, deadline)
            if error is None:
                if attempt.payload_truncated:
                    self._report_cut(attempt, limit)
                return
            if error.code() not in _TOO_LARGE:
                break
        raise DeadLetterError(
            f"Kafka topic {self.topic} refused a dead letter of {len(record.payload)} bytes, "
            f"also cut: {redact_settings(str(error), self._settings)}"
        )

    def _produce_alone(self, record: DeadLetterRecord, deadline: float) -> KafkaError | None:
        """Produce one record and wait for its report: its error, or None once acknowledged."""
        producer = self._usable_producer()
        reports: list[KafkaError | None] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None and error.fatal():
                self._fatal = True
            reports.append(error)

        refused = self._produce(producer, record, delivered, deadline)
        if refused is not None:
            return refused
        if producer.flush(max(0.0, deadline - time.monotonic()) + _FLUSH_MARGIN_SECONDS) or not reports:
            raise DeadLetterError(
                f"a dead letter was not acknowledged by Kafka topic {self.topic} within {self._timeout:g}s"
            )
        return reports[0]

    def _read_topic_limit(self, deadline: float) -> int:
        """The dead-letter topic's ``max.message.bytes``; Kafka's default when it cannot be read."""
        conf: dict[str, Any] = {
            k: v for k, v in self._settings.items() if k == "bootstrap.servers" or is_security_setting(k)
        }
        conf["logger"] = LibrdkafkaLog(f"{__name__}.librdkafka")
        # This short-lived client is never polled, so its logs would bypass the logger: keep the
        # informational ones (a purge notice when it is destroyed) out of stderr.
        conf["log_level"] = 4
        timeout = max(1.0, deadline - time.monotonic())
        try:
            admin = AdminClient(conf)
            resource = ConfigResource(ConfigResource.Type.TOPIC, self.topic)
            entries = admin.describe_configs([resource], request_timeout=timeout)[resource].result(
                timeout=timeout
            )
            return int(entries["max.message.bytes"].value)
        except (KafkaException, KeyError, ValueError, TypeError, TimeoutError) as exc:
            log.warning(
                "cannot read max.message.bytes of the dead-letter topic %s (%s); assuming %d",
                self.topic,
                redact_settings(str(exc), self._settings),
                _KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
            )
            return _KAFKA_DEFAULT_MAX_MESSAGE_BYTES

    def _report_cut(self, record: DeadLetterRecord, limit: int) -> None:
        coordinates = record.coordinates
        log.warning(
            "dead letter cut to fit Kafka topic %s (max.message.bytes %d): kept %d of %d bytes "
            "of the message from %s partition %s offset %s, sha256 %s",
            self.topic,
            limit,
            len(record.payload),
            record.original_size,
            coordinates.get("topic"),
            coordinates.get("partition"),
            coordinates.get("offset"),
            record.original_sha256,
            extra={
                "dead_letter_topic": self.topic,
                "source_topic": coordinates.get("topic"),
                "source_partition": coordinates.get("partition"),
                "source_offset": coordinates.get("offset"),
                "original_size": record.original_size,
                "original_sha256": record.original_sha256,
                "kept_bytes": len(record.payload),
            },
        )
        if self._metrics is not None:
            self._metrics.dead_letters_truncated.labels("kafka").inc()

    def _produce(
        self,
        producer: Producer,
        record: DeadLetterRecord,
        on_delivery: Callable[[KafkaError | None, Message], None],
        deadline: float,
    ) -> KafkaError | None:
        """Queue ``record``; the error when the producer itself refuses it as too large, else None."""
        headers: list[tuple[str, str | bytes | None]] = [*record_headers(record)]
        while True:
            try:
                producer.produce(
                    self.topic,
                    value=record.payload,
                    key=record_key(record),
                    headers=headers,
                    on_delivery=on_delivery,
                )
            except BufferError:
                # The local queue is full: let deliveries drain it, within the deadline.
                if time.monotonic() >= deadline:
                    raise DeadLetterError(
                        f"the dead-letter producer's queue stayed full for {self._timeout:g}s"
                    ) from None
                producer.poll(0.1)
                continue
            except KafkaException as exc:
                error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if error is not None and error.code() in _TOO_LARGE:
                    return error
                problem = redact_settings(str(exc), self._settings)
                raise DeadLetterError(f"cannot produce a dead letter to {self.topic}: {problem}") from None
            return None

    async def aclose(self) -> None:
        """Wait for anything still queued, then release the producer."""
        async with self._lock:
            producer, self._producer = self._producer, None
            if producer is not None:
                await asyncio.to_thread(producer.flush, self._timeout)


# Marks a record without a delivery report.
_NO_REPORT: Final = KafkaError(KafkaError._FAIL)


def _record_size(record: DeadLetterRecord) -> int:
    """An upper estimate of ``record``'s size in a record batch: value, key, headers and varints."""
    key = record_key(record)
    headers = sum(len(name.encode("utf-8")) + len(value) + 10 for name, value in record_headers(record))
    return len(record.payload) + (len(key) if key is not None else 0) + headers + 32
