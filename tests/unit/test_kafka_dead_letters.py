"""The Kafka dead-letter writer without a broker: the record <-> headers mapping, settings, secrets."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Message

from consumer.config import KafkaDeadLetterConfig, KafkaSourceConfig
from consumer.deadletter import DeadLetterRecord
from consumer.deadletter.kafka import (
    MAX_DETAIL_CHARS,
    KafkaDeadLetterWriter,
    producer_settings,
    record_from_kafka_message,
    record_from_parts,
    record_headers,
    record_key,
)
from consumer.errors import ConfigError, DeadLetterError
from consumer.model import InboundMessage

SECRET = "s3cr3t-Pa55word"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _kafka_record() -> DeadLetterRecord:
    message = InboundMessage(
        source="kafka",
        topic="factory/a",
        payload=b"\x00\xffnot json \xe2\x82",
        received_at=1712345678.123456,
        subscription="factory/a",
        key=b"camera-7",
        headers=(("trace", b"abc"), ("bin", b"\x00\x01"), ("trace", b"second")),
        partition=3,
        offset=1234567,
    )
    return DeadLetterRecord.for_message(
        message,
        reason="api_rejected",
        detail="eventData.qcResult: must be one of pass, fail — ünïcode",
        now=1712345690.5,
        path="eventData.qcResult",
        attempts=3,
        event_id="0b0e0c36-7d4e-5c41-a0b5-55f1d5dfe0a7",
        status=422,
    )


def test_a_record_survives_the_trip_through_kafka_headers() -> None:
    record = _kafka_record()
    headers = record_headers(record)
    assert headers[:3] == [("trace", b"abc"), ("bin", b"\x00\x01"), ("trace", b"second")]
    context = dict(headers[3:])
    assert context == {
        "vec.reason": b"api_rejected",
        "vec.detail": "eventData.qcResult: must be one of pass, fail — ünïcode".encode(),
        "vec.path": b"eventData.qcResult",
        "vec.source": b"kafka",
        "vec.source.topic": b"factory/a",
        "vec.source.partition": b"3",
        "vec.source.offset": b"1234567",
        "vec.event_id": b"0b0e0c36-7d4e-5c41-a0b5-55f1d5dfe0a7",
        "vec.status": b"422",
        "vec.attempts": b"3",
        "vec.received_at": b"1712345678.123456",
        "vec.dead_lettered_at": b"1712345690.5",
    }
    assert record_key(record) == b"camera-7"
    assert record_from_parts(record.payload, record_key(record), headers) == record


def test_a_record_with_only_the_required_fields_round_trips_too() -> None:
    message = InboundMessage(source="file", topic="replayed", payload=b"{}", received_at=5.0)
    record = DeadLetterRecord.for_message(message, reason="no_route", detail="", now=6.0)
    headers = record_headers(record)
    names = [name for name, _ in headers]
    assert "vec.event_id" not in names and "vec.status" not in names and "vec.source.offset" not in names
    assert record_key(record) is None
    assert record_from_parts(b"{}", None, headers) == record


def test_reading_a_consumed_message_back_into_a_record() -> None:
    record = _kafka_record()
    message = Message(
        topic="dead-letters", partition=0, offset=9, key=record_key(record), value=record.payload,
        headers=list(record_headers(record)),
    )  # fmt: skip
    assert record_from_kafka_message(message) == record


def test_a_cut_record_carries_its_markers_and_round_trips() -> None:
    record = _kafka_record()
    cut = record.cut(4)
    assert cut.payload == record.payload[:4]
    context = dict(record_headers(cut)[3:])
    assert context["vec.payload_truncated"] == b"true"
    assert context["vec.original_size"] == str(len(record.payload)).encode()
    assert context["vec.original_sha256"] == hashlib.sha256(record.payload).hexdigest().encode()
    assert record_from_parts(cut.payload, record_key(cut), record_headers(cut)) == cut
    # Cut again (to nothing), it still describes the original bytes.
    assert cut.cut(0).original_sha256 == cut.original_sha256 and cut.cut(0).payload == b""
    # A whole record has no markers, and reads back as whole.
    assert not {"vec.payload_truncated", "vec.original_size"} & {n for n, _ in record_headers(record)}
    assert not record_from_parts(record.payload, None, record_headers(record)).payload_truncated


def test_a_message_that_is_no_dead_letter_is_refused() -> None:
    with pytest.raises(ValueError, match=r"vec\.reason"):
        record_from_parts(b"{}", None, [("trace", b"x")])
    with pytest.raises(ValueError, match=r"vec\.source\.offset"):
        record_from_parts(b"{}", None, [("vec.reason", b"x"), ("vec.source.offset", b"twelve")])


def test_a_long_detail_is_bounded() -> None:
    message = InboundMessage(source="kafka", topic="t", payload=b"x", received_at=1.0)
    record = DeadLetterRecord.for_message(message, reason="api_rejected", detail="x" * 100_000, now=2.0)
    assert dict(record_headers(record))["vec.detail"] == b"x" * MAX_DETAIL_CHARS


# -- settings -----------------------------------------------------------------------------------------


def _source(**settings: str) -> KafkaSourceConfig:
    return KafkaSourceConfig(
        bootstrap_servers="kafka-a:9093",
        topics=["t"],
        sasl_password=SECRET,
        settings={
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "vec",
            "ssl.ca.location": "/etc/ca.pem",
            "fetch.min.bytes": 1,
            **settings,
        },
    )


def test_the_producer_defaults_to_the_sources_cluster_and_security() -> None:
    settings = producer_settings(KafkaDeadLetterConfig(timeout_seconds=7.5), _source())
    assert settings["bootstrap.servers"] == "kafka-a:9093"
    assert settings["security.protocol"] == "SASL_SSL"
    assert settings["sasl.mechanism"] == "SCRAM-SHA-512"
    assert settings["sasl.username"] == "vec"
    assert settings["sasl.password"] == SECRET
    assert settings["ssl.ca.location"] == "/etc/ca.pem"
    assert "fetch.min.bytes" not in settings  # a consumer setting, not security
    assert (settings["acks"], settings["enable.idempotence"], settings["message.timeout.ms"]) == (
        "all",
        True,
        7500,
    )


def test_own_security_settings_replace_the_sources_as_a_whole() -> None:
    config = KafkaDeadLetterConfig(
        bootstrap_servers="kafka-b:9092",
        settings={"security.protocol": "SSL", "acks": 1, "delivery.timeout.ms": 1, "linger.ms": 50},
    )
    settings = producer_settings(config, _source())
    assert settings["bootstrap.servers"] == "kafka-b:9092"
    assert settings["security.protocol"] == "SSL"
    assert not any(key.startswith("sasl.") for key in settings)  # the other cluster's credentials stay home
    assert "ssl.ca.location" not in settings
    assert settings["linger.ms"] == 50
    assert settings["acks"] == "all"
    assert "delivery.timeout.ms" not in settings


def test_the_dead_letter_password_alone_also_counts_as_own_security() -> None:
    settings = producer_settings(KafkaDeadLetterConfig(sasl_password="other"), _source())
    assert settings["sasl.password"] == "other"
    assert "sasl.username" not in settings


def test_without_a_kafka_source_the_bootstrap_servers_are_required() -> None:
    with pytest.raises(ConfigError, match="bootstrap_servers"):
        producer_settings(KafkaDeadLetterConfig(), None)
    assert (
        producer_settings(KafkaDeadLetterConfig(bootstrap_servers="k:9092"), None)["bootstrap.servers"]
        == "k:9092"
    )


def test_secrets_never_reach_repr_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    source = KafkaSourceConfig(
        topics=["t"],
        sasl_password=SECRET,
        settings={"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.username": "vec"},
    )
    with caplog.at_level(logging.DEBUG):
        writer = KafkaDeadLetterWriter(
            KafkaDeadLetterConfig(bootstrap_servers=f"127.0.0.1:{_closed_port()}", timeout_seconds=0.2),
            source,
        )
        assert SECRET not in repr(writer)
        with pytest.raises(ConfigError) as raised:
            KafkaDeadLetterWriter(
                KafkaDeadLetterConfig(settings={"acks": "all", "linger.ms": "soon"}), source
            )
        assert "Invalid value" in str(raised.value)
        assert SECRET not in str(raised.value)
        asyncio.run(writer.aclose())
    assert caplog.records
    for record in caplog.records:
        assert SECRET not in repr(vars(record))
        assert SECRET not in record.getMessage()


def test_an_unreachable_broker_fails_the_write_within_the_timeout() -> None:
    writer = KafkaDeadLetterWriter(
        KafkaDeadLetterConfig(bootstrap_servers=f"127.0.0.1:{_closed_port()}", timeout_seconds=0.3), None
    )

    async def scenario() -> None:
        started = time.monotonic()
        with pytest.raises(DeadLetterError, match="not written"):
            await writer.write([_kafka_record()])
        assert time.monotonic() - started < 3
        await writer.write([])  # nothing to write: no broker needed
        await writer.aclose()

    asyncio.run(scenario())


def test_a_library_error_echoing_the_password_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    def echoing_producer(config: dict[str, object]) -> None:
        raise KafkaException(
            KafkaError(KafkaError._INVALID_ARG, f"bad sasl.password {config['sasl.password']}")
        )

    monkeypatch.setattr("consumer.deadletter.kafka.Producer", echoing_producer)
    with pytest.raises(ConfigError) as raised:
        KafkaDeadLetterWriter(KafkaDeadLetterConfig(bootstrap_servers="k:9092", sasl_password=SECRET), None)
    assert SECRET not in str(raised.value)
    assert "bad sasl.password **********" in str(raised.value)
    assert raised.value.__context__ is None


def test_message_max_bytes_follows_the_message_limit() -> None:
    # A message refused as message_too_large must still fit the producer that dead-letters it.
    limit = 40 * 1024 * 1024
    settings = producer_settings(KafkaDeadLetterConfig(), _source(), limit)
    assert int(settings["message.max.bytes"]) > limit
    default = producer_settings(KafkaDeadLetterConfig(), _source())
    assert int(default["message.max.bytes"]) > 16 * 1024 * 1024
