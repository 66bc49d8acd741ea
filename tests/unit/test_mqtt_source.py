"""MqttSource without a broker: paho's callbacks are driven by hand, ``client.ack`` is a spy.

The network thread's view (on_connect, on_message, on_disconnect) and the event loop's view (the
pipeline settling messages in any order) meet in the ack lane; these tests pin what goes out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from consumer.config import MqttSourceConfig
from consumer.metrics import Metrics
from consumer.model import InboundMessage
from consumer.sources.handoff import BatchHandoff
from consumer.sources.mqtt import MqttSource

SUCCESS = ReasonCode(PacketTypes.CONNACK, "Success")


class Harness:
    """A source whose paho client never opens a socket."""

    def __init__(self, source: MqttSource, loop: asyncio.AbstractEventLoop, buffered: int) -> None:
        self.source = source
        self.acks: list[tuple[int, int]] = []
        self.subscribed: list[str] = []
        self._next_mid = 1000
        client = source.client

        def fake_ack(mid: int, qos: int) -> MQTTErrorCode:
            self.acks.append((mid, qos))
            return paho.MQTT_ERR_SUCCESS

        def fake_subscribe(topic: Any, *args: Any, **kwargs: Any) -> tuple[MQTTErrorCode, int | None]:
            self._next_mid += 1
            self.subscribed.append(topic)
            return paho.MQTT_ERR_SUCCESS, self._next_mid

        client.ack = fake_ack  # type: ignore[method-assign]
        client.subscribe = fake_subscribe  # type: ignore[method-assign]
        self.handoff = BatchHandoff(loop, max_buffered=buffered)
        source._handoff = self.handoff
        source._accepting = True

    def connect(self, session_present: bool = True) -> None:
        self.source._on_connect(
            self.source.client,
            None,
            paho.ConnectFlags(session_present),
            SUCCESS,
            Properties(PacketTypes.CONNACK),  # type: ignore[no-untyped-call]
        )

    def suback(self, granted: int = 1) -> None:
        for mid in list(self.source._pending_subacks):
            self.source._on_subscribe(
                self.source.client, None, mid, [ReasonCode(PacketTypes.SUBACK, identifier=granted)], None
            )

    def disconnect(self) -> None:
        self.source._on_disconnect(
            self.source.client,
            None,
            paho.DisconnectFlags(False),
            ReasonCode(PacketTypes.DISCONNECT, "Unspecified error"),
            None,
        )

    def receive(self, mid: int, qos: int = 1, topic: str = "cams/1/qc", payload: bytes = b"{}") -> None:
        msg = paho.MQTTMessage(mid, topic.encode())
        msg.qos = qos
        msg.payload = payload
        self.source._on_message(self.source.client, None, msg)

    def take(self) -> list[InboundMessage]:
        return self.handoff._take()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


def _source(**values: Any) -> tuple[MqttSource, Metrics]:
    metrics = Metrics(CollectorRegistry())
    config = MqttSourceConfig.model_validate({"client_id": "unit", **values})
    return MqttSource(config, ["cams/+/qc", "yard/#"], metrics, put_timeout_seconds=0.01), metrics


def _harness(loop: asyncio.AbstractEventLoop, buffered: int = 100, **values: Any) -> Harness:
    source, _ = _source(**values)
    return Harness(source, loop, buffered)


def test_acks_go_out_in_receive_order_whatever_the_settle_order(loop: asyncio.AbstractEventLoop) -> None:
    h = _harness(loop)
    h.connect()
    for mid in (11, 12, 13, 14, 15):
        h.receive(mid)
    messages = h.take()
    assert [m.qos for m in messages] == [1] * 5
    by_mid = dict(zip((11, 12, 13, 14, 15), messages, strict=True))
    by_mid[13].ack()
    assert h.acks == []
    by_mid[11].ack()
    assert h.acks == [(11, 1)]
    by_mid[12].ack()
    assert h.acks == [(11, 1), (12, 1), (13, 1)]
    by_mid[15].ack()
    by_mid[14].ack()
    assert h.acks == [(11, 1), (12, 1), (13, 1), (14, 1), (15, 1)]
    assert h.source.stats.acks_sent == 5


def test_qos0_messages_need_no_ack_and_do_not_hold_others(loop: asyncio.AbstractEventLoop) -> None:
    h = _harness(loop)
    h.connect()
    h.receive(0, qos=0)
    h.receive(21)
    first, second = h.take()
    second.ack()
    first.ack()
    assert h.acks == [(21, 1)]


def test_stale_acks_are_dropped_after_a_reconnect(loop: asyncio.AbstractEventLoop) -> None:
    h = _harness(loop)
    h.connect()
    h.receive(1)
    h.receive(2)
    h.receive(3)
    old = h.take()
    old[0].ack()
    assert h.acks == [(1, 1)]
    h.disconnect()
    old[1].ack()  # settled while disconnected: nothing may be queued for the next connection
    h.connect(session_present=True)
    # The broker redelivers 2 and 3 with their ids, and sends 4.
    h.receive(2)
    h.receive(3)
    h.receive(4)
    new = h.take()
    old[2].ack()  # the old copy of 3: its connection is gone
    assert h.acks == [(1, 1)]
    new[1].ack()
    assert h.acks == [(1, 1)]  # 2 (new) still pending
    new[0].ack()
    new[2].ack()
    assert h.acks == [(1, 1), (2, 1), (3, 1), (4, 1)]


def test_a_reused_packet_id_on_a_new_session_is_never_acked_by_the_old_message(
    loop: asyncio.AbstractEventLoop,
) -> None:
    h = _harness(loop)
    h.connect()
    h.receive(7, payload=b"old")
    (old,) = h.take()
    h.disconnect()
    h.connect(session_present=False)  # the broker lost the session; id 7 now names another message
    h.receive(7, payload=b"new")
    (new,) = h.take()
    old.ack()
    assert h.acks == []
    new.ack()
    assert h.acks == [(7, 1)]


def test_qos2_pubcomp_owed_across_a_resumed_session(loop: asyncio.AbstractEventLoop) -> None:
    h = _harness(loop)
    h.connect()
    h.receive(5, qos=2)
    h.receive(6, qos=2)
    five, six = h.take()
    h.disconnect()
    five.ack()  # disconnected: owed, sent once the session is back
    assert h.acks == []
    h.connect(session_present=True)
    assert h.acks == [(5, 2)]
    six.ack()  # connected again: the broker re-sent PUBREL for 6 and waits for PUBCOMP
    assert h.acks == [(5, 2), (6, 2)]


def test_qos2_pubcomp_is_not_sent_into_a_new_session(loop: asyncio.AbstractEventLoop) -> None:
    h = _harness(loop)
    h.connect()
    h.receive(5, qos=2)
    (five,) = h.take()
    h.disconnect()
    five.ack()
    h.connect(session_present=False)
    assert h.acks == []


def test_a_message_that_does_not_fit_is_not_acked_and_forces_a_reconnect(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    h = _harness(loop, buffered=1)
    h.connect()
    h.receive(1)
    with caplog.at_level(logging.ERROR):
        h.receive(2)  # the handoff is full: waits put_timeout, then gives up on it
    h.receive(3)  # the connection is condemned: not even tried
    assert h.source.stats.dropped == 2
    assert h.source._broken == h.source._active
    assert "not acknowledged" in caplog.text
    (first,) = h.take()
    first.ack()
    assert h.acks == [(1, 1)]
    # After the forced reconnect the broker redelivers 2 and 3 on a fresh lane.
    h.disconnect()
    h.connect()
    for mid in (2, 3):
        h.receive(mid)
        (message,) = h.take()
        message.ack()
    assert h.acks == [(1, 1), (2, 1), (3, 1)]


def test_readiness_follows_the_connection_and_the_subscriptions(loop: asyncio.AbstractEventLoop) -> None:
    source, metrics = _source()
    h = Harness(source, loop, 10)

    def gauge() -> float | None:
        return metrics.registry.get_sample_value("vision_events_source_connected", {"source": "mqtt"})

    assert not source.connected
    assert gauge() == 0
    h.connect()
    assert h.subscribed == ["cams/+/qc", "yard/#"]
    assert not source.connected  # SUBACKs outstanding
    h.suback()
    assert source.connected
    assert gauge() == 1
    h.disconnect()
    assert not source.connected
    assert gauge() == 0
    h.connect()
    assert h.subscribed == ["cams/+/qc", "yard/#"] * 2  # subscribed again on every connect
    h.suback(granted=0x87)  # not authorized
    assert not source.connected
    assert gauge() == 0
    reconnects = metrics.registry.get_sample_value(
        "vision_events_source_reconnects_total", {"source": "mqtt"}
    )
    assert reconnects == 1


def _v5_message(
    mid: int, topic: str, ids: list[int], user: list[tuple[str, str]] | None = None
) -> paho.MQTTMessage:
    msg = paho.MQTTMessage(mid, topic.encode())
    msg.qos = 1
    msg.payload = b"{}"
    msg.properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for identifier in ids:
        msg.properties.SubscriptionIdentifier = identifier
    if user:
        msg.properties.UserProperty = user
    return msg


def test_messages_are_labelled_with_their_subscription(loop: asyncio.AbstractEventLoop) -> None:
    h = _harness(loop)
    h.connect()
    h.receive(1, topic="cams/9/qc")
    h.receive(2, topic="yard/a/b")
    h.receive(3, topic="elsewhere")  # a subscription left in the session by an older configuration
    h.source._on_message(h.source.client, None, _v5_message(4, "yard/x", [2], [("trace", "t-1")]))
    taken = h.take()
    assert all(m.source == "mqtt" for m in taken)
    assert [(m.subscription, m.topic, m.headers) for m in taken] == [
        ("cams/+/qc", "cams/9/qc", ()),
        ("yard/#", "yard/a/b", ()),
        ("mqtt", "elsewhere", ()),
        ("yard/#", "yard/x", (("trace", b"t-1"),)),
    ]


def test_the_broker_subscription_identifier_picks_the_label(loop: asyncio.AbstractEventLoop) -> None:
    source, _ = _source(subscriptions=[{"filter": "a/#", "qos": 0}, {"filter": "a/b", "qos": 1}])
    h = Harness(source, loop, 10)
    h.connect()
    h.source._on_message(h.source.client, None, _v5_message(1, "a/b", [2, 1]))
    h.source._on_message(h.source.client, None, _v5_message(2, "a/b", [1]))
    h.source._on_message(h.source.client, None, _v5_message(3, "a/c", [2]))  # stale id: matched instead
    assert [m.subscription for m in h.take()] == ["a/b", "a/#", "a/#"]


def test_messages_after_shutdown_are_not_taken(loop: asyncio.AbstractEventLoop) -> None:
    h = _harness(loop)
    h.connect()
    h.source._accepting = False
    h.receive(1)
    assert h.take() == []


def test_the_password_never_shows(loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture) -> None:
    secret = "hunter2-do-not-print"
    with caplog.at_level(logging.DEBUG):
        source, _ = _source(username="svc", password=SecretStr(secret), url="mqtts://broker.example:8883")
        h = Harness(source, loop, 10)
        h.connect()
        h.suback()
        h.disconnect()
        source._on_connect(
            source.client,
            None,
            paho.ConnectFlags(False),
            ReasonCode(PacketTypes.CONNACK, "Bad user name or password"),
            None,
        )
    assert secret not in repr(source)
    assert secret not in str(source.__dict__.get("_config"))
    assert secret not in caplog.text
    assert "Bad user name or password" in caplog.text


def test_invalid_utf8_topics_do_not_break_the_network_thread(loop: asyncio.AbstractEventLoop) -> None:
    h = _harness(loop)
    h.connect()
    msg = paho.MQTTMessage(9, b"cams/\xff/qc")
    msg.qos = 1
    msg.payload = b"{}"
    h.source._on_message(h.source.client, None, msg)
    (message,) = h.take()
    assert message.topic == "cams/\\xff/qc"
