"""A VisionEvent as a spool row, and back, without recomputing anything.

A row keeps what the forwarder needs to deliver the event exactly as the pipeline built it, and
what the dead-letter writer needs if the API refuses it:

- columns: ``event_id`` (stored, never recomputed), the capture time (the drain order), the
  message's ``source``/``topic``/``received_at`` and its original ``payload`` bytes;
- ``doc``: JSON (orjson) of the other event fields, the annotations and the rest of the message's
  coordinates (key and headers as base64);
- images: the bytes, in the ``images`` table once per content hash (``sha256:<hex>``); the row names
  them by key. An image given only as an uploaded ``source_id`` is kept as that id.

The rebuilt message acknowledges nothing: the original was acknowledged when the row was committed.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson

from consumer.contract import EventType
from consumer.model import ImageSource, InboundMessage, VisionEvent

DOC_VERSION: Final = 1


class RowDecodeError(ValueError):
    """A spool row that cannot be turned back into an event (it is dead-lettered with its bytes)."""


@dataclass(slots=True)
class NewRow:
    """An event ready to be inserted."""

    event_id: str
    capture_ts: float
    source: str
    topic: str
    received_at: float
    doc: str
    payload: bytes
    output_key: str | None
    input_key: str | None

    @property
    def size(self) -> int:
        """Bytes this row holds (images are counted once each, separately)."""
        return len(self.doc) + len(self.payload)


@dataclass(slots=True)
class SpoolRow:
    """A row read back for delivery."""

    seq: int
    event_id: str
    source: str
    topic: str
    received_at: float
    doc: str
    payload: bytes
    output_key: str | None
    input_key: str | None

    def message(self) -> InboundMessage:
        """The original message (bytes and the coordinates in columns), for a dead-letter record."""
        return InboundMessage(
            source=self.source, topic=self.topic, payload=self.payload, received_at=self.received_at
        )


def image_key(data: bytes) -> str:
    """The key an image's bytes are stored under."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _image_ref(image: ImageSource | None, key: str | None) -> dict[str, str] | None:
    if image is None:
        return None
    if key is not None:
        return {"key": key}
    if image.source_id is not None:
        return {"source_id": image.source_id}
    raise ValueError("an inline or URL image must be resolved to bytes before spooling")


def encode_event(event: VisionEvent, output_key: str | None, input_key: str | None) -> NewRow:
    """The row for ``event``; ``output_key``/``input_key`` name the stored bytes of its images.

    Raises ``orjson.JSONEncodeError`` when a field is not serializable (the event is then refused,
    as the API sinks refuse it).
    """
    message = event.message
    doc: dict[str, Any] = {
        "v": DOC_VERSION,
        "type": event.event_type.value,
        "use_case": event.use_case_id,
        "ts": event.timestamp.isoformat(),
        "route": event.route,
        "data": event.event_data,
        "meta": event.custom_metadata,
        "device": event.device_id,
        "stream": event.stream_id,
        "workflow": event.workflow_id,
        "ann": event.annotations,
        "approx": event.approx_bytes,
        "out": _image_ref(event.output_image, output_key),
        "in": _image_ref(event.input_image, input_key),
        "msg": {
            "sub": message.subscription,
            "key": None if message.key is None else base64.b64encode(message.key).decode("ascii"),
            "headers": [[k, base64.b64encode(v).decode("ascii")] for k, v in message.headers],
            "partition": message.partition,
            "offset": message.offset,
            "qos": message.qos,
        },
    }
    return NewRow(
        event_id=event.event_id,
        capture_ts=event.timestamp.timestamp(),
        source=message.source,
        topic=message.topic,
        received_at=message.received_at,
        doc=orjson.dumps(doc).decode("utf-8"),
        payload=message.payload,
        output_key=output_key if event.output_image is not None else None,
        input_key=input_key if event.input_image is not None else None,
    )


def _image(ref: Any, images: dict[str, bytes]) -> ImageSource | None:
    if ref is None:
        return None
    if not isinstance(ref, dict):
        raise RowDecodeError(f"bad image reference {ref!r}")
    if "source_id" in ref:
        return ImageSource(source_id=str(ref["source_id"]))
    key = ref.get("key")
    data = images.get(key) if isinstance(key, str) else None
    if data is None:
        raise RowDecodeError(f"image {key!r} is missing from the spool")
    return ImageSource(base64=base64.b64encode(data).decode("ascii"), _decoded=data)


def decode_event(row: SpoolRow, images: dict[str, bytes]) -> VisionEvent:
    """The event stored in ``row`` (its images looked up in ``images``). Raises RowDecodeError."""
    try:
        doc = orjson.loads(row.doc)
    except orjson.JSONDecodeError as exc:
        raise RowDecodeError(f"unreadable spool row: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("v") != DOC_VERSION:
        raise RowDecodeError(f"unknown spool row format {doc.get('v') if isinstance(doc, dict) else doc!r}")
    try:
        coords = doc["msg"]
        message = InboundMessage(
            source=row.source,
            topic=row.topic,
            payload=row.payload,
            received_at=row.received_at,
            subscription=coords["sub"],
            key=None if coords["key"] is None else base64.b64decode(coords["key"]),
            headers=tuple((str(k), base64.b64decode(v)) for k, v in coords["headers"]),
            partition=coords["partition"],
            offset=coords["offset"],
            qos=coords["qos"],
        )
        return VisionEvent(
            event_id=row.event_id,
            event_type=EventType(doc["type"]),
            use_case_id=doc["use_case"],
            timestamp=datetime.fromisoformat(doc["ts"]),
            message=message,
            route=doc["route"],
            event_data=doc["data"],
            custom_metadata=doc["meta"],
            device_id=doc["device"],
            stream_id=doc["stream"],
            workflow_id=doc["workflow"],
            input_image=_image(doc["in"], images),
            output_image=_image(doc["out"], images),
            annotations=doc["ann"],
            approx_bytes=int(doc["approx"]),
        )
    except RowDecodeError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise RowDecodeError(f"unreadable spool row: {type(exc).__name__}: {exc}") from exc
