"""AXIS scene metadata (Axis cameras' own MQTT analytics) -> annotations (publisher-formats.md §4).

Two versions: the beta ``com.axis.analytics_scene_description.v0.beta`` (``{"frame": {timestamp,
observations, operations}}``, the Metadata Broker wraps it in ``{"data": ...}``) and v1
``axis.scene.frame_v1`` (flat ``{channel_id, timestamp, detections, track_events}``). One message is
one frame. Boxes are normalized ``left/top/right/bottom`` in 0..1 with y down, so the route's
``image_size`` is required (rule R2): the message never states the stream's resolution.
"""

from __future__ import annotations

from typing import Any, Final

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
    item,
    join,
    mapping,
    metadata_text,
    number,
    required_image_size,
    stream_id,
    type_error,
    utc_timestamp,
)

# Keys of an observation's ``class`` that are not attributes.
_CLASS_KEYS: Final = frozenset({"type", "score"})


def is_axis(value: dict[str, Any]) -> bool:
    """Whether ``value`` is a beta frame (``frame.observations``, maybe under ``data``) or a v1 frame."""
    if "channel_id" in value:
        return isinstance(value.get("detections"), list)
    data = value.get("data")
    frame = data.get("frame") if isinstance(data, dict) and "frame" not in value else value.get("frame")
    return isinstance(frame, dict) and isinstance(frame.get("observations"), list)


def convert_axis(value: Any, path: str, options: ConvertOptions) -> ModelOutput:
    """Convert one scene-metadata frame: boxes, colour classifications, time, channel, tracking ids."""
    message = mapping(value, path)
    values: dict[str, Any] = {}
    context: dict[str, Any] = {}
    if "channel_id" in message or "detections" in message:  # v1
        frame, frame_path = message, path
        objects_key, track_key = "detections", "object_track_id"
        channel = message.get("channel_id")
        if channel is not None:
            values["stream_id"] = context["channel_id"] = stream_id(channel, join(path, "channel_id"))
    else:  # beta
        if "frame" not in message and isinstance(message.get("data"), dict):
            path = join(path, "data")
            message = message["data"]
        frame_path = join(path, "frame")
        frame = mapping(message.get("frame"), frame_path)
        objects_key, track_key = "observations", "track_id"

    objects_path = join(frame_path, objects_key)
    objects = frame.get(objects_key)
    if objects is None:
        objects = []
    elif not isinstance(objects, list):
        raise type_error("an array", objects, objects_path)

    collected = Collected()
    metadata: dict[str, Any] = {}
    tracking: list[str] = []
    several = len(objects) > 1
    for index, raw in enumerate(objects):
        where = item(objects_path, index)
        obj = mapping(raw, where)
        _observation(obj, where, options, collected)
        _attributes(obj, where, f"obj{index}_" if several else "", collected, metadata)
        track = _track_id(obj.get(track_key), join(where, track_key))
        if track:
            tracking.append(track)
    collected.check_caps(objects_path)

    stamp = frame.get("timestamp")
    if stamp is not None:
        values["timestamp"] = utc_timestamp(stamp, join(frame_path, "timestamp"))
    if tracking:
        # Per-frame format: every tracked object's id, in annotation order (rule R7).
        metadata["tracking_ids"] = context["tracking_ids"] = metadata_text(",".join(tracking))
    return ModelOutput(
        annotations=collected.annotations(),
        format=PredictionFormat.AXIS,
        image_width=options.image_width,
        image_height=options.image_height,
        values=values,
        metadata=metadata,
        context=context,
    )


def _track_id(value: Any, path: str) -> str | None:
    """A tracking id: a string (an integer is taken as its text); null or empty is untracked."""
    if value is None or type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    raise type_error("a string", value, path)


def _observation(obj: dict[str, Any], path: str, options: ConvertOptions, collected: Collected) -> None:
    """The object's box, scaled to pixels with the route's image size (R2)."""
    class_path = join(path, "class")
    raw_class = obj.get("class")
    # An object the tracker has not classified yet has no class: "unknown", as for every format.
    details = {} if raw_class is None else mapping(raw_class, class_path)
    label = class_name(details.get("type"), join(class_path, "type"))
    confidence = edge_confidence(details.get("score"), join(class_path, "score"), options)
    box_path = join(path, "bounding_box")
    raw_box = obj.get("bounding_box")
    if raw_box is None:
        raise ValidationError(Reason.INVALID_PREDICTIONS, "a bounding_box is required", box_path)
    box = mapping(raw_box, box_path)
    width, height = required_image_size(
        options.image_width, options.image_height, box_path, "set the route's image_size"
    )
    left = _unit(box.get("left"), join(box_path, "left")) * width
    top = _unit(box.get("top"), join(box_path, "top")) * height
    right = _unit(box.get("right"), join(box_path, "right")) * width
    bottom = _unit(box.get("bottom"), join(box_path, "bottom")) * height
    collected.detections.append(corner_box(label, left, top, right, bottom, confidence, box_path))


def _unit(value: Any, path: str) -> float:
    """A normalized coordinate in 0..1; the ONVIF stream's -1..1 (y up) must not be read as this."""
    out = number(value, path)
    if out < 0.0 or out > 1.0:
        raise ValidationError(Reason.INVALID_VALUE, f"{out} is outside 0..1", path)
    return out


def _attributes(
    obj: dict[str, Any], path: str, prefix: str, collected: Collected, metadata: dict[str, Any]
) -> None:
    """Colour lists of ``class`` become classifications (R4); other text becomes custom metadata."""
    details = obj.get("class")
    if not isinstance(details, dict):
        return
    class_path = join(path, "class")
    for key, raw in details.items():
        if key in _CLASS_KEYS:
            continue
        where = join(class_path, key)
        if isinstance(raw, list):
            for index, entry in enumerate(raw):
                entry_path = item(where, index)
                candidate = mapping(entry, entry_path)
                name = candidate.get("name")
                if not isinstance(name, str):
                    raise type_error("a string", name, join(entry_path, "name"))
                score = class_confidence(candidate.get("score"), join(entry_path, "score"))
                collected.classifications.append({"class": name, "confidence": score})
        elif isinstance(raw, str) and raw:
            metadata[prefix + key] = metadata_text(raw)
