"""MQTT settings that never touch a broker: URLs, TLS files, subscriptions, dead-letter records."""

from __future__ import annotations

import logging

import orjson
import pytest
from pydantic import SecretStr

from consumer.clients.mqtt import BrokerAddress, parse_mqtt_url, tls_context
from consumer.config import MqttDeadLetterConfig, MqttSourceConfig, MqttSubscription, TlsConfig
from consumer.deadletter import DeadLetterRecord
from consumer.deadletter.mqtt import MqttDeadLetterWriter, record_from_mqtt_payload
from consumer.errors import ConfigError
from consumer.sources.mqtt import Subscription, build_subscriptions, filter_covers, validate_filter

# -- URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "tls", "expected"),
    [
        ("mqtt://broker", False, BrokerAddress("broker", 1883, tls=False)),
        ("mqtts://broker", False, BrokerAddress("broker", 8883, tls=True)),
        ("mqtt://broker:1999", False, BrokerAddress("broker", 1999, tls=False)),
        ("MQTT://Broker.example:1884/", False, BrokerAddress("broker.example", 1884, tls=False)),
        ("mqtts://10.0.0.1:8884", False, BrokerAddress("10.0.0.1", 8884, tls=True)),
        ("mqtt://[::1]:1883", False, BrokerAddress("::1", 1883, tls=False)),
        ("mqtt://broker", True, BrokerAddress("broker", 8883, tls=True)),
        ("mqtt://broker:1883", True, BrokerAddress("broker", 1883, tls=True)),
    ],
)
def test_urls_parse_with_default_ports(url: str, tls: bool, expected: BrokerAddress) -> None:
    assert parse_mqtt_url(url, tls=tls) == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "broker:1883",
        "http://broker",
        "ws://broker:9001",
        "tcp://broker:1883",
        "mqtt://",
        "mqtt://:1883",
        "mqtt://broker:99999",
        "mqtt://broker:0",
        "mqtt://broker:port",
        "mqtt://broker/some/path",
        "mqtt://broker?x=1",
    ],
)
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_mqtt_url(url)


def test_credentials_in_the_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_mqtt_url("mqtt://alice:s3cr3t-pw@broker:1883")
    assert "s3cr3t-pw" not in str(caught.value)
    assert "username/password" in str(caught.value)


def test_broker_address_prints_as_a_url() -> None:
    assert str(BrokerAddress("::1", 1883, tls=False)) == "mqtt://[::1]:1883"
    assert str(BrokerAddress("b", 8883, tls=True)) == "mqtts://b:8883"


def test_missing_tls_files_are_config_errors(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="certificates"):
        tls_context(TlsConfig(enabled=True, ca_file="/nonexistent/ca.pem"))
    with pytest.raises(ConfigError, match="key_file needs cert_file"):
        tls_context(TlsConfig(enabled=True, key_file="/k.pem"))


def test_insecure_tls_skips_only_the_hostname_check() -> None:
    context = tls_context(TlsConfig(enabled=True, insecure_skip_verify=True))
    assert context.check_hostname is False
    assert context.verify_mode.name == "CERT_REQUIRED"


# -- subscriptions --------------------------------------------------------------------------------


def _config(**values: object) -> MqttSourceConfig:
    return MqttSourceConfig.model_validate({"client_id": "test", **values})


def test_route_filters_become_qos1_subscriptions_deduplicated_in_order() -> None:
    subs = build_subscriptions(_config(), ["factory/+/qc", "yard/count", "factory/+/qc", "dock/#"])
    assert subs == [Subscription("factory/+/qc", 1), Subscription("yard/count", 1), Subscription("dock/#", 1)]


def test_filters_covered_by_another_are_not_subscribed_twice() -> None:
    subs = build_subscriptions(_config(), ["factory/a/qc", "factory/#", "factory/+/qc", "other"])
    assert [s.filter for s in subs] == ["factory/#", "other"]
    assert [s.filter for s in build_subscriptions(_config(), ["+/#", "#"])] == ["#"]


def test_configured_subscriptions_win_over_routes_and_merge_qos() -> None:
    config = _config(
        subscriptions=[
            MqttSubscription(filter="a/+", qos=0),
            MqttSubscription(filter="b/#", qos=1),
            MqttSubscription(filter="a/+", qos=1),
            MqttSubscription(filter="b/c", qos=2),
        ]
    )
    subs = build_subscriptions(config, ["ignored/#"])
    # b/c at QoS 2 is not covered by b/# at QoS 1: dropping it would downgrade it.
    assert subs == [Subscription("a/+", 1), Subscription("b/#", 1), Subscription("b/c", 2)]


def test_shared_group_prefixes_every_filter() -> None:
    subs = build_subscriptions(_config(shared_group="workers"), ["factory/+/qc", "yard/#"])
    assert [s.topic for s in subs] == ["$share/workers/factory/+/qc", "$share/workers/yard/#"]
    assert [s.filter for s in subs] == ["factory/+/qc", "yard/#"]


def test_explicit_share_filters_are_understood() -> None:
    config = _config(subscriptions=[MqttSubscription(filter="$share/g1/cams/#")])
    assert build_subscriptions(config, []) == [Subscription("cams/#", 1, "g1")]
    with pytest.raises(ConfigError, match="differs"):
        build_subscriptions(
            _config(shared_group="g2", subscriptions=[MqttSubscription(filter="$share/g1/cams/#")]), []
        )


def test_shared_subscriptions_need_mqtt5() -> None:
    with pytest.raises(ConfigError, match="protocol 5"):
        build_subscriptions(_config(protocol="3.1.1", shared_group="g"), ["a/#"])
    with pytest.raises(ConfigError, match="protocol 5"):
        build_subscriptions(_config(protocol="3.1.1", subscriptions=[{"filter": "$share/g/a"}]), [])


@pytest.mark.parametrize("group", ["", "a/b", "a+", "#"])
def test_bad_share_groups_are_refused(group: str) -> None:
    with pytest.raises(ConfigError):
        build_subscriptions(_config(shared_group=group), ["a/#"])


def test_nothing_to_subscribe_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nothing to subscribe"):
        build_subscriptions(_config(), [])


@pytest.mark.parametrize("text", ["", "a/#/b", "a/b#", "a+/b", "a/+b", "x\0y"])
def test_invalid_filters(text: str) -> None:
    with pytest.raises(ConfigError):
        validate_filter(text)


def test_qos2_subscriptions_are_accepted_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        subs = build_subscriptions(_config(subscriptions=[{"filter": "a", "qos": 2}]), [])
    assert subs == [Subscription("a", 2)]
    assert "QoS 2" in caplog.text


@pytest.mark.parametrize(
    ("general", "specific", "covers"),
    [
        ("#", "a/b", True),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("a/+", "a/b", True),
        ("a/+", "a/+", True),
        ("a/+", "a/#", False),
        ("a/+", "a/b/c", False),
        ("a/b", "a/+", False),
        ("a/b", "a/b", True),
        ("a/b/c", "a/b", False),
        ("+/#", "a", True),
        ("#", "$SYS/broker", False),
        ("+/broker", "$SYS/broker", False),
        ("$SYS/#", "$SYS/broker", True),
    ],
)
def test_filter_coverage(general: str, specific: str, covers: bool) -> None:
    assert filter_covers(general, specific) is covers


# -- dead-letter records --------------------------------------------------------------------------


def _record() -> DeadLetterRecord:
    return DeadLetterRecord(
        payload=b"\xff\x00not json",
        reason="invalid_json",
        detail="unexpected byte",
        coordinates={"source": "mqtt", "topic": "cams/1", "qos": 1},
        received_at=1.5,
        dead_lettered_at=2.5,
        headers=(("trace", b"abc"),),
    )


def test_dead_letter_payloads_round_trip_byte_exact() -> None:
    record = _record()
    assert record_from_mqtt_payload(orjson.dumps(record.to_json_dict())) == record


@pytest.mark.parametrize(
    "payload", [b"not json", b"[]", b'{"reason": "x"}', b'{"payload_base64": 5, "reason": "x"}']
)
def test_other_payloads_are_not_dead_letter_records(payload: bytes) -> None:
    with pytest.raises(ValueError, match="not a dead-letter record"):
        record_from_mqtt_payload(payload)


def test_mqtt5_dead_letters_carry_the_reason_as_user_properties() -> None:
    writer = MqttDeadLetterWriter(MqttDeadLetterConfig(topic="dlq"), _config())
    properties = writer._properties(_record())
    assert properties is not None
    pairs = dict(properties.UserProperty)  # type: ignore[attr-defined]
    assert pairs == {
        "reason": "invalid_json",
        "detail": "unexpected byte",
        "source_topic": "cams/1",
        "attempts": "1",
    }
    assert properties.ContentType == "application/json"  # type: ignore[attr-defined]
    v311 = MqttDeadLetterWriter(MqttDeadLetterConfig(topic="dlq"), _config(protocol="3.1.1"))
    assert v311._properties(_record()) is None


def test_dead_letter_writer_defaults_to_the_source_broker() -> None:
    writer = MqttDeadLetterWriter(MqttDeadLetterConfig(), _config(url="mqtts://b:8884", client_id="c1"))
    assert writer.address == BrokerAddress("b", 8884, tls=True)
    assert writer.client_id == "c1-dlq"
    other = MqttDeadLetterWriter(MqttDeadLetterConfig(url="mqtt://dlq-broker"), _config())
    assert other.address == BrokerAddress("dlq-broker", 1883, tls=False)


@pytest.mark.parametrize("topic", ["", "dlq/#", "dlq/+/x"])
def test_dead_letter_topic_must_be_a_name(topic: str) -> None:
    with pytest.raises(ConfigError):
        MqttDeadLetterWriter(MqttDeadLetterConfig(topic=topic), _config())


def test_writer_repr_has_no_password() -> None:
    writer = MqttDeadLetterWriter(
        MqttDeadLetterConfig(), _config(username="u", password=SecretStr("hunter2-secret"))
    )
    assert "hunter2-secret" not in repr(writer)


def test_a_dead_letter_topic_the_source_reads_is_refused() -> None:
    config = MqttDeadLetterConfig(topic="vision-events/dead-letters")
    with pytest.raises(ConfigError, match="its own dead letters"):
        MqttDeadLetterWriter(config, _config(), source_filters=["cams/#", "vision-events/#"])
    with pytest.raises(ConfigError, match="its own dead letters"):
        MqttDeadLetterWriter(config, _config(), source_filters=["$share/g/vision-events/+"])
    # Another broker, or filters that do not match: fine.
    MqttDeadLetterWriter(
        MqttDeadLetterConfig(topic="vision-events/dead-letters", url="mqtt://elsewhere"),
        _config(),
        source_filters=["vision-events/#"],
    )
    MqttDeadLetterWriter(config, _config(), source_filters=["cams/#", "vision-events/+/qc"])
