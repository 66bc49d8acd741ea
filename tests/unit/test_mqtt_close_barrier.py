"""MqttSource's close barrier: DISCONNECT only after the broker confirmed the last acknowledgements."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import MQTTErrorCode

from consumer.sources import mqtt
from tests.unit.test_mqtt_source import Harness, _harness, loop

__all__ = ["loop"]  # the event loop fixture, shared with the MQTT source's unit tests


class Wire:
    """What the source asks paho to send while it closes, in order."""

    def __init__(self, h: Harness, *, answer: bool) -> None:
        self.sent: list[str] = []
        self.unsubscribed: list[str] = []
        self._answer = answer
        client = h.source.client

        def fake_unsubscribe(topic: Any, properties: Any = None) -> tuple[MQTTErrorCode, int | None]:
            self.sent.append("UNSUBSCRIBE")
            self.unsubscribed.append(topic)
            if self._answer:
                # The broker's UNSUBACK arrives on paho's network thread.
                threading.Thread(target=self._unsuback, args=(h, 77)).start()
            return paho.MQTT_ERR_SUCCESS, 77

        def fake_ack(mid: int, qos: int) -> MQTTErrorCode:
            self.sent.append(f"PUBACK {mid}")
            return paho.MQTT_ERR_SUCCESS

        def fake_disconnect(*_args: Any, **_kwargs: Any) -> MQTTErrorCode:
            self.sent.append("DISCONNECT")
            h.disconnect()
            return paho.MQTT_ERR_SUCCESS

        client.unsubscribe = fake_unsubscribe  # type: ignore[method-assign]
        client.ack = fake_ack  # type: ignore[method-assign]
        client.disconnect = fake_disconnect  # type: ignore[method-assign]
        client.loop_stop = lambda: paho.MQTT_ERR_SUCCESS  # type: ignore[method-assign]

    def _unsuback(self, h: Harness, mid: int) -> None:
        self.sent.append("UNSUBACK")
        h.source._on_unsubscribe(h.source.client, None, mid, [], None)


def test_disconnect_waits_for_the_unsuback_of_a_filter_no_route_uses(loop: asyncio.AbstractEventLoop) -> None:
    h = _harness(loop)
    wire = Wire(h, answer=True)
    h.connect()
    h.suback()
    h.receive(1)
    h.take()[0].ack()
    h.source._stop_network()
    assert wire.sent == ["PUBACK 1", "UNSUBSCRIBE", "UNSUBACK", "DISCONNECT"]
    (barrier,) = wire.unsubscribed
    assert barrier.startswith(mqtt._BARRIER_PREFIX + "/")
    assert barrier not in h.subscribed and barrier not in [s.filter for s in h.source.subscriptions]


def test_a_broker_that_does_not_answer_delays_disconnect_only_up_to_a_bound(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mqtt, "_BARRIER_TIMEOUT_SECONDS", 0.05)
    h = _harness(loop)
    wire = Wire(h, answer=False)
    h.connect()
    with caplog.at_level(logging.WARNING, logger=mqtt.__name__):
        h.source._stop_network()
    assert wire.sent == ["UNSUBSCRIBE", "DISCONNECT"]
    assert "did not confirm the last acknowledgements" in caplog.text


def test_an_earlier_lost_connection_does_not_pass_the_barrier(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mqtt, "_BARRIER_TIMEOUT_SECONDS", 0.05)
    h = _harness(loop)
    wire = Wire(h, answer=False)
    h.connect()
    h.disconnect()  # a connection lost during the run
    h.connect()
    with caplog.at_level(logging.WARNING, logger=mqtt.__name__):
        h.source._stop_network()
    assert wire.sent == ["UNSUBSCRIBE", "DISCONNECT"]
    # Still waited for this connection's UNSUBACK (and timed out): the old disconnect did not count.
    assert "did not confirm the last acknowledgements" in caplog.text


def test_without_a_connection_there_is_nothing_to_wait_for(loop: asyncio.AbstractEventLoop) -> None:
    h = _harness(loop)
    wire = Wire(h, answer=False)
    h.source.client.unsubscribe = lambda *_a: (paho.MQTT_ERR_NO_CONN, None)  # type: ignore[method-assign]
    h.source._stop_network()
    assert wire.sent == ["DISCONNECT"]
