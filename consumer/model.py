"""The two records every stage passes along: what a source received, and the event made of it."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from consumer.contract import EventType
from consumer.errors import Reason, ValidationError

# An annotation: one element of objectDetections / classifications / instanceSegmentations /
# keypoints, already in wire form (camelCase keys, floats in absolute pixels).
Annotation = dict[str, Any]
# Wire key ("objectDetections", ...) -> its non-empty list.
Annotations = dict[str, list[Annotation]]
MetadataValue = str | int | float | bool


def no_ack() -> None:
    """Acknowledge nothing: the one ``ack`` of messages that need none.

    The default of :attr:`InboundMessage.ack`; also MQTT QoS 0 messages, records replayed from an
    origin that needs no acknowledgement, and events rebuilt from the spool.
    """


class BatchAck(Protocol):
    """An ``ack`` that can also be settled together with the other acks of the same ``batch``.

    ``batch`` is the owner (a Kafka offset book); the pipeline settles a delivered batch's acks of
    one owner with one ``settle_many`` call instead of one call each: one lock, one wake-up.
    """

    batch: object

    def __call__(self) -> None:
        """Settle this one message."""

    def settle_many(self, acks: Any) -> None:
        """Settle ``acks``, all of this ``batch``."""


@dataclass(slots=True, eq=False)
class InboundMessage:
    """One message as a source received it, before anything is interpreted.

    ``ack`` is called exactly once, when the message's fate is final: its event was delivered,
    it was dead-lettered, or a route suppressed it on purpose. Sources use it to commit offsets or
    send MQTT acknowledgements in order.
    """

    source: str
    topic: str
    payload: bytes
    received_at: float
    subscription: str = ""
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None
    offset: int | None = None
    qos: int | None = None
    ack: Callable[[], None] = no_ack

    def coordinates(self) -> dict[str, Any]:
        """Where the message came from, for logs and dead-letter records."""
        coords: dict[str, Any] = {"source": self.source, "topic": self.topic}
        if self.partition is not None:
            coords["partition"] = self.partition
        if self.offset is not None:
            coords["offset"] = self.offset
        if self.qos is not None:
            coords["qos"] = self.qos
        if self.key is not None:
            coords["key"] = self.key.decode("utf-8", "backslashreplace")
        return coords


@dataclass(slots=True, eq=False)
class ImageSource:
    """An image attached to an event: inline base64, a URL to fetch, or an already uploaded id.

    Exactly one of the three is set. Inline base64 is kept as received (the on-device store takes
    it verbatim); the decoded bytes are computed once, on first use.
    """

    base64: str | None = None
    url: str | None = None
    source_id: str | None = None
    _decoded: bytes | None = field(default=None, repr=False)

    def data(self) -> bytes:
        """The decoded image bytes of an inline image."""
        if self._decoded is None:
            if self.base64 is None:
                raise ValueError("only inline images have bytes")
            self._decoded = decode_base64_image(self.base64, "")
        return self._decoded

    def content_key(self) -> str:
        """A stable key for de-duplicating uploads of the same image."""
        if self.source_id is not None:
            return "id:" + self.source_id
        if self.url is not None:
            return "url:" + self.url
        return "sha256:" + hashlib.sha256(self.data()).hexdigest()


def decode_base64_image(text: str, path: str) -> bytes:
    """Decode a base64 image, accepting a ``data:`` URL prefix; a typed error names ``path``."""
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationError(Reason.INVALID_IMAGE, f"not valid base64: {exc}", path) from exc


@dataclass(slots=True, eq=False)
class VisionEvent:
    """A normalized, validated Vision Event, independent of which API it goes to.

    ``event_data`` holds the camelCase eventData keys with None values already removed.
    ``approx_bytes`` estimates the event's share of a request body, for byte-bounded batches.
    """

    event_id: str
    event_type: EventType
    use_case_id: str
    timestamp: datetime
    message: InboundMessage
    route: str = ""
    event_data: dict[str, Any] = field(default_factory=dict)
    custom_metadata: dict[str, MetadataValue] = field(default_factory=dict)
    device_id: str | None = None
    stream_id: str | None = None
    workflow_id: str | None = None
    input_image: ImageSource | None = None
    output_image: ImageSource | None = None
    annotations: Annotations = field(default_factory=dict)
    approx_bytes: int = 0
    # The route's ``image_unavailable`` policy, carried with the event because the sinks that
    # fetch its images know no routes: True delivers it without an image that cannot be fetched.
    deliver_without_image: bool = False
