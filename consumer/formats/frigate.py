"""Frigate NVR MQTT messages -> annotations (docs/formats.md, publisher-formats.md §3).

Three shapes: ``frigate/events`` (one change of one tracked object: ``{type, before, after}``),
``frigate/tracked_object_update`` (face, licence plate, classification or description results for
a tracked object) and the per-camera count topics, whose payload is a bare integer. Boxes are
``[x1, y1, x2, y2]`` pixel corners of the camera's detect resolution, so no image size is needed.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from consumer.errors import Reason, ValidationError
from consumer.formats.common import (
    Collected,
    ConvertOptions,
    ModelOutput,
    PredictionFormat,
    class_confidence,
    class_name,
    corner_box,
    edge_confidence,
    epoch_timestamp,
    item,
    join,
    mapping,
    metadata_text,
    number,
    stream_id,
    type_error,
)
from consumer.model import Annotation

EVENT_TYPES: Final = frozenset({"new", "update", "end"})
UPDATE_TYPES: Final = frozenset({"description", "face", "lpr", "classification"})
# The key each tracked_object_update type always carries (frigate data_processing/*), so that a
# ``{type, id}`` dict of some other origin is not taken for one.
_UPDATE_MARK: Final = {
    "description": "description",
    "face": "score",
    "lpr": "plate_box",
    "classification": "model",
}
# A count payload is a short decimal integer; longer payloads are left to the JSON decoder.
_MAX_COUNT_BYTES: Final = 32
_COUNT_START: Final = frozenset(b"-0123456789")
LICENSE_PLATE: Final = "license_plate"


def is_frigate(value: dict[str, Any]) -> bool:
    """Whether ``value`` is a ``frigate/events`` or ``frigate/tracked_object_update`` message.

    Count payloads (bare integers) are never detected: only a route naming ``format: frigate``
    reads them.
    """
    kind = value.get("type")
    if type(kind) is not str:
        return False
    if kind in EVENT_TYPES:
        after = value.get("after")
        return isinstance(after, dict) and "camera" in after and "label" in after and "box" in after
    return kind in UPDATE_TYPES and type(value.get("id")) is str and _UPDATE_MARK[kind] in value


def count_payload(payload: bytes) -> int | float | None:
    """The number of a count topic's payload (``2``), or None when ``payload`` is not a bare number.

    Only called for routes that name ``format: frigate``; everything else goes to the JSON decoder,
    which refuses top-level scalars.
    """
    text = payload.strip()
    if not text or len(text) > _MAX_COUNT_BYTES or text[0] not in _COUNT_START:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if type(value) in (int, float) else None


def convert_frigate(value: Any, path: str, options: ConvertOptions) -> ModelOutput:
    """Convert a Frigate event, tracked-object update or count (a number read by ``count_payload``)."""
    if type(value) in (int, float):
        return _count(value, path, options)
    message = mapping(value, path)
    kind = message.get("type")
    if type(kind) is str and kind in UPDATE_TYPES and "after" not in message:
        return _update(message, kind, path, options)
    return _event(message, path, options)


# -- frigate/events ---------------------------------------------------------------------------------


def _event(message: dict[str, Any], path: str, options: ConvertOptions) -> ModelOutput:
    kind = message.get("type")
    if type(kind) is not str or kind not in EVENT_TYPES:
        raise ValidationError(Reason.INVALID_VALUE, "expected new, update or end", join(path, "type"))
    after_path = join(path, "after")
    after = mapping(message.get("after"), after_path)
    tracking = _required_text(after.get("id"), join(after_path, "id"))
    camera = stream_id(
        _required_text(after.get("camera"), join(after_path, "camera")), join(after_path, "camera")
    )
    label = class_name(after.get("label"), join(after_path, "label"))

    # Decision Q4: the live box (``after.box``, of ``after.frame_time``) unless the route attaches the
    # event snapshot, whose frame is ``after.snapshot``'s (Frigate >= 0.15.1; older events have none).
    source, source_path, attributes_key = after, after_path, "current_attributes"
    snapshot = after.get("snapshot")
    if options.frigate_snapshot and isinstance(snapshot, dict) and snapshot.get("box") is not None:
        source, source_path, attributes_key = snapshot, join(after_path, "snapshot"), "attributes"

    collected = Collected()
    confidence = edge_confidence(source.get("score"), join(source_path, "score"), options)
    collected.detections.append(_box(source.get("box"), join(source_path, "box"), label, confidence))
    attributes = source.get(attributes_key)
    if isinstance(attributes, list):  # ``snapshot.attributes`` of old releases is not a list of boxes
        _attribute_boxes(attributes, join(source_path, attributes_key), options, collected)
    elif attributes is not None and source is after:
        raise type_error("an array", attributes, join(source_path, attributes_key))
    sub_label = _sub_label(after.get("sub_label"), join(after_path, "sub_label"))
    if sub_label is not None:
        collected.classifications.append(sub_label)
    collected.check_caps(after_path)

    metadata: dict[str, Any] = {"frigate_type": kind, "tracking_id": metadata_text(tracking)}
    _event_metadata(after, after_path, metadata)
    values: dict[str, Any] = {"stream_id": camera, "external_id": tracking}
    frame_time = source.get("frame_time")
    if frame_time is not None:
        values["timestamp"] = epoch_timestamp(frame_time, join(source_path, "frame_time"))
    live_time = after.get("frame_time")
    if live_time is not None:
        # new, n x update and end share the tracked object's id; with the type and frame time the id
        # is unique per message and the same on redelivery (publisher-formats.md §6.5).
        values["event_id"] = f"{tracking}:{kind}:{number(live_time, join(after_path, 'frame_time'))!r}"
    context = {"id": tracking, "tracking_id": tracking, "camera": camera, "label": label, "type": kind}
    return ModelOutput(
        annotations=collected.annotations(),
        format=PredictionFormat.FRIGATE,
        image_width=options.image_width,
        image_height=options.image_height,
        values=values,
        metadata=metadata,
        context=context,
    )


def _attribute_boxes(items: list[Any], path: str, options: ConvertOptions, collected: Collected) -> None:
    """One box per attribute detection (face, license_plate...) of the same frame."""
    for index, raw in enumerate(items):
        where = item(path, index)
        attribute = mapping(raw, where)
        label = class_name(attribute.get("label"), join(where, "label"))
        confidence = edge_confidence(attribute.get("score"), join(where, "score"), options)
        collected.detections.append(_box(attribute.get("box"), join(where, "box"), label, confidence))


def _sub_label(value: Any, path: str) -> Annotation | None:
    """``sub_label``: null, ``[name, score]`` (Frigate >= 0.13) or a bare name (<= 0.12, no score)."""
    if value is None:
        return None
    if isinstance(value, str):
        return {"class": value, "confidence": 0.0} if value else None
    if not isinstance(value, list) or len(value) != 2:
        raise type_error("[name, score] or a string", value, path)
    name = value[0]
    if not isinstance(name, str):
        raise type_error("a string", name, item(path, 0))
    return {"class": name, "confidence": class_confidence(value[1], item(path, 1))}


def _event_metadata(after: dict[str, Any], path: str, metadata: dict[str, Any]) -> None:
    """Scalar context of the tracked object, within the contract's custom-metadata limits."""
    zones = after.get("current_zones")
    if zones is not None:
        if not isinstance(zones, list) or not all(isinstance(zone, str) for zone in zones):
            raise type_error("an array of strings", zones, join(path, "current_zones"))
        if zones:
            metadata["zones"] = metadata_text(",".join(zones))
    top_score = after.get("top_score")
    if top_score is not None:
        metadata["top_score"] = number(top_score, join(path, "top_score"))
    stationary = after.get("stationary")
    if stationary is not None:
        if type(stationary) is not bool:
            raise type_error("a boolean", stationary, join(path, "stationary"))
        metadata["stationary"] = stationary
    plate = after.get("recognized_license_plate")
    if plate is not None:
        if not isinstance(plate, str):
            raise type_error("a string", plate, join(path, "recognized_license_plate"))
        if plate:
            metadata[LICENSE_PLATE] = metadata_text(plate)


# -- frigate/tracked_object_update ------------------------------------------------------------------


def _update(message: dict[str, Any], kind: str, path: str, options: ConvertOptions) -> ModelOutput:
    tracking = _required_text(message.get("id"), join(path, "id"))
    collected = Collected()
    metadata: dict[str, Any] = {"update_type": kind, "tracking_id": metadata_text(tracking)}
    context: dict[str, Any] = {"id": tracking, "tracking_id": tracking, "type": kind}
    if kind == "lpr":
        confidence = edge_confidence(message.get("score"), join(path, "score"), options)
        collected.detections.append(
            _box(message.get("plate_box"), join(path, "plate_box"), LICENSE_PLATE, confidence)
        )
        _optional_text(message, "plate", path, metadata, LICENSE_PLATE)
        _optional_text(message, "name", path, metadata, "name")
    elif kind == "face":
        name = message.get("name")
        if name is not None:  # null: a face that was not recognised
            if not isinstance(name, str):
                raise type_error("a string", name, join(path, "name"))
            score = class_confidence(message.get("score"), join(path, "score"))
            collected.classifications.append({"class": name, "confidence": score})
    elif kind == "classification":
        key = "sub_label" if "sub_label" in message else "attribute"
        label = _required_text(message.get(key), join(path, key))
        score = class_confidence(message.get("score"), join(path, "score"))
        collected.classifications.append({"class": label, "confidence": score})
        _optional_text(message, "model", path, metadata, "model")
    else:  # description: generated text, no annotations
        _optional_text(message, "description", path, metadata, "description")

    values: dict[str, Any] = {"external_id": tracking}
    camera = message.get("camera")
    if camera is not None:
        values["stream_id"] = context["camera"] = stream_id(camera, join(path, "camera"))
    stamp = message.get("timestamp")
    if stamp is not None:
        values["timestamp"] = epoch_timestamp(stamp, join(path, "timestamp"))
        # Without a time (description updates) the event id falls back to the payload hash.
        values["event_id"] = f"{tracking}:{kind}:{number(stamp, join(path, 'timestamp'))!r}"
    return ModelOutput(
        annotations=collected.annotations(),
        format=PredictionFormat.FRIGATE,
        image_width=options.image_width,
        image_height=options.image_height,
        values=values,
        metadata=metadata,
        context=context,
    )


# -- count topics -----------------------------------------------------------------------------------


def _count(value: float, path: str, options: ConvertOptions) -> ModelOutput:
    """A ``frigate/<camera>/<object>[/active]`` count: no annotations, an ``item_count`` for routes."""
    where = path or "payload"
    if type(value) is not int:
        raise type_error("an integer count", value, where)
    if value < 0:
        raise ValidationError(Reason.INVALID_VALUE, f"count {value} is negative", where)
    values: dict[str, Any] = {"item_count": value}
    context: dict[str, Any] = {"item_count": value}
    if options.topic is not None:
        segments = options.topic.split("/")
        active = segments[-1] == "active"
        if active:
            segments.pop()
        # The prefix is configurable (``frigate`` by default): read camera and object from the end.
        # Zone counts (frigate/<zone>/<object>) have the same shape; ``camera`` is then the zone (Q11).
        if len(segments) >= 3 and segments[-1] and segments[-2]:
            values["item_type"] = context["label"] = segments[-1]
            context["camera"] = segments[-2]
            context["active"] = active
    return ModelOutput(annotations={}, format=PredictionFormat.FRIGATE, values=values, context=context)


# -- shared -----------------------------------------------------------------------------------------


def _box(value: Any, path: str, label: str, confidence: float) -> Annotation:
    """A ``[x1, y1, x2, y2]`` pixel box; a missing or malformed one refuses the message (R9)."""
    if value is None:
        raise ValidationError(Reason.INVALID_PREDICTIONS, "a box [x1, y1, x2, y2] is required", path)
    if not isinstance(value, list) or len(value) != 4:
        raise ValidationError(Reason.INVALID_PREDICTIONS, "expected a box [x1, y1, x2, y2]", path)
    x1, y1, x2, y2 = (number(v, item(path, i)) for i, v in enumerate(value))
    return corner_box(label, x1, y1, x2, y2, confidence, path)


def _required_text(value: Any, path: str) -> str:
    if isinstance(value, str) and value:
        return value
    if value is None:
        raise ValidationError(Reason.MISSING_FIELD, "a non-empty string is required", path)
    raise type_error("a non-empty string", value, path)


def _optional_text(message: dict[str, Any], key: str, path: str, metadata: dict[str, Any], name: str) -> None:
    value = message.get(key)
    if value is None:
        return
    if not isinstance(value, str):
        raise type_error("a string", value, join(path, key))
    if value:
        metadata[name] = metadata_text(value)
