"""NVIDIA DeepStream ``nvmsgconv`` full schema (payload-type 0) -> annotations (docs/formats.md).

One message is one object. Its class is a *key* of ``object`` (``vehicle``, ``person`` or, on the
FrameMeta path and in deepstream-test5, the detector's label), and its confidence lives inside that
sub-object when present at all.
"""

from __future__ import annotations

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
    number,
    stream_id,
    type_error,
    utc_timestamp,
)
from consumer.formats.deepstream_pose import POSE2D_IDS, POSE25D_IDS
from consumer.model import Annotation

# nvdsmeta.h UNTRACKED_OBJECT_ID: the object id when no tracker runs; not a tracking id.
UNTRACKED_ID: Final = "18446744073709551615"
# Keys of ``object`` that are not the class sub-object (eventmsg_payload.cpp, dsmeta_payload.cpp).
_NOT_CLASS: Final = frozenset(
    {
        "id",
        "speed",
        "direction",
        "orientation",
        "bbox",
        "location",
        "coordinate",
        "pose",
        "embedding",
        "signature",
        "maskoutline",
        "SV3DT",
    }
)
# Free text of typed sub-objects: custom metadata, not classifications (rule R4).
_TEXT_FIELDS: Final = {"license": "license", "licenseState": "license_state", "age": "age", "name": "name"}


def is_deepstream(value: dict[str, Any]) -> bool:
    """Whether ``value`` is a full-schema message (``messageid`` + ``mdsversion`` + ``object.bbox``)."""
    obj = value.get("object")
    return "messageid" in value and "mdsversion" in value and isinstance(obj, dict) and "bbox" in obj


def convert_deepstream(value: Any, path: str, options: ConvertOptions) -> ModelOutput:
    """Convert one full-schema message: a box, a mask or a pose, attributes, and the event fields."""
    message = mapping(value, path)
    obj_path = join(path, "object")
    obj = mapping(message.get("object"), obj_path)
    label, details = _class_of(obj, obj_path)
    collected = Collected()
    _add_annotation(obj, obj_path, label, details, collected, options=options)
    metadata = _add_attributes(details, collected.classifications)
    collected.check_caps(obj_path)
    values, context = _event_fields(message, path, obj, label, metadata)
    return ModelOutput(
        annotations=collected.annotations(),
        format=PredictionFormat.DEEPSTREAM,
        image_width=options.image_width,
        image_height=options.image_height,
        values=values,
        metadata=metadata,
        context=context,
    )


def _add_annotation(
    obj: dict[str, Any],
    obj_path: str,
    label: str,
    details: dict[str, Any],
    collected: Collected,
    *,
    options: ConvertOptions,
) -> None:
    """The object as keypoints (a pose), else a mask outline, else a plain box."""
    details_path = join(obj_path, label)
    confidence = edge_confidence(details.get("confidence"), join(details_path, "confidence"), options)
    box_path = join(obj_path, "bbox")
    bbox = mapping(obj.get("bbox"), box_path)
    left = number(bbox.get("topleftx"), join(box_path, "topleftx"))
    top = number(bbox.get("toplefty"), join(box_path, "toplefty"))
    right = number(bbox.get("bottomrightx"), join(box_path, "bottomrightx"))
    bottom = number(bbox.get("bottomrighty"), join(box_path, "bottomrighty"))
    box = corner_box(label, left, top, right, bottom, confidence, box_path)
    polygon = _largest_mask(obj.get("maskoutline"), left, top, join(obj_path, "maskoutline"))
    joints = _pose(obj.get("pose"), join(obj_path, "pose"))
    if joints:
        collected.keypoints.append({**box, "keypoints": joints})
    elif polygon:
        collected.segmentations.append({**box, "points": polygon})
    else:
        collected.detections.append(box)


def _add_attributes(details: dict[str, Any], classifications: list[Annotation]) -> dict[str, Any]:
    """Labels of the class sub-object as classifications; free text as metadata, returned (R4)."""
    metadata: dict[str, Any] = {}
    for key, raw in details.items():
        if key == "confidence":
            continue
        text = str(raw) if type(raw) in (int, float) and key in _TEXT_FIELDS else raw
        if not isinstance(text, str):
            continue  # numbers and nested objects are no labels (rule R4)
        if not text:
            continue  # a typed sub-object without extMsg: empty strings, nothing was classified
        if key in _TEXT_FIELDS:
            metadata[_TEXT_FIELDS[key]] = metadata_text(text)
        else:
            classifications.append({"class": text, "confidence": 0.0})
    return metadata


def _event_fields(
    message: dict[str, Any], path: str, obj: dict[str, Any], label: str, metadata: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Capture time, sensor id, message id, tracking id and event type (rule R7)."""
    values: dict[str, Any] = {}
    context: dict[str, Any] = {"label": label}
    stamp = message.get("@timestamp")
    if stamp is not None:
        values["timestamp"] = utc_timestamp(stamp, join(path, "@timestamp"))
    sensor = message.get("sensor")
    if isinstance(sensor, dict) and sensor.get("id") is not None:
        values["stream_id"] = stream_id(sensor["id"], join(path, "sensor.id"))
        context["sensor_id"] = values["stream_id"]
    messageid = message.get("messageid")
    if not isinstance(messageid, str) or not messageid:
        raise type_error("a non-empty string", messageid, join(path, "messageid"))
    # messageid is random per message and travels with it, so a redelivery keeps the same event id.
    values["external_id"] = messageid
    values["event_id"] = messageid
    tracking = obj.get("id")
    if isinstance(tracking, str | int) and not isinstance(tracking, bool) and str(tracking) != UNTRACKED_ID:
        metadata["tracking_id"] = str(tracking)
        context["tracking_id"] = str(tracking)
    event = message.get("event")
    if isinstance(event, dict) and isinstance(event.get("type"), str) and event["type"]:
        metadata["ds_event_type"] = metadata_text(event["type"])
        context["type"] = event["type"]
    video = message.get("videoPath")
    if isinstance(video, str) and video:
        metadata["video_path"] = metadata_text(video)
    return values, context


def _class_of(obj: dict[str, Any], path: str) -> tuple[str, dict[str, Any]]:
    """The class key of ``object`` and its sub-object; ``unknown`` with no details when there is none."""
    for key, details in obj.items():
        if key in _NOT_CLASS:
            continue
        if not isinstance(details, dict):
            raise type_error("an object", details, join(path, key))
        return key, details
    return UNKNOWN_CLASS, {}


def _largest_mask(value: Any, left: float, top: float, path: str) -> list[list[float]] | None:
    """The largest ``maskoutline`` polygon, in image pixels (the outline is box-relative, decision Q8)."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise type_error("an array", value, path)
    best: list[list[float]] | None = None
    best_area = -1.0
    for index, flat in enumerate(value):
        poly_path = item(path, index)
        if not isinstance(flat, list):
            raise type_error("an array", flat, poly_path)
        if len(flat) % 2:
            raise ValidationError(Reason.INVALID_PREDICTIONS, "an odd number of coordinates", poly_path)
        coords = [number(v, item(poly_path, i)) for i, v in enumerate(flat)]
        points = [[left + coords[i], top + coords[i + 1]] for i in range(0, len(coords), 2)]
        if len(points) < 3:
            continue  # a line or a point is no outline; the object is still sent as a box
        area = _area(points)
        if area > best_area:
            best, best_area = points, area
    return best


def _area(points: list[list[float]]) -> float:
    total = 0.0
    for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1], strict=True):
        total += x1 * y2 - x2 * y1
    return abs(total) / 2


def _pose(value: Any, path: str) -> list[dict[str, Any]]:
    """Joints of ``pose`` as wire keypoints; ids are the joint's index in NVIDIA's ``_joint_maps``.

    nvmsgconv writes ``z`` only for pose25D and pose3D, which share one 34-joint table; without
    ``z`` it is pose2D (18 joints). Read as image coordinates either way (decision Q6).
    """
    if value is None:
        return []
    pose = mapping(value, path)
    with_z = any(isinstance(joint, dict) and "z" in joint for joint in pose.values())
    ids, table = (POSE25D_IDS, "pose25D") if with_z else (POSE2D_IDS, "pose2D")
    joints: list[dict[str, Any]] = []
    for name, joint in pose.items():
        joint_path = join(path, name)
        point = mapping(joint, joint_path)
        if name not in ids:
            raise ValidationError(Reason.INVALID_PREDICTIONS, f"not a {table} joint name", joint_path)
        score = point.get("confidence")
        if score is not None and number(score, join(joint_path, "confidence")) <= 0:
            continue  # nvmsgconv leaves out undetected joints; a zero score means the same
        x = number(point.get("x"), join(joint_path, "x"))
        y = number(point.get("y"), join(joint_path, "y"))
        joints.append({"id": ids[name], "x": x, "y": y})
    return joints
