"""What every model-output converter shares: the result type, value checks, field paths, the caps.

Converters run once per message on the hot path, so the checks here are plain ``type(...) is``
comparisons and the field path of an error is only built when an error is raised.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from consumer.contract import MAX_ANNOTATIONS_PER_LIST, MAX_CUSTOM_METADATA_STRING_CHARS, MAX_STREAM_ID_CHARS
from consumer.errors import Reason, ValidationError
from consumer.model import Annotation, Annotations

UNKNOWN_CLASS: Final = "unknown"
# Keypoint ids become JSON integers on the wire; keep them in a range every JSON encoder handles.
MAX_KEYPOINT_ID: Final = 2**31 - 1
# Image sizes beyond this are not images.
MAX_IMAGE_SIDE: Final = 2**31 - 1

_isfinite = math.isfinite


class PredictionFormat(StrEnum):
    """The model-output shapes the consumer understands (see docs/formats.md)."""

    AUTO = "auto"
    ROBOFLOW = "roboflow"
    WORKFLOW = "workflow"
    ULTRALYTICS = "ultralytics"
    DEEPSTREAM = "deepstream"
    FRIGATE = "frigate"
    AXIS = "axis"
    DEEPSTREAM_MINIMAL = "deepstream_minimal"
    DLSTREAMER = "dlstreamer"


@dataclass(slots=True)
class ModelOutput:
    """Annotations converted from one model output, with what else the output told us.

    ``format`` is the shape that was read (never ``AUTO``). ``visualization_base64`` is a Roboflow
    response's ``visualization`` image, for use as the event's output image. ``image_width`` /
    ``image_height`` are the inferred image's size when the output states it.
    """

    annotations: Annotations
    format: PredictionFormat
    visualization_base64: str | None = None
    image_width: int | None = None
    image_height: int | None = None
    # Event fields the message itself states, under the names routes and the envelope use
    # (``timestamp``, ``stream_id``, ``device_id``, ``external_id``, ``event_id``, ``item_count``,
    # ``input_image``...). Edge-stack messages carry them; raw model outputs leave this empty.
    values: dict[str, Any] = field(default_factory=dict)
    # Custom metadata read from the message (tracking ids, sensor ids...), within the contract's limits.
    metadata: dict[str, Any] = field(default_factory=dict)
    # Names a route may use in templates and cooldown keys (``{tracking_id}``, ``{camera}``, ``{id}``...).
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    """What a route tells a converter that the message may not: the image size and a default confidence.

    ``image_width`` / ``image_height`` turn normalized coordinates into pixels when the message
    states no size of its own; ``default_confidence`` replaces a missing confidence (never a present one).
    ``topic`` is the message's topic, for formats that name things only there (Frigate count topics);
    ``frigate_snapshot`` picks the box of Frigate's event snapshot frame over the live one (decision Q4).
    """

    image_width: int | None = None
    image_height: int | None = None
    default_confidence: float | None = None
    topic: str | None = None
    frigate_snapshot: bool = False


DEFAULT_OPTIONS: Final = ConvertOptions()


@dataclass(slots=True)
class Collected:
    """The four annotation lists being filled by a converter."""

    detections: list[Annotation] = field(default_factory=list)
    segmentations: list[Annotation] = field(default_factory=list)
    keypoints: list[Annotation] = field(default_factory=list)
    classifications: list[Annotation] = field(default_factory=list)

    def check_caps(self, path: str) -> None:
        """Refuse lists longer than the contract allows; ``path`` names the input that overfilled them."""
        if (
            len(self.detections) <= MAX_ANNOTATIONS_PER_LIST
            and len(self.segmentations) <= MAX_ANNOTATIONS_PER_LIST
            and len(self.keypoints) <= MAX_ANNOTATIONS_PER_LIST
            and len(self.classifications) <= MAX_ANNOTATIONS_PER_LIST
        ):
            return  # the usual case, decided without building the table below
        for key, items in (
            ("objectDetections", self.detections),
            ("instanceSegmentations", self.segmentations),
            ("keypoints", self.keypoints),
            ("classifications", self.classifications),
        ):
            if len(items) > MAX_ANNOTATIONS_PER_LIST:
                raise ValidationError(
                    Reason.TOO_MANY,
                    f"{len(items)} {key} annotations; at most {MAX_ANNOTATIONS_PER_LIST} per list",
                    path,
                )

    def annotations(self) -> Annotations:
        """Return the wire ``Annotations``: only the non-empty lists."""
        out: Annotations = {}
        if self.detections:
            out["objectDetections"] = self.detections
        if self.classifications:
            out["classifications"] = self.classifications
        if self.segmentations:
            out["instanceSegmentations"] = self.segmentations
        if self.keypoints:
            out["keypoints"] = self.keypoints
        return out


# -- paths ------------------------------------------------------------------------------------------


def join(path: str, key: str) -> str:
    """Return ``path.key``, or ``key`` at the top level."""
    return f"{path}.{key}" if path else key


def item(path: str, index: int) -> str:
    """Return ``path[index]``."""
    return f"{path}[{index}]"


_JSON_TYPES: Final = {
    type(None): "null",
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def json_type(value: Any) -> str:
    """Name ``value``'s JSON type, for error messages."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def type_error(expected: str, value: Any, path: str) -> ValidationError:
    """Build the error for a ``value`` that is not of the ``expected`` JSON type."""
    return ValidationError(Reason.INVALID_TYPE, f"expected {expected}, got {json_type(value)}", path)


# -- numbers ----------------------------------------------------------------------------------------


def as_float(value: Any) -> float | None:
    """Return ``value`` as a finite float, or None when it is no finite JSON number (booleans are not)."""
    if isinstance(value, float):
        return value if _isfinite(value) else None
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return None
    return None


def number_error(value: Any, path: str) -> ValidationError:
    """Explain why ``as_float(value)`` gave None, as a typed error at ``path``."""
    kind = type(value)
    if value is None:
        return ValidationError(Reason.MISSING_FIELD, "a number is required", path)
    if kind is float:
        return ValidationError(Reason.NON_FINITE_NUMBER, f"{value} is not a finite number", path)
    if kind is int:
        return ValidationError(Reason.INVALID_VALUE, "number out of range", path)
    return type_error("a number", value, path)


def finite(value: float, path: str) -> float:
    """Return ``value`` if arithmetic on valid inputs kept it finite (huge inputs can overflow)."""
    if _isfinite(value):
        return value
    raise ValidationError(Reason.INVALID_VALUE, "coordinates out of range", path)


def detection_confidence(value: Any, path: str) -> float:
    """Read a detection confidence: null or missing is 0.0, else a number clamped to [0, 1]."""
    if value is None:
        return 0.0
    conf = as_float(value)
    if conf is None:
        raise number_error(value, path)
    if conf < 0.0:
        return 0.0
    if conf > 1.0:
        return 1.0
    return conf


def class_confidence(value: Any, path: str) -> float:
    """Read a classification confidence: null or missing is 0.0, else a finite number (not clamped)."""
    if value is None:
        return 0.0
    conf = as_float(value)
    if conf is None:
        raise number_error(value, path)
    return conf


def keypoint_id(value: Any, path: str) -> int:
    """Read a keypoint's ``class_id`` as the wire ``id``: a non-negative integer (``3.0`` counts)."""
    kind = type(value)
    if kind is int:
        number: int = value
    elif kind is float and value.is_integer():
        number = int(value)
    else:
        raise type_error("an integer", value, path)
    if number < 0 or number > MAX_KEYPOINT_ID:
        raise ValidationError(Reason.INVALID_VALUE, f"keypoint id {number} out of range", path)
    return number


def image_side(value: Any, path: str) -> int | None:
    """Read an image width or height: null stays None, else a non-negative integer."""
    if value is None:
        return None
    kind = type(value)
    if kind is int:
        number: int = value
    elif kind is float and value.is_integer():
        number = int(value)
    else:
        raise type_error("an integer", value, path)
    if number < 0 or number > MAX_IMAGE_SIDE:
        raise ValidationError(Reason.INVALID_VALUE, f"image side {number} out of range", path)
    return number


# -- text -------------------------------------------------------------------------------------------


def class_name(value: Any, path: str) -> str:
    """Read a class name: missing or null is ``unknown``; an integer (a nameless class id) becomes text."""
    if isinstance(value, str):
        return value
    if value is None:
        return UNKNOWN_CLASS
    if type(value) is int:
        return str(value)
    raise type_error("a string", value, path)


# -- edge-stack helpers -----------------------------------------------------------------------------


def required_image_size(width: int | None, height: int | None, path: str, where: str) -> tuple[int, int]:
    """The size normalized coordinates are scaled by; without one they are refused (decision Q5).

    ``where`` tells the user where the size may come from (the message, the route's image_size).
    """
    if not width or not height:
        raise ValidationError(
            Reason.INVALID_PREDICTIONS, f"normalized coordinates need the image size: {where}", path
        )
    return width, height


def corner_box(  # noqa: PLR0917 - the four corners read best positionally
    label: str, x1: float, y1: float, x2: float, y2: float, confidence: float, path: str
) -> Annotation:
    """Build a detection from two opposite corners (rule R1: the wire ``x``/``y`` is the box center)."""
    width = finite(abs(x2 - x1), path)
    height = finite(abs(y2 - y1), path)
    return {
        "class": label,
        "x": min(x1, x2) + width / 2,
        "y": min(y1, y2) + height / 2,
        "width": width,
        "height": height,
        "confidence": confidence,
    }


def edge_confidence(value: Any, path: str, options: ConvertOptions) -> float:
    """A detection confidence under R3, with the route's ``default_confidence`` for a missing one."""
    if value is None and options.default_confidence is not None:
        return options.default_confidence
    return detection_confidence(value, path)


def number(value: Any, path: str) -> float:
    """Read a required finite number at ``path``."""
    out = as_float(value)
    if out is None:
        raise number_error(value, path)
    return out


def mapping(value: Any, path: str) -> dict[str, Any]:
    """Read a required JSON object at ``path``."""
    if isinstance(value, dict):
        return value
    if value is None:
        raise ValidationError(Reason.MISSING_FIELD, "an object is required", path)
    raise type_error("an object", value, path)


def utc_timestamp(value: Any, path: str) -> str:
    """Read an ISO-8601 capture time with a zone and return it as ISO-8601 UTC text."""
    if not isinstance(value, str):
        raise type_error("an ISO-8601 string", value, path)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(Reason.INVALID_VALUE, "not an ISO-8601 time", path) from None
    if moment.tzinfo is None:
        raise ValidationError(Reason.INVALID_VALUE, "an ISO-8601 time without a zone", path)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def epoch_timestamp(value: Any, path: str) -> str:
    """Read epoch seconds (Frigate ``frame_time``) and return ISO-8601 UTC text."""
    seconds = number(value, path)
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValidationError(Reason.INVALID_VALUE, "epoch seconds out of range", path) from None
    return moment.isoformat().replace("+00:00", "Z")


def stream_id(value: Any, path: str) -> str:
    """Read a stream id: credentials removed from a URI (R8), cut with a stable hash when too long (Q12)."""
    if type(value) is int:
        value = str(value)
    if not isinstance(value, str):
        raise type_error("a string", value, path)
    text = _without_credentials(value)
    if len(text) <= MAX_STREAM_ID_CHARS:
        return text
    suffix = "#" + hashlib.sha256(text.encode()).hexdigest()[:12]
    return text[: MAX_STREAM_ID_CHARS - len(suffix)] + suffix


def _without_credentials(text: str) -> str:
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    authority, slash, tail = rest.partition("/")
    if "@" not in authority:
        return text
    return scheme + "://" + authority.rpartition("@")[2] + slash + tail


def metadata_text(value: str) -> str:
    """Cut a string to the contract's custom-metadata string limit."""
    return value[:MAX_CUSTOM_METADATA_STRING_CHARS]
