"""MQTT source (paho-mqtt 2): a persistent session, manual in-order acknowledgements, reconnects.

Threads
    paho's network thread (``loop_start``) runs every callback. ``on_message`` only builds the
    :class:`InboundMessage` and hands it to a :class:`BatchHandoff`; the event loop wakes once per
    batch and submits it to the pipeline. The pipeline calls each message's ``ack`` on the event
    loop; that settles an :class:`OrderedAcks` entry and sends the PUBACKs (QoS 1) or PUBCOMPs
    (QoS 2) that became releasable, in receive order. ``client.ack`` only queues a packet for the
    network thread, so calling it from the event loop is safe.

Connections and acknowledgements
    Every (re)connect starts a new *generation*; the acknowledgement lane is per generation. A
    packet id names a message only within a session, and after a reconnect the session may be
    gone (expired, taken over, a broker without persistence): an old id may then name another
    message. So on a disconnect the lane is dropped under the same lock the ack path holds: an ack
    of the old connection can never go out on the new one. The broker redelivers the unacknowledged
    messages of a persistent session; the pipeline settles the old copies without an ack, and the
    redelivered copies have the same eventId, so the API overwrites rather than duplicates.

Persistent session
    A stable ``client_id``; MQTT 5: ``clean_start=False`` on every connect (not
    ``MQTT_CLEAN_START_FIRST_ONLY``: that would discard, at every process start, exactly the
    messages the broker queued while the consumer was down), ``SessionExpiryInterval`` and
    ``ReceiveMaximum`` in CONNECT. MQTT 3.1.1: ``clean_session=False``. Subscriptions are (re)made
    in ``on_connect``, so a broker that lost the session gets them back.

Backpressure
    The broker sends at most Receive Maximum unacknowledged QoS 1/2 messages; the handoff buffer
    holds Receive Maximum plus room for QoS 0, so a QoS 1/2 ``put`` does not block while the
    broker honours the limit. If a ``put`` still times out (an MQTT 3.1.1 broker with a larger
    ``max_inflight_messages``, a flood of QoS 0), the message is not acknowledged and its lane stops
    releasing: once the pipeline has room again (at most 30 s later) the source drops the
    connection, and the broker redelivers everything unacknowledged. A QoS 0 message that does not
    fit is dropped and counted (QoS 0 is at most once by definition).

QoS 2
    Accepted, and completed with PUBCOMP in receive order. It is not stronger than QoS 1 here: the
    broker hands the message over at PUBREC and paho keeps that state in memory only, so a crash
    (or a QoS 2 message that does not fit the handoff) loses it, where QoS 1 would be redelivered.
    A QoS 2 message whose connection dropped is completed on the resumed session.

Shutdown order (kept by the app): ``run`` returns after ``stop`` is set; the app drains the
pipeline, whose acknowledgements still go out on the live connection; then ``aclose`` waits
(bounded) until the broker confirmed it processed the queued acknowledgements (an UNSUBSCRIBE
barrier, see ``_pass_barrier``), sends a clean DISCONNECT and stops the network thread. What was not
settled by then stays unacknowledged and is redelivered on the next start (same client id).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from consumer.clients.mqtt import BrokerAddress, new_client, parse_mqtt_url
from consumer.config import MqttSourceConfig
from consumer.errors import ConfigError
from consumer.metrics import Metrics
from consumer.model import InboundMessage, no_ack
from consumer.sources.acks import OrderedAcks
from consumer.sources.base import Intake
from consumer.sources.handoff import BatchHandoff

log = logging.getLogger(__name__)

SOURCE: Final = "mqtt"
# Handoff room for QoS 0 messages, which Receive Maximum does not limit.
QOS0_HEADROOM: Final = 1_000
_MAX_PUT_WAIT_SECONDS: Final = 5.0
_DISCONNECT_TIMEOUT_SECONDS: Final = 5.0
_BARRIER_TIMEOUT_SECONDS: Final = 5.0
# The close barrier unsubscribes from a filter under this prefix that nobody subscribes to.
_BARRIER_PREFIX: Final = "$vision-events-consumer/close-barrier"
_WATCH_INTERVAL_SECONDS: Final = 0.5
_MIN_SECONDS_BEFORE_FORCED_RECONNECT: Final = 1.0
# Without waiting for room forever (a steady QoS 0 stream may keep the pipeline busy).
_MAX_SECONDS_BEFORE_FORCED_RECONNECT: Final = 30.0
_MAX_SUBSCRIPTION_ID: Final = 268_435_455
_LABEL_CACHE_SIZE: Final = 10_000


# -- subscriptions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscription: the plain topic filter (also the metrics label), its QoS, its share group."""

    filter: str
    qos: int = 1
    group: str | None = None

    @property
    def topic(self) -> str:
        """What goes into SUBSCRIBE: ``$share/<group>/<filter>`` for a shared subscription."""
        return f"$share/{self.group}/{self.filter}" if self.group else self.filter


def validate_filter(text: str) -> None:
    """Raise ConfigError unless ``text`` is a valid MQTT topic filter."""
    if not text:
        raise ConfigError("an MQTT topic filter cannot be empty")
    if "\0" in text or len(text.encode("utf-8")) > 65_535:
        raise ConfigError(f"MQTT topic filter {text!r}: contains NUL or is too long")
    levels = text.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ConfigError(f"MQTT topic filter {text!r}: '#' must be a whole level and the last one")
        if "+" in level and level != "+":
            raise ConfigError(f"MQTT topic filter {text!r}: '+' must be a whole level")


def _validate_group(group: str) -> None:
    if not group or any(ch in group for ch in "/+#\0"):
        raise ConfigError(f"MQTT shared_group {group!r}: must be non-empty without '/', '+' or '#'")


def filter_covers(general: str, specific: str) -> bool:
    """Whether every topic matching ``specific`` also matches ``general`` (both valid filters)."""
    g_levels, s_levels = general.split("/"), specific.split("/")
    if s_levels[0].startswith("$") and g_levels[0] in ("+", "#"):
        return False  # wildcards at the first level never match $-topics
    for index, g in enumerate(g_levels):
        if g == "#":
            return True
        if index >= len(s_levels):
            # 'a/#' also matches 'a'; anything else longer than ``specific`` does not cover it.
            return g_levels[index:] == ["#"]
        s = s_levels[index]
        if s == "#":
            return False
        if g not in ("+", s):
            return False
    return len(g_levels) == len(s_levels)


def _without_covered(subs: list[Subscription]) -> list[Subscription]:
    """Drop subscriptions another one already covers at the same or a higher QoS.

    Mosquitto delivers a message once per matching subscription of a client, so overlapping
    filters would make the pipeline process every such message twice.
    """
    kept = []
    for i, candidate in enumerate(subs):
        covered = any(
            j != i
            and other.qos >= candidate.qos
            and filter_covers(other.filter, candidate.filter)
            and (j < i or not filter_covers(candidate.filter, other.filter))
            for j, other in enumerate(subs)
        )
        if covered:
            log.info(
                "MQTT filter %r is covered by another subscription; not subscribing to it", candidate.filter
            )
        else:
            kept.append(candidate)
    return kept


def build_subscriptions(config: MqttSourceConfig, route_filters: Sequence[str]) -> list[Subscription]:
    """The subscriptions to make: ``config.subscriptions``, or else every route filter at QoS 1.

    Exact duplicates are merged (highest QoS wins) and filters covered by another are dropped.
    With ``shared_group`` every filter becomes ``$share/<group>/<filter>`` (MQTT 5 only); a filter
    written as ``$share/<group>/<filter>`` in the settings is accepted too.
    """
    group = config.shared_group
    if group is not None:
        _validate_group(group)
    wanted: list[tuple[str, int]] = (
        [(s.filter, s.qos) for s in config.subscriptions]
        if config.subscriptions
        else [(f, 1) for f in route_filters]
    )
    merged: dict[tuple[str, str | None], int] = {}
    for raw, qos in wanted:
        text, own_group = raw, group
        if raw.startswith("$share/"):
            _, _, rest = raw.partition("/")
            own_group, sep, text = rest.partition("/")
            if not sep:
                raise ConfigError(f"MQTT filter {raw!r}: expected $share/<group>/<filter>")
            _validate_group(own_group)
            if group is not None and own_group != group:
                raise ConfigError(f"MQTT filter {raw!r}: its group differs from shared_group {group!r}")
        validate_filter(text)
        key = (text, own_group)
        merged[key] = max(qos, merged.get(key, 0))
    if not merged:
        raise ConfigError(
            "MQTT source: nothing to subscribe to "
            "(no source.mqtt.subscriptions and no route with an MQTT filter)"
        )
    subs = [Subscription(text, qos, own_group) for (text, own_group), qos in merged.items()]
    if config.protocol != "5" and any(s.group for s in subs):
        raise ConfigError("MQTT shared subscriptions ($share/...) need protocol 5")
    if any(s.qos == 2 for s in subs):
        log.warning(
            "MQTT QoS 2 subscriptions give no stronger guarantee than QoS 1 here: the broker hands a "
            "QoS 2 message over at PUBREC, and paho keeps that state in memory only. Prefer QoS 1."
        )
    return _without_covered(subs)


# -- the source -----------------------------------------------------------------------------------


@dataclass(slots=True)
class MqttSourceStats:
    """Counters for diagnostics and tests."""

    received: int = 0
    dropped: int = 0
    acks_sent: int = 0
    reconnects: int = 0


@dataclass(frozen=True, slots=True)
class _Delivery:
    """What acknowledging one message takes: its packet id and QoS, on which connection and session."""

    mid: int
    qos: int
    generation: int
    session: int


class MqttSource:
    """Subscribes to an MQTT broker and feeds the pipeline; see the module docstring."""

    name = SOURCE

    def __init__(
        self,
        config: MqttSourceConfig,
        route_filters: Sequence[str],
        metrics: Metrics,
        *,
        put_timeout_seconds: float | None = None,
        max_buffered: int | None = None,
    ) -> None:
        """``put_timeout_seconds`` and ``max_buffered`` tune the handoff (defaults: see the docstring)."""
        self._config = config
        self._v5 = config.protocol == "5"
        self.address: BrokerAddress = parse_mqtt_url(config.url, tls=config.tls.enabled)
        self.subscriptions = build_subscriptions(config, route_filters)
        self._by_id = {index + 1: sub.filter for index, sub in enumerate(self.subscriptions)}
        self._route_filters = list(dict.fromkeys(route_filters))
        self._labels: dict[tuple[int | None, str], str] = {}
        self._metrics = metrics
        self._connected_gauge = metrics.source_connected.labels(SOURCE)
        self._reconnects = metrics.source_reconnects.labels(SOURCE)
        self._dropped_redelivery = metrics.messages_dropped.labels(SOURCE, "redelivery")
        self._dropped_qos0 = metrics.messages_dropped.labels(SOURCE, "qos0_overflow")
        self._buffer_size = max_buffered or config.receive_maximum + QOS0_HEADROOM
        self._put_timeout = (
            put_timeout_seconds
            if put_timeout_seconds is not None
            else min(_MAX_PUT_WAIT_SECONDS, config.keepalive_seconds / 3)
        )
        if config.session_expiry_seconds == 0 and self._v5:
            log.warning(
                "MQTT session_expiry_seconds is 0: the broker drops the session (and its queued "
                "messages) on every disconnect"
            )
        self._client = new_client(
            config, self.address, client_id=config.client_id, persistent=True, manual_ack=True, logger=log
        )
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_unsubscribe = self._on_unsubscribe
        self._client.on_message = self._on_message

        self._acks: OrderedAcks[_Delivery] = OrderedAcks()
        # Guards the generation, the lanes' lifetime and every client.ack call (see the docstring).
        self._lock = threading.Lock()
        self._generation = 0
        self._active: int | None = None
        self._session = 0
        self._orphans: list[int] = []  # QoS 2 PUBCOMPs owed to the session while disconnected
        self._broken: int | None = None
        self._broken_at = 0.0
        self._renewing = False
        self._pending_subacks: dict[int, Subscription] = {}
        self._refused: set[str] = set()
        self._link_up = False
        self._ever_connected = False
        self._accepting = False
        self._closing = False
        self._started = False
        self._closed = False
        self._disconnected = threading.Event()
        self._barrier_mid: int | None = None
        self._barrier_passed = threading.Event()
        self._handoff: BatchHandoff | None = None
        self.stats = MqttSourceStats()
        self._connected_gauge.set(0)

    def __repr__(self) -> str:
        return f"MqttSource(url={str(self.address)!r}, client_id={self._config.client_id!r})"

    # -- state ----------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Connected, every subscription granted: the source's share of readiness."""
        with self._lock:
            return self._link_up and not self._refused and not self._pending_subacks

    @property
    def client(self) -> paho.Client:
        """The paho client (diagnostics and tests)."""
        return self._client

    def _publish_state(self) -> None:
        self._connected_gauge.set(1 if self.connected else 0)

    # -- running --------------------------------------------------------------------------------------

    async def run(self, pipeline: Intake, stop: asyncio.Event) -> None:
        """Connect (retrying with backoff), then submit what arrives until ``stop`` is set."""
        if self._started:
            raise RuntimeError("MqttSource.run may be called once")
        self._started = True
        self._handoff = BatchHandoff(asyncio.get_running_loop(), max_buffered=self._buffer_size)
        self._accepting = True
        if self._v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self._config.session_expiry_seconds
            properties.ReceiveMaximum = self._config.receive_maximum
            self._client.connect_async(
                self.address.host,
                self.address.port,
                keepalive=self._config.keepalive_seconds,
                clean_start=False,
                properties=properties,
            )
        else:
            self._client.connect_async(
                self.address.host, self.address.port, keepalive=self._config.keepalive_seconds
            )
        log.info(
            "connecting to the MQTT broker",
            extra={
                "broker": str(self.address),
                "client_id": self._config.client_id,
                "protocol": self._config.protocol,
                "subscriptions": [s.topic for s in self.subscriptions],
            },
        )
        self._client.loop_start()
        watcher = asyncio.get_running_loop().create_task(self._watch(pipeline))
        try:
            await self._handoff.run(pipeline, stop)
        finally:
            watcher.cancel()
            self._accepting = False
            self._handoff.close()

    async def aclose(self) -> None:
        """After the pipeline drained: the queued acknowledgements confirmed, DISCONNECT, thread stopped."""
        if self._closed:
            return
        self._closed = True
        self._accepting = False
        if self._handoff is not None:
            self._handoff.close()
        if self._started:
            await asyncio.to_thread(self._stop_network)
        self._publish_state()
        log.info(
            "MQTT source closed", extra={"acks_sent": self.stats.acks_sent, "dropped": self.stats.dropped}
        )

    def _stop_network(self) -> None:
        with self._lock:
            self._closing = True
            self._active = None
            self._acks.drop_all()
            self._link_up = False
        self._pass_barrier()
        # DISCONNECT is queued behind the acknowledgements already queued, so they go out first.
        self._client.disconnect()
        if not self._disconnected.wait(_DISCONNECT_TIMEOUT_SECONDS):
            log.warning("the MQTT broker did not see a clean disconnect in time; closing the socket")
            self._shutdown_socket()
        self._client.loop_stop()

    def _pass_barrier(self) -> None:
        """Wait (bounded) until the broker has processed every acknowledgement already sent.

        Sending the PUBACKs/PUBCOMPs before DISCONNECT is not enough: paho closes the socket right
        after writing DISCONNECT, and if the broker's next PUBLISH packets (each PUBACK frees a
        Receive Maximum slot) sit unread in our receive buffer, Linux answers the close with RST
        instead of FIN. The broker then drops what it had not yet read from the connection, the
        last acknowledgements included, and redelivers those messages to the next session.
        A broker handles one connection's packets in order, so the UNSUBACK of an UNSUBSCRIBE sent
        after the acknowledgements proves it processed them. The filter is unique and under a
        prefix no route uses: an UNSUBSCRIBE removes only a subscription whose filter is equal
        (MQTT 5 section 3.10.4, 3.1.1 section 3.10.4), so the session keeps its real ones.
        """
        with self._lock:
            self._barrier_passed.clear()  # an earlier connection's end may have set it
            rc, mid = self._client.unsubscribe(f"{_BARRIER_PREFIX}/{uuid.uuid4().hex}")
            if rc != paho.MQTT_ERR_SUCCESS:
                return  # not connected: no acknowledgement can be waiting in this connection
            self._barrier_mid = mid
        if not self._barrier_passed.wait(_BARRIER_TIMEOUT_SECONDS):
            log.warning(
                "the MQTT broker did not confirm the last acknowledgements in time; "
                "the messages they settle may be redelivered"
            )

    async def _watch(self, pipeline: Intake) -> None:
        """Force a reconnect once the pipeline has room, after a message could not be handed off."""
        while True:
            await asyncio.sleep(_WATCH_INTERVAL_SECONDS)
            broken = self._broken
            if (
                broken is not None
                and broken == self._active
                and (waited := time.monotonic() - self._broken_at) >= _MIN_SECONDS_BEFORE_FORCED_RECONNECT
                and (pipeline.has_room(self._buffer_size) or waited >= _MAX_SECONDS_BEFORE_FORCED_RECONNECT)
            ):
                log.warning(
                    "reconnecting so that the broker redelivers the messages that were not handed off"
                )
                self._broken = None
                self._renewing = True
                self._shutdown_socket()

    def _shutdown_socket(self) -> None:
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            # The plain socket's shutdown, also for TLS: paho's thread then sees the connection end.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    # -- paho callbacks (network thread) --------------------------------------------------------------

    def _on_connect(
        self, client: paho.Client, _userdata: Any, flags: paho.ConnectFlags, reason: ReasonCode, _props: Any
    ) -> None:
        try:
            self._connected_to_broker(client, flags, reason)
        except Exception:
            log.exception("MQTT on_connect failed")

    def _connected_to_broker(self, client: paho.Client, flags: paho.ConnectFlags, reason: ReasonCode) -> None:
        if reason.is_failure:
            log.error(
                "the MQTT broker refused the connection: %s", reason, extra={"broker": str(self.address)}
            )
            return
        with self._lock:
            if self._closing:
                client.disconnect()
                return
            self._generation += 1
            self._active = self._generation
            self._pending_subacks.clear()
            self._refused.clear()
            if flags.session_present:
                orphans, self._orphans = self._orphans, []
                for mid in orphans:
                    client.ack(mid, 2)
                    self.stats.acks_sent += 1
            else:
                self._session += 1
                self._orphans.clear()
            self._link_up = True
        self._disconnected.clear()
        if self._ever_connected:
            self.stats.reconnects += 1
            self._reconnects.inc()
        log_level = logging.WARNING if self._ever_connected and not flags.session_present else logging.INFO
        log.log(
            log_level,
            "connected to the MQTT broker (session %s)",
            "resumed" if flags.session_present else "new: the broker kept nothing for us",
            extra={"broker": str(self.address), "generation": self._generation},
        )
        self._ever_connected = True
        self._subscribe_all(client)
        self._publish_state()

    def _subscribe_all(self, client: paho.Client) -> None:
        for index, sub in enumerate(self.subscriptions):
            if self._v5:
                properties = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
                if index + 1 <= _MAX_SUBSCRIPTION_ID:
                    properties.SubscriptionIdentifier = index + 1
                # Retained messages only when the subscription is new, not on every reconnect.
                options = SubscribeOptions(
                    qos=sub.qos, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
                )
                rc, mid = client.subscribe(sub.topic, options=options, properties=properties)
            else:
                rc, mid = client.subscribe(sub.topic, qos=sub.qos)
            if rc != paho.MQTT_ERR_SUCCESS or mid is None:
                log.error(
                    "MQTT SUBSCRIBE could not be sent: %s", paho.error_string(rc), extra={"filter": sub.topic}
                )
                continue
            with self._lock:
                self._pending_subacks[mid] = sub

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, mid: int, reasons: list[ReasonCode], _props: Any
    ) -> None:
        try:
            with self._lock:
                sub = self._pending_subacks.pop(mid, None)
            if sub is None:
                return
            reason = reasons[0] if reasons else None
            if reason is None or reason.is_failure:
                with self._lock:
                    self._refused.add(sub.topic)
                log.error(
                    "the MQTT broker refused a subscription: %s; the source is not ready",
                    reason,
                    extra={"filter": sub.topic},
                )
            elif reason.value < sub.qos:
                log.warning(
                    "the MQTT broker granted QoS %d instead of %d",
                    reason.value,
                    sub.qos,
                    extra={"filter": sub.topic},
                )
            else:
                log.info("subscribed", extra={"filter": sub.topic, "qos": sub.qos})
            self._publish_state()
        except Exception:
            log.exception("MQTT on_subscribe failed")

    def _on_unsubscribe(
        self, _client: paho.Client, _userdata: Any, mid: int, _reasons: list[ReasonCode], _props: Any
    ) -> None:
        # Only the close barrier unsubscribes; any answer (v5: "no subscription existed") passes it.
        with self._lock:
            if mid == self._barrier_mid:
                self._barrier_passed.set()

    def _on_connect_fail(self, _client: paho.Client, _userdata: Any) -> None:
        log.warning(
            "cannot reach the MQTT broker; retrying with backoff", extra={"broker": str(self.address)}
        )

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        try:
            with self._lock:
                old, self._active = self._active, None
                if old is not None:
                    self._acks.drop(old)
                self._link_up = False
                self._pending_subacks.clear()
                closing = self._closing
            self._disconnected.set()
            self._barrier_passed.set()  # no UNSUBACK comes on a connection that is gone
            self._publish_state()
            renewing, self._renewing = self._renewing, False
            if closing or renewing:
                log.info("disconnected from the MQTT broker")
            elif old is not None:
                log.warning(
                    "lost the MQTT connection (%s); reconnecting; unacknowledged messages get redelivered",
                    reason,
                    extra={"broker": str(self.address)},
                )
        except Exception:
            log.exception("MQTT on_disconnect failed")

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            self._receive(msg)
        except Exception:
            # Not acknowledged: its lane holds every later ack, and the next reconnect redelivers it.
            log.exception("MQTT on_message failed")

    def _receive(self, msg: paho.MQTTMessage) -> None:
        handoff = self._handoff
        generation = self._active
        if handoff is None or generation is None or not self._accepting:
            return  # shutting down: left unacknowledged, redelivered on the next start
        qos = msg.qos
        if qos and self._broken == generation:
            self.stats.dropped += 1  # this connection is being replaced; the broker redelivers it
            self._dropped_redelivery.inc()
            return
        topic = _topic_of(msg)
        ack = no_ack  # QoS 0 messages need no acknowledgement
        if qos:
            delivery = _Delivery(msg.mid, qos, generation, self._session)
            handle = self._acks.register(generation, delivery)
            ack = functools.partial(self._settle, handle, delivery)
        message = InboundMessage(
            source=SOURCE,
            topic=topic,
            payload=payload if isinstance(payload := msg.payload, bytes) else bytes(payload),
            received_at=time.time(),
            subscription=self._label(msg, topic),
            headers=_user_properties(msg),
            qos=qos,
            ack=ack,
        )
        if handoff.put(message, timeout=self._put_timeout):
            self.stats.received += 1
            return
        if not self._accepting:
            return
        self.stats.dropped += 1
        if qos == 0:
            self._dropped_qos0.inc()
            if self.stats.dropped == 1 or self.stats.dropped % 1000 == 0:
                log.warning(
                    "dropped QoS 0 message(s): the pipeline is not keeping up",
                    extra={"dropped": self.stats.dropped},
                )
            return
        self._dropped_redelivery.inc()
        self._broken, self._broken_at = generation, time.monotonic()
        log.error(
            "an MQTT message waited %.1fs for room in the handoff; it is not acknowledged and the "
            "connection will be renewed so that the broker redelivers it (is the broker sending more "
            "than receive_maximum unacknowledged messages? MQTT 3.1.1: keep Mosquitto's "
            "max_inflight_messages <= receive_maximum)",
            self._put_timeout,
            extra={"topic": topic, "dropped": self.stats.dropped},
        )

    def _label(self, msg: paho.MQTTMessage, topic: str) -> str:
        """The subscription filter the message came through (a bounded metrics label).

        Topics repeat endlessly and matching a filter is pure Python, so the answer is cached per
        (subscription identifier, topic); the cache starts over when it gets large.
        """
        ids = None
        if self._v5 and msg.properties is not None:
            ids = getattr(msg.properties, "SubscriptionIdentifier", None)
        key = (ids[0] if ids else None, topic)
        label = self._labels.get(key)
        if label is None:
            if len(self._labels) >= _LABEL_CACHE_SIZE:
                self._labels.clear()
            label = self._labels[key] = self._match_label(ids, topic)
        return label

    def _match_label(self, ids: list[int] | None, topic: str) -> str:
        if ids:
            found = self._by_id.get(ids[0])
            # A subscription left in the session by an older configuration may reuse the id.
            if found is not None and paho.topic_matches_sub(found, topic):
                return found
        for sub in self.subscriptions:
            if paho.topic_matches_sub(sub.filter, topic):
                return sub.filter
        for route_filter in self._route_filters:
            if paho.topic_matches_sub(route_filter, topic):
                return route_filter
        return SOURCE

    # -- acknowledgement (event loop) -----------------------------------------------------------------

    def _settle(self, handle: Any, delivery: _Delivery) -> None:
        with self._lock:
            released = self._acks.settle(handle)
            active = self._active
            for item in released:
                if item.generation == active:
                    self._client.ack(item.mid, item.qos)
                    self.stats.acks_sent += 1
            if delivery.qos == 2 and delivery.generation != active and delivery.session == self._session:
                # The broker re-sends PUBREL for it on the resumed session and waits for PUBCOMP.
                if active is None:
                    self._orphans.append(delivery.mid)
                else:
                    self._client.ack(delivery.mid, 2)
                    self.stats.acks_sent += 1


def _topic_of(msg: paho.MQTTMessage) -> str:
    try:
        return msg.topic
    except UnicodeDecodeError:
        return msg._topic.decode("utf-8", "backslashreplace")  # the raw topic: not valid UTF-8


def _user_properties(msg: paho.MQTTMessage) -> tuple[tuple[str, bytes], ...]:
    """MQTT 5 user properties as message headers (kept in dead-letter records)."""
    if msg.properties is None:
        return ()
    pairs = getattr(msg.properties, "UserProperty", None)
    if not pairs:
        return ()
    return tuple((str(key), str(value).encode("utf-8")) for key, value in pairs)
