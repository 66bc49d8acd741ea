"""Intel DL Streamer ``gvametaconvert`` JSON and the Pipeline Server wrapper -> annotations (docs/formats.md).

One message is one frame: ``objects[]`` with a pixel box ``x, y, w, h`` (top-left + size) and/or a
normalized ``detection.bounding_box``, per-object classifier results keyed by attribute name, and
optional keypoint tensors. ``resolution`` is the frame size. The Pipeline Server's own MQTT publisher
wraps the same keys as ``{"metadata": {...}, "blob": "<base64 frame>"}``. Read from
``open-edge-platform/dlstreamer`` ``gvametaconvert/jsonconverter.cpp`` and the Pipeline Server's
``mqtt_publisher.py``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

from consumer.errors import Reason, ValidationError
from consumer.formats.common import (
    UNKNOWN_CLASS,
    Collected,
    ConvertOptions,
    ModelOutput,
    PredictionFormat,
    class_confidence,
    class_name,
    corner_box,
    edge_confidence,
    finite,
    image_side,
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
from consumer.model import Annotation

# Keys of an object that are not classifier results even when they hold an object.
_NOT_ATTRIBUTES: Final = frozenset({"detection", "tensors", "extra_params"})
# gvametaconvert without ``timestamp-utc``: local time as ``...SS.mmm:+HHMM`` (not ISO 8601).
_LOCAL_TIME: Final = re.compile(r"(.*\.\d+):([+-]\d\d)(\d\d)")
_NS_PER_SECOND: Final = 1_000_000_000
# Custom-metadata keys allow only these characters; tag names are user text.
_KEY_UNSAFE: Final = re.compile(r"[^a-zA-Z0-9_ -]")


def is_dlstreamer(value: dict[str, Any]) -> bool:
    """Whether ``value`` is a gvametaconvert frame, a multi-stream batch, or the Pipeline Server wrapper."""
    metadata = value.get("metadata")
    if isinstance(metadata, dict) and "blob" in value:
        return _is_frame(metadata)
    return _is_frame(value)


def _is_frame(value: dict[str, Any]) -> bool:
    objects = value.get("objects")
    if isinstance(objects, list) and objects:
        first = objects[0]
        return isinstance(first, dict) and ("detection" in first or ("x" in first and "w" in first))
    resolution = value.get("resolution")
    if isinstance(resolution, dict) and "width" in resolution and "height" in resolution:
        return isinstance(objects, list)  # a frame without detections (add-empty-results=true)
    streams = value.get("streams")
    return (
        isinstance(streams, list)
        and bool(streams)
        and isinstance(streams[0], dict)
        and "objects" in streams[0]
    )


def convert_dlstreamer(value: Any, path: str, options: ConvertOptions) -> ModelOutput:
    """Convert one frame: boxes, keypoints, classifications, and the event fields."""
    message = mapping(value, path)
    wrapped = isinstance(message.get("metadata"), dict) and "blob" in message
    frame_path = join(path, "metadata") if wrapped else path
    frame = message["metadata"] if wrapped else message
    if "streams" in frame:
        raise ValidationError(
            Reason.INVALID_PREDICTIONS,
            "a multi-stream batch holds several images and one message becomes one event: "
            "publish each stream on its own (gvametaconvert without a batch)",
            join(frame_path, "streams"),
        )
    width, height = _image_size(frame, frame_path, options, wrapped=wrapped)
    collected = Collected()
    tracking_ids: list[str] = []
    objects_path = join(frame_path, "objects")
    objects = frame.get("objects")
    if objects is not None and not isinstance(objects, list):
        raise type_error("an array", objects, objects_path)
    for index, obj in enumerate(objects or ()):
        object_path = item(objects_path, index)
        tracking = _add_object(mapping(obj, object_path), object_path, (width, height), options, collected)
        if tracking is not None:
            tracking_ids.append(tracking)
    collected.check_caps(objects_path)
    values, metadata, context = _frame_fields(frame, frame_path, tracking_ids)
    if wrapped:
        _wrapper_fields(message, frame, path, values=values, metadata=metadata, context=context)
    return ModelOutput(
        annotations=collected.annotations(),
        format=PredictionFormat.DLSTREAMER,
        image_width=width,
        image_height=height,
        values=values,
        metadata=metadata,
        context=context,
    )


def _image_size(
    frame: dict[str, Any], path: str, options: ConvertOptions, *, wrapped: bool
) -> tuple[int | None, int | None]:
    """The frame size: ``resolution``, else the wrapper's ``width``/``height``, else the route's (R2)."""
    resolution = frame.get("resolution")
    if resolution is not None:
        size_path = join(path, "resolution")
        size = mapping(resolution, size_path)
        return (
            image_side(size.get("width"), join(size_path, "width")),
            image_side(size.get("height"), join(size_path, "height")),
        )
    if wrapped and frame.get("width") is not None:
        return image_side(frame.get("width"), join(path, "width")), image_side(
            frame.get("height"), join(path, "height")
        )
    return options.image_width, options.image_height


def _add_object(
    obj: dict[str, Any],
    path: str,
    size: tuple[int | None, int | None],
    options: ConvertOptions,
    collected: Collected,
) -> str | None:
    """Add one ``objects[]`` entry; return its tracking id (gvatrack's ``id``) if it has one."""
    if "detection" not in obj and "roi_type" not in obj:
        # The full-frame entry: frame-level classifier results only (rule R5), no box of its own.
        _add_attributes(obj, path, collected.classifications)
        return None
    detection = obj.get("detection")
    details = {} if detection is None else mapping(detection, join(path, "detection"))
    label = class_name(details.get("label", obj.get("roi_type")), join(path, "detection.label"))
    confidence = edge_confidence(details.get("confidence"), join(path, "detection.confidence"), options)
    left, top, box_width, box_height = _box(obj, details, path, size)
    box = corner_box(label or UNKNOWN_CLASS, left, top, left + box_width, top + box_height, confidence, path)
    joints = _keypoints(obj.get("tensors"), join(path, "tensors"), (left, top, box_width, box_height))
    if joints:
        collected.keypoints.append({**box, "keypoints": joints})
    else:
        collected.detections.append(box)
    _add_attributes(obj, path, collected.classifications)
    tracking = obj.get("id")
    if tracking is None:
        return None
    if type(tracking) is not int:
        raise type_error("an integer", tracking, join(path, "id"))
    return str(tracking)


def _box(
    obj: dict[str, Any], details: dict[str, Any], path: str, size: tuple[int | None, int | None]
) -> tuple[float, float, float, float]:
    """The box as pixels ``left, top, width, height``: ``x,y,w,h`` if given, else the normalized box (R2)."""
    if "x" in obj or "w" in obj:
        return (
            number(obj.get("x"), join(path, "x")),
            number(obj.get("y"), join(path, "y")),
            number(obj.get("w"), join(path, "w")),
            number(obj.get("h"), join(path, "h")),
        )
    box_path = join(path, "detection.bounding_box")
    bounding = mapping(details.get("bounding_box"), box_path)
    width, height = required_image_size(
        *size, box_path, "resolution in the message or the route's image_size"
    )
    x_min = number(bounding.get("x_min"), join(box_path, "x_min")) * width
    y_min = number(bounding.get("y_min"), join(box_path, "y_min")) * height
    x_max = number(bounding.get("x_max"), join(box_path, "x_max")) * width
    y_max = number(bounding.get("y_max"), join(box_path, "y_max")) * height
    return min(x_min, x_max), min(y_min, y_max), abs(x_max - x_min), abs(y_max - y_min)


def _add_attributes(obj: dict[str, Any], path: str, classifications: list[Annotation]) -> None:
    """Classifier results ``<attribute>: {label, confidence?, ...}`` as classifications (R4, R5)."""
    for key, result in obj.items():
        if key in _NOT_ATTRIBUTES or not isinstance(result, dict):
            continue
        if "label" not in result and "label_id" not in result:
            continue  # not a classifier result (gvaanalytics and other keys)
        where = join(path, key)
        raw = result.get("label")
        label = class_name(result.get("label_id") if raw is None else raw, join(where, "label"))
        confidence = class_confidence(result.get("confidence"), join(where, "confidence"))
        classifications.append({"class": label, "confidence": confidence})


def _keypoints(tensors: Any, path: str, box: tuple[float, float, float, float]) -> list[dict[str, Any]]:
    """A keypoints tensor's points in pixels: ``data`` is normalized to the object's box."""
    if tensors is None:
        return []
    if not isinstance(tensors, list):
        raise type_error("an array", tensors, path)
    for index, tensor in enumerate(tensors):
        where = item(path, index)
        details = mapping(tensor, where)
        if details.get("type") == "keypoints" or details.get("format") == "keypoints":
            return _points(details, where, box)
    return []


def _points(
    tensor: dict[str, Any], path: str, box: tuple[float, float, float, float]
) -> list[dict[str, Any]]:
    left, top, width, height = box
    dims = tensor.get("dims")
    data = tensor.get("data")
    if not isinstance(dims, list) or len(dims) != 2 or dims[1] not in (2, 3) or type(dims[0]) is not int:
        raise ValidationError(
            Reason.INVALID_PREDICTIONS, "keypoint dims must be [N, 2] or [N, 3]", join(path, "dims")
        )
    if not isinstance(data, list):
        raise type_error("an array", data, join(path, "data"))
    count, stride = dims
    if len(data) != count * stride:
        raise ValidationError(
            Reason.INVALID_PREDICTIONS,
            f"{len(data)} values where dims say {count}x{stride}",
            join(path, "data"),
        )
    points: list[dict[str, Any]] = []
    for k in range(count):
        x = number(data[k * stride], item(join(path, "data"), k * stride))
        y = number(data[k * stride + 1], item(join(path, "data"), k * stride + 1))
        points.append({"id": k, "x": finite(left + x * width, path), "y": finite(top + y * height, path)})
    return points


# -- event fields -------------------------------------------------------------------------------------


def _frame_fields(
    frame: dict[str, Any], path: str, tracking_ids: list[str]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Capture time, stream id, stream time, tags and tracking ids (rule R7)."""
    values: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    context: dict[str, Any] = {}
    captured = _capture_time(frame, path)
    if captured is not None:
        values["timestamp"] = captured
    source = frame.get("source")
    if source is not None:
        values["stream_id"] = stream_id(source, join(path, "source"))
        context["source"] = values["stream_id"]
    stream_time = frame.get("timestamp")
    if stream_time is not None:
        # Nanoseconds since the stream started, not a wall clock: context only, never the event time.
        if type(stream_time) is not int:
            raise type_error("an integer (nanoseconds)", stream_time, join(path, "timestamp"))
        metadata["stream_time_ns"] = stream_time
    tags = frame.get("tags")
    if isinstance(tags, dict):
        for key, tag in tags.items():
            if isinstance(tag, str):
                metadata[_tag_key(key)] = metadata_text(tag)
            elif type(tag) in (int, float, bool):
                metadata[_tag_key(key)] = tag
    if tracking_ids:
        joined = ",".join(tracking_ids)
        metadata["tracking_ids"] = metadata_text(joined)
        context["tracking_ids"] = joined
    return values, metadata, context


def _tag_key(key: str) -> str:
    return "tag_" + _KEY_UNSAFE.sub("_", key)[:96]


def _capture_time(frame: dict[str, Any], path: str) -> str | None:
    """``system_timestamp`` (both of its forms), else the camera's RTP NTP time; never ``timestamp``."""
    stamp = frame.get("system_timestamp")
    if stamp is not None:
        where = join(path, "system_timestamp")
        if isinstance(stamp, str):
            local = _LOCAL_TIME.fullmatch(stamp)
            if local is not None:
                stamp = f"{local[1]}{local[2]}:{local[3]}"
        return utc_timestamp(stamp, where)
    rtp = frame.get("rtp")
    if isinstance(rtp, dict) and rtp.get("sender_ntp_unix_timestamp_ns") is not None:
        return _nanoseconds(
            rtp["sender_ntp_unix_timestamp_ns"], join(path, "rtp.sender_ntp_unix_timestamp_ns")
        )
    return None


def _nanoseconds(value: Any, path: str) -> str:
    """Unix nanoseconds as ISO-8601 UTC text."""
    if type(value) is not int:
        raise type_error("an integer (nanoseconds)", value, path)
    try:
        moment = datetime.fromtimestamp(value // _NS_PER_SECOND, UTC).replace(
            microsecond=value % _NS_PER_SECOND // 1000
        )
    except (OverflowError, OSError, ValueError):
        raise ValidationError(Reason.INVALID_VALUE, "nanoseconds out of range", path) from None
    return moment.isoformat().replace("+00:00", "Z")


def _wrapper_fields(
    message: dict[str, Any],
    frame: dict[str, Any],
    path: str,
    *,
    values: dict[str, Any],
    metadata: dict[str, Any],
    context: dict[str, Any],
) -> None:
    """The Pipeline Server wrapper: the frame as input image, its handle, pipeline and publish time."""
    meta_path = join(path, "metadata")
    blob = message.get("blob")
    if blob is not None and not isinstance(blob, str):
        raise type_error("a base64 string", blob, join(path, "blob"))
    if blob:
        values["input_image"] = {"base64": blob}
    handle = frame.get("img_handle")
    if isinstance(handle, str) and handle:
        values["external_id"] = handle
        context["img_handle"] = handle
    if "timestamp" not in values and frame.get("time") is not None:
        # Publish time, not capture time; still closer to the frame than our receive time.
        values["timestamp"] = _nanoseconds(frame["time"], join(meta_path, "time"))
    pipeline = frame.get("pipeline")
    if isinstance(pipeline, dict):
        for key in ("name", "version", "instance_id"):
            text = pipeline.get(key)
            if isinstance(text, str) and text:
                metadata[f"pipeline_{key}"] = metadata_text(text)
    frame_id = frame.get("frame_id")
    if type(frame_id) is int:
        metadata["frame_id"] = frame_id
        context["frame_id"] = frame_id
