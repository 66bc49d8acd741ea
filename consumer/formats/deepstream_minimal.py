"""NVIDIA DeepStream ``nvmsgconv`` minimal schema (payload-type 1) -> annotations (docs/formats.md).

One message is one frame: ``objects`` holds one ``|``-separated string per object,
``trackingId|left|top|right|bottom|Type`` (absolute pixels, corners) then optional ``#`` sections
(secondary attributes, a pose), an optional confidence, and tails we do not use (``#|embedding|...``,
``#|SV3DT|...``). The grammar is read from ``eventmsg_payload.cpp`` ``generate_event_message_minimal``
and ``dsmeta_payload.cpp`` ``generate_dsmeta_message_minimal`` (NVIDIA/DeepStream).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

from consumer.errors import Reason, ValidationError
from consumer.formats.common import (
    UNKNOWN_CLASS,
    Collected,
    ConvertOptions,
    ModelOutput,
    PredictionFormat,
    corner_box,
    edge_confidence,
    item,
    join,
    mapping,
    metadata_text,
    stream_id,
    type_error,
    utc_timestamp,
)
from consumer.formats.deepstream_pose import POSE2D_IDS, POSE25D_IDS
from consumer.model import Annotation

# nvdsmeta.h UNTRACKED_OBJECT_ID: the object id when no tracker runs; not a tracking id.
UNTRACKED_ID: Final = "18446744073709551615"
# The schema version both minimal generators write; with ``sensorId`` it tells the format apart.
VERSION: Final = "4.0"
_FIELDS: Final = ("tracking id", "left", "top", "right", "bottom", "type")
# Positional secondary attributes of the typed objects (EventMsg path), in the order written.
_POSITIONAL: Final[dict[str, tuple[str, ...]]] = {
    "Vehicle": ("type", "make", "model", "color", "license", "region"),
    "Person": ("gender", "age", "hair", "cap", "apparel"),
    "Face": ("gender", "age", "hair", "cap", "glasses", "facialhair", "name", "", "eyecolor"),
    "Product": ("brand", "type", "shape"),
}
# Free text among them: custom metadata, not classifications (rule R4); names as in the full schema.
_TEXT_FIELDS: Final = {"license": "license", "region": "license_state", "age": "age", "name": "name"}
# Pose sections: joint table and the number of comma-separated parts of one joint token.
_POSES: Final = {"pose2D": (POSE2D_IDS, 4), "pose25D": (POSE25D_IDS, 5)}
# pose3D joints are world coordinates (mm), not image pixels: never keypoints of the image.
_WORLD_POSE: Final = "pose3D"
# Tails after the confidence that carry nothing for an event.
_TAILS: Final = frozenset({"embedding", "SV3DT"})
# The token that opens a section (attributes, pose) and separates mask polygons.
_SECTION: Final = "#"


def is_deepstream_minimal(value: dict[str, Any]) -> bool:
    """Whether ``value`` is a minimal-schema frame (``version`` 4.0, ``sensorId``, string ``objects``)."""
    if value.get("version") != VERSION or "sensorId" not in value:
        return False
    objects = value.get("objects")
    return isinstance(objects, list) and (not objects or isinstance(objects[0], str))


@dataclass(slots=True)
class _Object:
    """One parsed object string, before it becomes an annotation."""

    tracking_id: str
    label: str
    corners: tuple[float, float, float, float]
    confidence: float | None
    attributes: list[str] = field(default_factory=list)
    joints: list[dict[str, Any]] = field(default_factory=list)


def convert_deepstream_minimal(value: Any, path: str, options: ConvertOptions) -> ModelOutput:
    """Convert one minimal-schema frame: boxes, masks or poses, attributes, and the event fields."""
    message = mapping(value, path)
    objects_path = join(path, "objects")
    objects = message.get("objects")
    if not isinstance(objects, list):
        if objects is None:
            raise ValidationError(Reason.MISSING_FIELD, "an array of strings is required", objects_path)
        raise type_error("an array", objects, objects_path)
    masks = _masks(message.get("masks"), join(path, "masks"))

    collected = Collected()
    metadata: dict[str, Any] = {}
    tracking_ids: list[str] = []
    for index, text in enumerate(objects):
        object_path = item(objects_path, index)
        if not isinstance(text, str):
            raise type_error("a string", text, object_path)
        if not text:
            continue  # the dummy object of a frame with no events (rule R9): nothing to convert
        obj = _parse_object(text, object_path)
        _add_object(obj, index, masks, options, object_path, collected, metadata)
        if obj.tracking_id and obj.tracking_id != UNTRACKED_ID:
            tracking_ids.append(obj.tracking_id)
    _check_masks_used(masks, join(path, "masks"))
    collected.check_caps(objects_path)
    values, context = _event_fields(message, path, metadata, tracking_ids)
    return ModelOutput(
        annotations=collected.annotations(),
        format=PredictionFormat.DEEPSTREAM_MINIMAL,
        image_width=options.image_width,
        image_height=options.image_height,
        values=values,
        metadata=metadata,
        context=context,
    )


def _add_object(  # noqa: PLR0917 - one object's pieces go to the shared lists of its frame
    obj: _Object,
    index: int,
    masks: dict[str, list[list[float]]],
    options: ConvertOptions,
    path: str,
    collected: Collected,
    metadata: dict[str, Any],
) -> None:
    """Add the object's annotation (keypoints, else mask, else box) and its attributes."""
    left, top, right, bottom = obj.corners
    confidence = edge_confidence(obj.confidence, path, options)
    box = corner_box(obj.label, left, top, right, bottom, confidence, path)
    outlines = masks.get(obj.tracking_id)
    polygon = _outline(outlines.pop(0), left, top) if outlines else None
    if obj.joints:
        collected.keypoints.append({**box, "keypoints": obj.joints})
    elif polygon:
        collected.segmentations.append({**box, "points": polygon})
    else:
        collected.detections.append(box)
    _add_attributes(obj, index, collected.classifications, metadata)


def _add_attributes(
    obj: _Object, index: int, classifications: list[Annotation], metadata: dict[str, Any]
) -> None:
    """Secondary results: labels are classifications, free text is ``obj<i>_<field>`` metadata (R4)."""
    names = _POSITIONAL.get(obj.label)
    if names is not None and len(names) != len(obj.attributes):
        names = None  # not the typed layout (e.g. a FrameMeta label "Person"): unnamed classifier labels (Q9)
    for position, label in enumerate(obj.attributes):
        if not label:
            continue  # an empty slot: that attribute was not classified
        text_key = _TEXT_FIELDS.get(names[position]) if names is not None else None
        if text_key is not None:
            # Per-frame messages: the object index keeps keys apart and stable whatever the count.
            metadata[f"obj{index}_{text_key}"] = metadata_text(label)
        else:
            classifications.append({"class": label, "confidence": 0.0})


def _event_fields(
    message: dict[str, Any], path: str, metadata: dict[str, Any], tracking_ids: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Capture time, stream id, frame number and tracking ids (rule R7); no per-message unique id."""
    values: dict[str, Any] = {}
    context: dict[str, Any] = {}
    stamp = message.get("@timestamp")
    if stamp is not None:
        values["timestamp"] = utc_timestamp(stamp, join(path, "@timestamp"))
    sensor = message.get("sensorId")
    if sensor is not None:
        values["stream_id"] = stream_id(sensor, join(path, "sensorId"))
        context["sensor_id"] = values["stream_id"]
    frame = message.get("id")
    if isinstance(frame, str | int) and not isinstance(frame, bool):
        # Only the frame number: it repeats across restarts and sensors, so it is no external id.
        metadata["frame_id"] = metadata_text(str(frame))
        context["frame_id"] = str(frame)
    if tracking_ids:
        joined = ",".join(tracking_ids)
        metadata["tracking_ids"] = metadata_text(joined)
        context["tracking_ids"] = joined
    return values, context


# -- the object string --------------------------------------------------------------------------------


def _parse_object(text: str, path: str) -> _Object:
    """Parse ``id|left|top|right|bottom|Type[|#|attrs...][|#|poseXX|joints...|][|conf][tails]``."""
    tokens = _without_tails(text.split("|"))
    if len(tokens) < len(_FIELDS):
        raise ValidationError(
            Reason.INVALID_PREDICTIONS,
            f"{len(tokens)} '|'-separated fields; an object is id|left|top|right|bottom|type[|...]",
            path,
        )
    corners = (
        _number(tokens[1], "left", path),
        _number(tokens[2], "top", path),
        _number(tokens[3], "right", path),
        _number(tokens[4], "bottom", path),
    )
    rest = tokens[len(_FIELDS) :]
    confidence = _confidence(rest, path)
    if confidence is not None:
        rest = rest[:-1]
    obj = _Object(tokens[0], tokens[5] or UNKNOWN_CLASS, corners, confidence)
    for number, section in enumerate(_sections(rest, path)):
        if section and section[0] in _POSES:
            obj.joints = _joints(section, path)
        elif section and section[0] == _WORLD_POSE:
            continue  # world millimetres: no place on the image
        elif number == 0:
            obj.attributes = section
        else:
            raise ValidationError(
                Reason.INVALID_PREDICTIONS, f"unexpected '#' section starting {section[:1]!r}", path
            )
    return obj


def _without_tails(tokens: list[str]) -> list[str]:
    """Cut ``#|embedding|...`` and ``#|SV3DT|...``; the SV3DT marker may be glued to the confidence."""
    for index in range(1, len(tokens)):
        if tokens[index] in _TAILS and tokens[index - 1].endswith("#"):
            head = tokens[index - 1][:-1]
            # "...|#|embedding" leaves nothing of the marker token; "...|0.87#|SV3DT" leaves "0.87".
            return tokens[: index - 1] + ([head] if head else [])
    return tokens


def _confidence(rest: list[str], path: str) -> float | None:
    """The trailing confidence token when there is one (versions and paths differ on writing it)."""
    if not rest:
        return None
    last = rest[-1]
    if not last or last == _SECTION or "," in last:
        return None
    try:
        float(last)
    except ValueError:
        return None  # a label: this object was written without a confidence
    return _number(last, "confidence", path)  # a number it is, so NaN or "1_0" refuse the message


def _sections(rest: list[str], path: str) -> list[list[str]]:
    """Split what follows the type into its ``#``-introduced sections."""
    if not rest:
        return []
    if rest[0] != _SECTION:
        raise ValidationError(
            Reason.INVALID_PREDICTIONS,
            f"expected '#' or a confidence after the type, got {rest[0][:40]!r}",
            path,
        )
    sections: list[list[str]] = []
    for token in rest:
        if token == _SECTION:
            sections.append([])
        else:
            sections[-1].append(token)
    return sections


def _joints(section: list[str], path: str) -> list[dict[str, Any]]:
    """``poseXX|name,x,y[,z],conf|...`` as wire keypoints; ids index the joint table (Q6)."""
    ids, parts = _POSES[section[0]]
    joints: list[dict[str, Any]] = []
    for token in section[1:]:
        if not token:
            continue  # each joint is followed by '|', so the section ends with an empty token
        values = token.split(",")
        name = values[0]
        if len(values) != parts:
            raise ValidationError(
                Reason.INVALID_PREDICTIONS,
                f"{section[0]} joint {name[:40]!r} has {len(values)} parts, expected {parts}",
                path,
            )
        if name not in ids:
            raise ValidationError(
                Reason.INVALID_PREDICTIONS, f"not a {section[0]} joint: {name[:40]!r}", path
            )
        if _number(values[-1], f"{name} confidence", path) <= 0:
            continue  # the minimal schema writes undetected joints too, with a zero score
        x = _number(values[1], f"{name} x", path)
        y = _number(values[2], f"{name} y", path)
        joints.append({"id": ids[name], "x": x, "y": y})
    return joints


def _number(token: str, what: str, path: str) -> float:
    """A finite decimal number written by a C++ stream; anything else refuses the message."""
    # "1_0" and padded text are Python-only spellings a C++ stream never writes.
    value = None if "_" in token or token != token.strip() else _float_or_none(token)
    if value is None:
        raise ValidationError(Reason.INVALID_PREDICTIONS, f"{what}: {token[:40]!r} is not a number", path)
    if not math.isfinite(value):
        raise ValidationError(Reason.INVALID_PREDICTIONS, f"{what}: {token!r} is not a finite number", path)
    return value


def _float_or_none(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


# -- masks --------------------------------------------------------------------------------------------


def _masks(value: Any, path: str) -> dict[str, list[list[float]]]:
    """``masks`` by tracking id, in order: each mask's largest polygon, flat and box-relative."""
    if value is None:
        return {}
    if not isinstance(value, list):
        raise type_error("an array", value, path)
    by_id: dict[str, list[list[float]]] = {}
    for index, text in enumerate(value):
        mask_path = item(path, index)
        if not isinstance(text, str):
            raise type_error("a string", text, mask_path)
        tracking, outline = _mask(text, mask_path)
        by_id.setdefault(tracking, []).append(outline)
    return by_id


def _mask(text: str, path: str) -> tuple[str, list[float]]:
    """Parse ``trackingId|nPolygons|x|y|...|#|x|y|...``; return the id and its largest polygon (flat)."""
    tokens = text.split("|")
    if len(tokens) < 2:
        raise ValidationError(Reason.INVALID_PREDICTIONS, "a mask is trackingId|nPolygons|x|y|...", path)
    count = _number(tokens[1], "polygon count", path)
    polygons: list[list[float]] = [[]]
    for token in tokens[2:]:
        if token == _SECTION:
            polygons.append([])
        else:
            polygons[-1].append(_number(token, "mask coordinate", path))
    if not tokens[2:]:
        polygons = []
    if count != len(polygons):
        raise ValidationError(
            Reason.INVALID_PREDICTIONS, f"{len(polygons)} polygons where the mask says {tokens[1]!r}", path
        )
    best: list[float] = []
    best_area = -1.0
    for flat in polygons:
        if len(flat) % 2:
            raise ValidationError(Reason.INVALID_PREDICTIONS, "an odd number of mask coordinates", path)
        if len(flat) < 6:
            continue  # a line or a point is no outline; the object is still sent as a box
        area = _area(flat)
        if area > best_area:
            best, best_area = flat, area
    return tokens[0], best


def _outline(flat: list[float], left: float, top: float) -> list[list[float]] | None:
    """The object's mask outline in image pixels (box-relative in NVIDIA's producer, decision Q8)."""
    if not flat:
        return None
    return [[left + flat[i], top + flat[i + 1]] for i in range(0, len(flat), 2)]


def _area(flat: list[float]) -> float:
    xs, ys = flat[0::2], flat[1::2]
    total = 0.0
    for i in range(len(xs)):
        j = (i + 1) % len(xs)
        total += xs[i] * ys[j] - xs[j] * ys[i]
    return abs(total) / 2


def _check_masks_used(masks: dict[str, list[list[float]]], path: str) -> None:
    """A mask whose tracking id names no object of the frame cannot be placed: refuse, never drop."""
    for tracking, left in masks.items():
        if left:
            raise ValidationError(
                Reason.INVALID_PREDICTIONS,
                f"a mask for tracking id {tracking[:40]!r} matches no object",
                path,
            )
