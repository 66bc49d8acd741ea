"""MqttSource.aclose against a real Mosquitto: acknowledged messages stay acknowledged.

The defect this guards against: the broker keeps sending PUBLISH packets (each PUBACK frees a
Receive Maximum slot for a queued message), paho writes the last PUBACKs and DISCONNECT and
closes the socket with those PUBLISH packets unread; Linux then answers with RST instead of FIN,
and the broker drops what it had not yet read from the connection, acknowledgements included.
"""

from __future__ import annotations

import asyncio
import uuid

import orjson
import paho.mqtt.client as paho
import pytest
from prometheus_client import CollectorRegistry

from consumer.config import MqttSourceConfig
from consumer.metrics import Metrics
from consumer.sources.mqtt import MqttSource
from tests.integration.test_mqtt_source import Publisher, sessions
from tests.support.intake import RecordingIntake

pytestmark = pytest.mark.integration

BOUND = 20.0
# Far more queued than Receive Maximum lets in flight: the broker is still sending when we close.
QUEUED = 400
RECEIVE_MAXIMUM = 40
# Mosquitto's own in-flight limit (max_inflight_messages, 20 by default) may be the lower one.
ACKED = 10


def _source(url: str, client_id: str, prefix: str, protocol: str) -> MqttSource:
    config = MqttSourceConfig.model_validate(
        {
            "url": url,
            "client_id": client_id,
            "protocol": protocol,
            "session_expiry_seconds": 300,
            "receive_maximum": RECEIVE_MAXIMUM,
            "reconnect_min_seconds": 1,
            "reconnect_max_seconds": 2,
        }
    )
    return MqttSource(config, [f"{prefix}/#"], Metrics(CollectorRegistry()))


async def _run(source: MqttSource, intake: RecordingIntake) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(source.run(intake, stop))
    await intake.until(lambda: source.connected, "the source to connect and subscribe", BOUND)
    return stop, task


async def _close(source: MqttSource, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(task, BOUND)
    await source.aclose()


async def _ack_until(intake: RecordingIntake, expected: set[bytes]) -> None:
    """Acknowledge whatever arrives (Receive Maximum lets no more in) until ``expected`` all came."""
    acked = 0

    def settle() -> bool:
        nonlocal acked
        for message in intake.messages[acked:]:
            message.ack()
        acked = len(intake.messages)
        return expected <= set(intake.payloads())

    await intake.until(settle, "the unacknowledged and the new messages", BOUND)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_acked_messages_do_not_come_back_after_aclose_while_the_broker_is_sending(
    mqtt_url: str, protocol: str
) -> None:
    uid = uuid.uuid4().hex[:10]
    prefix, client_id = f"close-{uid}", f"close-src-{uid}"
    payloads = [orjson.dumps({"n": i, "uid": uid}) for i in range(QUEUED)]
    while_down = [orjson.dumps({"down": i, "uid": uid}) for i in range(10)]

    async def scenario() -> None:
        publisher = Publisher(mqtt_url, paho.MQTTv5 if protocol == "5" else paho.MQTTv311)
        try:
            # Create the session first, so that everything published next is queued for it.
            source = _source(mqtt_url, client_id, prefix, protocol)
            stop, task = await _run(source, RecordingIntake(room=False))
            await _close(source, stop, task)
            await asyncio.to_thread(publisher.publish, f"{prefix}/x", payloads)

            first = RecordingIntake()
            source = _source(mqtt_url, client_id, prefix, protocol)
            stop, task = await _run(source, first)
            await first.until(lambda: len(first.messages) >= ACKED, "messages in flight", BOUND)
            acked = first.messages[:ACKED]
            for message in acked:
                message.ack()
            # No pause: the broker answers these PUBACKs with more PUBLISH packets while we close.
            await _close(source, stop, task)
            assert source.stats.acks_sent == ACKED

            # The session kept its subscription: what is published now is queued for it.
            await asyncio.to_thread(publisher.publish, f"{prefix}/x", while_down)

            acked_payloads = {m.payload for m in acked}
            rest = set(payloads) - acked_payloads
            again = RecordingIntake()
            source = _source(mqtt_url, client_id, prefix, protocol)
            stop, task = await _run(source, again)
            try:
                await _ack_until(again, rest | set(while_down))
            finally:
                await _close(source, stop, task)
            repeated = acked_payloads & set(again.payloads())
            assert not repeated, f"{len(repeated)} acknowledged messages delivered again"
        finally:
            publisher.close()

    with sessions(mqtt_url, client_id):
        asyncio.run(scenario())
