"""Strict validators for the bodies the fake API receives (contract §2-§4).

Pure functions: they read a decoded JSON value and raise :class:`ContractError` at the first violation,
naming the field path (``images[0].objectDetections[2].confidence``). Where the contract says NOT
FOUND, the rule here is the strict reading: reject what the real API may reject, so that a body
the fake accepts is one the real API would accept. Each such rule says so in a comment.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

import orjson

from consumer.contract import (
    ALERT_TYPE_PATTERN,
    ANNOTATION_KEYS,
    CUSTOM_METADATA_KEY_PATTERN,
    FEEDBACK_VALUES,
    MAX_ALERT_TYPE_CHARS,
    MAX_ANNOTATIONS_PER_LIST,
    MAX_BATCH_EVENTS,
    MAX_CUSTOM_METADATA_KEY_CHARS,
    MAX_CUSTOM_METADATA_KEYS,
    MAX_CUSTOM_METADATA_STRING_CHARS,
    MAX_CUSTOM_VALUE_CHARS,
    MAX_DESCRIPTION_CHARS,
    MAX_DEVICE_ID_CHARS,
    MAX_EXTERNAL_ID_CHARS,
    MAX_ITEM_TYPE_CHARS,
    MAX_LOCATION_CHARS,
    MAX_RELATED_EVENT_ID_CHARS,
    MAX_STREAM_ID_CHARS,
    MAX_USE_CASE_CHARS,
    MAX_WORKFLOW_ID_CHARS,
    QC_RESULTS,
    SEVERITIES,
    TIMESTAMP_MAX_AGE_SECONDS,
    TIMESTAMP_MAX_AHEAD_SECONDS,
    EventType,
    sniff_image_format,
)

# "eventId ... max 256" (brief); the docs ask for a UUIDv4 and the consumer sends UUIDv5, so any
# RFC 4122 UUID (versions 1-5, variant 10xx) in canonical hyphenated form is accepted.
MAX_EVENT_ID_CHARS: Final = 256
UUID_PATTERN: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-5][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}"
)
# Max images per event: NOT FOUND. Every client in the contract sends 0 or 1 entry (§3.3), so
# more than one may be invalid: refuse it.
MAX_IMAGES_PER_EVENT: Final = 1
# Image-entry field limits: NOT FOUND (§7). 256 is the cap the contract uses for every other id.
MAX_SOURCE_ID_CHARS: Final = 256
MAX_LABEL_CHARS: Final = 256
MAX_CLASS_CHARS: Final = 256
# Local v2 limits quoted from the rendered OpenAPI (§2.2).
MAX_WORKFLOW_VERSION_CHARS: Final = 64
# image_id: nullable, type and length NOT FOUND; a string of at most 256 chars is the strict guess.
MAX_IMAGE_ID_CHARS: Final = 256
# Upload ``name`` part and use-case names: limits NOT FOUND; 256 as for other names.
MAX_UPLOAD_NAME_CHARS: Final = 256
MAX_USE_CASE_NAME_CHARS: Final = 256
# The timestamp form the blocks send (``datetime.isoformat()``), RFC 3339 style. Basic-format
# ISO 8601 (no separators), a space instead of ``T`` or lowercase ``z`` may be refused by the
# real parser (NOT FOUND), so they are refused here.
TIMESTAMP_PATTERN: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})"
)


class ContractError(ValueError):
    """A body breaks the contract; ``str()`` is ``"<path>: <what>"``, the API's error text."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(f"{path}: {what}")
        self.path = path
        self.what = what


class BatchContractError(ContractError):
    """One event of a batch breaks the contract; ``index`` is its position in ``events``."""

    def __init__(self, index: int, path: str, what: str) -> None:
        super().__init__(path, what)
        self.index = index


class References(Protocol):
    """What a cloud event may point at: use cases and uploaded images the server knows."""

    def is_active_use_case(self, use_case_id: str) -> bool:
        """Whether ``use_case_id`` names an existing, active use case."""
        ...

    def is_uploaded(self, source_id: str) -> bool:
        """Whether ``source_id`` was returned by an earlier upload."""
        ...


@dataclass(frozen=True, slots=True)
class StaticReferences:
    """A fixed set of known use case ids and source ids (for tests and offline checks)."""

    use_case_ids: frozenset[str] = field(default_factory=frozenset)
    source_ids: frozenset[str] = field(default_factory=frozenset)

    def is_active_use_case(self, use_case_id: str) -> bool:
        """Whether ``use_case_id`` is one of ``use_case_ids``."""
        return use_case_id in self.use_case_ids

    def is_uploaded(self, source_id: str) -> bool:
        """Whether ``source_id`` is one of ``source_ids``."""
        return source_id in self.source_ids


# --- primitives -------------------------------------------------------------------------------


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ContractError(path, "must be a JSON object")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ContractError(path, "must be a JSON array")
    return value


def _keys(obj: Mapping[str, Any], allowed: frozenset[str], required: frozenset[str], path: str) -> None:
    """Reject unknown keys (extra=forbid) first, then missing required ones, in a fixed order."""
    keys = obj.keys()
    if keys <= allowed and required <= keys:
        return  # the common case, decided by two set comparisons
    for key in obj:
        if key not in allowed:
            raise ContractError(_join(path, key), "unknown field (extra fields are forbidden)")
    for key in sorted(required):
        if key not in obj:
            raise ContractError(_join(path, key), "field required")


def _string(value: Any, path: str, max_chars: int | None) -> str:
    # Empty strings: NOT FOUND for every field; an empty id or name may be refused, so it is.
    if not isinstance(value, str):
        raise ContractError(path, "must be a string")
    if not value:
        raise ContractError(path, "must not be empty")
    if max_chars is not None and len(value) > max_chars:
        raise ContractError(path, f"must be at most {max_chars} characters")
    return value


def _number(value: Any, path: str) -> float:
    # bool is an int in Python but not a number in JSON Schema: refuse it.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ContractError(path, "must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ContractError(path, "must be finite")
    return float(value)


def _integer(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContractError(path, "must be an integer")
    return value


def _optional_string(obj: Mapping[str, Any], key: str, path: str, max_chars: int) -> None:
    if key in obj:
        _string(obj[key], _join(path, key), max_chars)


def check_timestamp(value: Any, path: str, now: datetime) -> datetime:
    """Check an ISO 8601 date-time with a timezone, from one year before to one day after ``now``."""
    text = _string(value, path, 64)
    if not TIMESTAMP_PATTERN.fullmatch(text):
        raise ContractError(
            path, "must be an ISO 8601 date-time with a timezone, e.g. 2026-08-21T18:33:52+00:00"
        )
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ContractError(path, f"not a valid date-time: {exc}") from exc
    if moment < now - timedelta(seconds=TIMESTAMP_MAX_AGE_SECONDS):
        raise ContractError(path, "must not be more than one year in the past")
    if moment > now + timedelta(seconds=TIMESTAMP_MAX_AHEAD_SECONDS):
        raise ContractError(path, "must not be more than one day in the future")
    return moment


_EVENT_TYPES: Final = frozenset(member.value for member in EventType)


def _event_type(value: Any, path: str) -> EventType:
    if not isinstance(value, str) or value not in _EVENT_TYPES:
        raise ContractError(path, f"must be one of {sorted(_EVENT_TYPES)}")
    return EventType(value)


# --- custom metadata --------------------------------------------------------------------------


def validate_custom_metadata(value: Any, path: str) -> None:
    """Check a flat object, <= 100 keys matching ``[a-zA-Z0-9_ -]+`` (<= 100 chars), scalar values (§2.4).

    Null and nested values: NOT FOUND (the contract infers "flat only"); refused.
    """
    obj = _object(value, path)
    if len(obj) > MAX_CUSTOM_METADATA_KEYS:
        raise ContractError(path, f"must have at most {MAX_CUSTOM_METADATA_KEYS} keys")
    for key, item in obj.items():
        key_path = _join(path, key)
        if len(key) > MAX_CUSTOM_METADATA_KEY_CHARS or not CUSTOM_METADATA_KEY_PATTERN.fullmatch(key):
            raise ContractError(key_path, "key must match [a-zA-Z0-9_ -]+ and be at most 100 characters")
        if isinstance(item, str):
            if len(item) > MAX_CUSTOM_METADATA_STRING_CHARS:
                raise ContractError(
                    key_path, f"string values must be at most {MAX_CUSTOM_METADATA_STRING_CHARS} chars"
                )
        elif isinstance(item, bool | int):
            pass
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ContractError(key_path, "must be finite")
        else:
            raise ContractError(key_path, "must be a string, number or boolean (flat, no null)")


def validate_upload_metadata(text: str) -> dict[str, Any]:
    """Check the upload's ``metadata`` part: a JSON object string with the custom-metadata rules."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ContractError("metadata", f"not valid JSON: {exc}") from exc
    validate_custom_metadata(value, "metadata")
    return _object(value, "metadata")


def validate_upload_name(text: str) -> str:
    """Check the upload's optional ``name`` part."""
    return _string(text, "name", MAX_UPLOAD_NAME_CHARS)


def validate_use_case_body(body: Any) -> str:
    """Check a ``POST /vision-events/use-cases`` body ``{"name": str}``; return the name."""
    obj = _object(body, "body")
    _keys(obj, frozenset({"name"}), frozenset({"name"}), "")
    return _string(obj["name"], "name", MAX_USE_CASE_NAME_CHARS)


# --- annotations (§4) -------------------------------------------------------------------------

_BOX_KEYS: Final = frozenset({"class", "x", "y", "width", "height", "confidence"})
_SEGMENTATION_KEYS: Final = _BOX_KEYS | {"points"}
# VE sends a keypoint detection without ``keypoints`` when it has none (§4.4); whether the API
# accepts that is NOT FOUND, so the list is required.
_KEYPOINT_DETECTION_KEYS: Final = _BOX_KEYS | {"keypoints"}
_CLASSIFICATION_KEYS: Final = frozenset({"class", "confidence"})
_KEYPOINT_KEYS: Final = frozenset({"id", "x", "y"})


def _box(item: Any, path: str, allowed: frozenset[str]) -> dict[str, Any]:
    obj = _object(item, path)
    _keys(obj, allowed, allowed, path)
    _string(obj["class"], _join(path, "class"), MAX_CLASS_CHARS)
    _number(obj["x"], _join(path, "x"))
    _number(obj["y"], _join(path, "y"))
    for key in ("width", "height"):
        if _number(obj[key], _join(path, key)) < 0:
            raise ContractError(_join(path, key), "must be >= 0")
    # Boxes carry a confidence clamped to [0, 1] (§4.1).
    if not 0.0 <= _number(obj["confidence"], _join(path, "confidence")) <= 1.0:
        raise ContractError(_join(path, "confidence"), "must be between 0 and 1")
    return obj


def _object_detection(item: Any, path: str) -> None:
    _box(item, path, _BOX_KEYS)


def _instance_segmentation(item: Any, path: str) -> None:
    obj = _box(item, path, _SEGMENTATION_KEYS)
    points_path = _join(path, "points")
    points = _list(obj["points"], points_path)
    if len(points) < 3:
        raise ContractError(points_path, "a polygon needs at least 3 points")
    for index, point in enumerate(points):
        point_path = f"{points_path}[{index}]"
        if len(_list(point, point_path)) != 2:
            raise ContractError(point_path, "must be an [x, y] pair")
        _number(point[0], f"{point_path}[0]")
        _number(point[1], f"{point_path}[1]")


def _keypoint_detection(item: Any, path: str) -> None:
    obj = _box(item, path, _KEYPOINT_DETECTION_KEYS)
    keypoints_path = _join(path, "keypoints")
    for index, keypoint in enumerate(_list(obj["keypoints"], keypoints_path)):
        keypoint_path = f"{keypoints_path}[{index}]"
        kp = _object(keypoint, keypoint_path)
        _keys(kp, _KEYPOINT_KEYS, _KEYPOINT_KEYS, keypoint_path)
        if _integer(kp["id"], _join(keypoint_path, "id")) < 0:
            raise ContractError(_join(keypoint_path, "id"), "must be >= 0")
        _number(kp["x"], _join(keypoint_path, "x"))
        _number(kp["y"], _join(keypoint_path, "y"))


def _classification(item: Any, path: str) -> None:
    obj = _object(item, path)
    _keys(obj, _CLASSIFICATION_KEYS, _CLASSIFICATION_KEYS, path)
    _string(obj["class"], _join(path, "class"), MAX_CLASS_CHARS)
    # VE does not clamp classification confidences (§4.5): only finiteness is certain.
    _number(obj["confidence"], _join(path, "confidence"))


_ANNOTATION_ITEM: Final[Mapping[str, Callable[[Any, str], None]]] = {
    "objectDetections": _object_detection,
    "classifications": _classification,
    "instanceSegmentations": _instance_segmentation,
    "keypoints": _keypoint_detection,
}


def _boxes_ok(items: list[Any]) -> bool:
    """Whether every item is a valid plain box (exactly the six keys), checked without any path.

    Only a fast pre-check: False sends the list through the checks that name the failing field,
    so it may refuse more than they do (integers, subclasses), never less.
    """
    isfinite = math.isfinite
    for item in items:
        if type(item) is not dict or len(item) != 6:
            return False
        try:
            name = item["class"]
            x = item["x"]
            y = item["y"]
            width = item["width"]
            height = item["height"]
            confidence = item["confidence"]
        except KeyError:
            return False
        if not (
            type(name) is str
            and type(x) is float
            and type(y) is float
            and type(width) is float
            and type(height) is float
            and type(confidence) is float
            and 0 < len(name) <= MAX_CLASS_CHARS
            and isfinite(x + y + width + height)
            and width >= 0.0
            and height >= 0.0
            and 0.0 <= confidence <= 1.0
        ):
            return False
    return True


def _classifications_ok(items: list[Any]) -> bool:
    """Fast pre-check of a classifications list (see :func:`_boxes_ok`)."""
    isfinite = math.isfinite
    for item in items:
        if type(item) is not dict or len(item) != 2:
            return False
        name = item.get("class")
        confidence = item.get("confidence")
        if not (
            type(name) is str
            and type(confidence) is float
            and 0 < len(name) <= MAX_CLASS_CHARS
            and isfinite(confidence)
        ):
            return False
    return True


_FAST_LIST: Final[Mapping[str, Callable[[list[Any]], bool]]] = {
    "objectDetections": _boxes_ok,
    "classifications": _classifications_ok,
}


def validate_annotations(entry: Mapping[str, Any], path: str) -> None:
    """Check the annotation lists of one image entry (§4); each holds at most 1000 items."""
    for key in ANNOTATION_KEYS:
        if key not in entry:
            continue
        list_path = _join(path, key)
        items = _list(entry[key], list_path)
        if len(items) > MAX_ANNOTATIONS_PER_LIST:
            raise ContractError(list_path, f"must hold at most {MAX_ANNOTATIONS_PER_LIST} items")
        fast = _FAST_LIST.get(key)
        if fast is not None and fast(items):
            continue
        check = _ANNOTATION_ITEM[key]
        for index, item in enumerate(items):
            check(item, f"{list_path}[{index}]")


# --- eventData (§2.3) -------------------------------------------------------------------------

_FieldCheck = Callable[[Any, str], None]


def _text(max_chars: int) -> _FieldCheck:
    def check(value: Any, path: str) -> None:
        _string(value, path, max_chars)

    return check


def _one_of(allowed: frozenset[str]) -> _FieldCheck:
    def check(value: Any, path: str) -> None:
        if not isinstance(value, str) or value not in allowed:
            raise ContractError(path, f"must be one of {sorted(allowed)}")

    return check


def _alert_type(value: Any, path: str) -> None:
    if not ALERT_TYPE_PATTERN.fullmatch(_string(value, path, MAX_ALERT_TYPE_CHARS)):
        raise ContractError(path, "must match [A-Za-z0-9_-]+")


def _item_count(value: Any, path: str) -> None:
    if _integer(value, path) < 0:
        raise ContractError(path, "must be >= 0")


_EXTERNAL_ID: Final = _text(MAX_EXTERNAL_ID_CHARS)

# Exactly the keys each type may carry; anything else is refused (EW: extra="forbid"). Which
# keys are required is NOT FOUND; VE drops None-valued keys, so every key stays optional.
EVENT_DATA_FIELDS: Final[Mapping[str, Mapping[str, _FieldCheck]]] = {
    EventType.QUALITY_CHECK: {"result": _one_of(QC_RESULTS), "externalId": _EXTERNAL_ID},
    EventType.INVENTORY_COUNT: {
        "location": _text(MAX_LOCATION_CHARS),
        "itemCount": _item_count,
        "itemType": _text(MAX_ITEM_TYPE_CHARS),
        "externalId": _EXTERNAL_ID,
    },
    EventType.SAFETY_ALERT: {
        "alertType": _alert_type,
        "severity": _one_of(SEVERITIES),
        "description": _text(MAX_DESCRIPTION_CHARS),
        "externalId": _EXTERNAL_ID,
    },
    EventType.CUSTOM: {"value": _text(MAX_CUSTOM_VALUE_CHARS), "externalId": _EXTERNAL_ID},
    EventType.OPERATOR_FEEDBACK: {
        "relatedEventId": _text(MAX_RELATED_EVENT_ID_CHARS),
        "feedback": _one_of(FEEDBACK_VALUES),
    },
}


def validate_event_data(event_type: EventType, value: Any, path: str) -> None:
    """Check ``eventData`` / ``event_data`` of ``event_type``: allowed keys, typed values, no null."""
    obj = _object(value, path)
    fields = EVENT_DATA_FIELDS[event_type]
    for key, item in obj.items():
        check = fields.get(key)
        if check is None:
            raise ContractError(
                _join(path, key), f"unknown field for {event_type.value} (extra fields are forbidden)"
            )
        # Null values: NOT FOUND; the blocks strip None keys, so a null may be refused.
        check(item, _join(path, key))


# --- image entries and displayImagePosition ---------------------------------------------------

_CLOUD_IMAGE_KEYS: Final = frozenset({"sourceId", "inputSourceId", "label", *ANNOTATION_KEYS})
# An entry with only inputSourceId is NOT FOUND (§3.3): sourceId is required.
_CLOUD_IMAGE_REQUIRED: Final = frozenset({"sourceId"})
_LOCAL_IMAGE_KEYS: Final = frozenset({"base64Image", "inputBase64Image", "label", *ANNOTATION_KEYS})
# EW always sends base64Image; an entry without it is NOT FOUND: required, as on the cloud.
_LOCAL_IMAGE_REQUIRED: Final = frozenset({"base64Image"})


def _cloud_image(entry: Any, path: str, refs: References) -> None:
    obj = _object(entry, path)
    _keys(obj, _CLOUD_IMAGE_KEYS, _CLOUD_IMAGE_REQUIRED, path)
    for key in ("sourceId", "inputSourceId"):
        if key in obj:
            source_id = _string(obj[key], _join(path, key), MAX_SOURCE_ID_CHARS)
            if not refs.is_uploaded(source_id):
                raise ContractError(_join(path, key), f"unknown image {source_id!r}: upload it first")
    _optional_string(obj, "label", path, MAX_LABEL_CHARS)
    validate_annotations(obj, path)


def check_base64_image(value: Any, path: str) -> bytes:
    """Decode standard base64 (no ``data:`` prefix, no whitespace) of an accepted image format.

    A ``data:`` URL prefix is NOT FOUND for the local service (the blocks send bare base64,
    §3.4), so it is refused.
    """
    text = _string(value, path, None)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ContractError(path, f"not valid base64: {exc}") from exc
    if sniff_image_format(data) is None:
        raise ContractError(path, "not a supported image (JPEG, PNG, WebP, GIF, TIFF, BMP, HEIC, AVIF)")
    return data


def _local_image(entry: Any, path: str) -> None:
    obj = _object(entry, path)
    _keys(obj, _LOCAL_IMAGE_KEYS, _LOCAL_IMAGE_REQUIRED, path)
    for key in ("base64Image", "inputBase64Image"):
        if key in obj:
            check_base64_image(obj[key], _join(path, key))
    _optional_string(obj, "label", path, MAX_LABEL_CHARS)
    validate_annotations(obj, path)


def _images(value: Any, path: str) -> list[Any]:
    images = _list(value, path)
    if len(images) > MAX_IMAGES_PER_EVENT:
        raise ContractError(path, f"must hold at most {MAX_IMAGES_PER_EVENT} image entry")
    return images


def _display_position(event: Mapping[str, Any], has_images: bool, path: str, *, nullable: bool) -> None:
    """``displayImagePosition`` is 0 exactly when there is an image, absent otherwise.

    The blocks send it iff images is non-empty (§2.1, §2.2); whether the API accepts it absent
    with images, or present without, is NOT FOUND: both are refused. The local API documents it
    as nullable, so there null is accepted where the key could be absent.
    """
    key_path = _join(path, "displayImagePosition")
    value = event.get("displayImagePosition")
    if value is None:
        if "displayImagePosition" in event and not nullable:
            raise ContractError(key_path, "must be an integer")
        if has_images:
            raise ContractError(key_path, "field required when images is not empty")
        return
    if _integer(value, key_path) != 0 or not has_images:
        raise ContractError(key_path, "must be 0 (the only image), and only when images is not empty")


# --- cloud events -----------------------------------------------------------------------------

_CLOUD_KEYS: Final = frozenset(
    {
        "eventId",
        "eventType",
        "useCaseId",
        "timestamp",
        "images",
        "eventData",
        "customMetadata",
        "displayImagePosition",
        "deviceId",
        "streamId",
        "workflowId",
    }
)
# eventData is "required" on the REST page but omitted by VE when empty (§2.1): optional here,
# since VE is the API's production client.
_CLOUD_REQUIRED: Final = frozenset({"eventId", "eventType", "useCaseId", "timestamp", "images"})


def validate_cloud_event(body: Any, refs: References, now: datetime, path: str = "") -> dict[str, Any]:
    """Check one cloud event (``POST /vision-events`` body or batch element); return it."""
    event = _object(body, path or "body")
    _keys(event, _CLOUD_KEYS, _CLOUD_REQUIRED, path)
    event_id_path = _join(path, "eventId")
    if not UUID_PATTERN.fullmatch(_string(event["eventId"], event_id_path, MAX_EVENT_ID_CHARS)):
        raise ContractError(event_id_path, "must be a UUID (e.g. str(uuid.uuid4()))")
    event_type = _event_type(event["eventType"], _join(path, "eventType"))
    use_case_path = _join(path, "useCaseId")
    use_case = _string(event["useCaseId"], use_case_path, MAX_USE_CASE_CHARS)
    if not refs.is_active_use_case(use_case):
        # "Events referencing a useCaseId that does not exist will be rejected." Names are not
        # accepted in place of ids (NOT FOUND, §2.6).
        raise ContractError(use_case_path, f"unknown or inactive use case {use_case!r}")
    check_timestamp(event["timestamp"], _join(path, "timestamp"), now)
    images_path = _join(path, "images")
    images = _images(event["images"], images_path)
    for index, entry in enumerate(images):
        _cloud_image(entry, f"{images_path}[{index}]", refs)
    _display_position(event, bool(images), path, nullable=False)
    if "eventData" in event:
        validate_event_data(event_type, event["eventData"], _join(path, "eventData"))
    if "customMetadata" in event:
        validate_custom_metadata(event["customMetadata"], _join(path, "customMetadata"))
    _optional_string(event, "deviceId", path, MAX_DEVICE_ID_CHARS)
    _optional_string(event, "streamId", path, MAX_STREAM_ID_CHARS)
    _optional_string(event, "workflowId", path, MAX_WORKFLOW_ID_CHARS)
    return event


def validate_batch(body: Any, refs: References, now: datetime) -> list[dict[str, Any]]:
    """Check ``{"events": [...]}``: 1..100 valid events and no repeated eventId.

    Partial-failure semantics are NOT FOUND: one bad event fails the whole batch (raised as
    :class:`BatchContractError` with its index). A repeated eventId inside one batch is NOT FOUND
    too; an upsert of the same key twice in one statement fails in many databases, so refuse it.
    """
    obj = _object(body, "body")
    _keys(obj, frozenset({"events"}), frozenset({"events"}), "")
    events = _list(obj["events"], "events")
    if not 1 <= len(events) <= MAX_BATCH_EVENTS:
        raise ContractError("events", f"must hold 1 to {MAX_BATCH_EVENTS} events, got {len(events)}")
    validated: list[dict[str, Any]] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(events):
        path = f"events[{index}]"
        try:
            event = validate_cloud_event(item, refs, now, path)
        except ContractError as exc:
            raise BatchContractError(index, exc.path, exc.what) from exc
        event_id: str = event["eventId"]
        if event_id in first_index:
            raise BatchContractError(
                index, f"{path}.eventId", f"repeats events[{first_index[event_id]}].eventId"
            )
        first_index[event_id] = index
        validated.append(event)
    return validated


# --- local v2 events --------------------------------------------------------------------------

_LOCAL_KEYS: Final = frozenset(
    {
        "inference_timestamp",
        "solution",
        "event_schema",
        "event_data",
        "images",
        "custom_metadata",
        "displayImagePosition",
        "device_id",
        "stream_id",
        "workflow_id",
        "workflow_version",
        "image_id",
        "draft",
    }
)
_LOCAL_REQUIRED: Final = frozenset({"inference_timestamp", "event_schema", "event_data"})


def validate_local_event(body: Any, now: datetime) -> dict[str, Any]:
    """Check a ``POST /v2/events`` body (§2.2, §3.4); return it as a dict.

    Snake_case top-level keys, camelCase image-entry keys and ``displayImagePosition``, exactly
    as the blocks send them; the other spelling of any key is refused (accepted aliases NOT FOUND).
    """
    event = _object(body, "body")
    _keys(event, _LOCAL_KEYS, _LOCAL_REQUIRED, "")
    # The local timestamp range is NOT FOUND; events are later backed up to the cloud, whose
    # window (one year back, one day ahead) applies, so it applies here too.
    check_timestamp(event["inference_timestamp"], "inference_timestamp", now)
    event_type = _event_type(event["event_schema"], "event_schema")
    validate_event_data(event_type, event["event_data"], "event_data")
    for key, limit in (("solution", MAX_USE_CASE_CHARS), ("image_id", MAX_IMAGE_ID_CHARS)):
        if event.get(key) is not None:  # documented as nullable
            _string(event[key], key, limit)
    images = _images(event.get("images", []), "images")
    for index, entry in enumerate(images):
        _local_image(entry, f"images[{index}]")
    _display_position(event, bool(images), "", nullable=True)
    if "custom_metadata" in event:
        # Local limits NOT FOUND (§7): the cloud's rules, since the events go there later.
        validate_custom_metadata(event["custom_metadata"], "custom_metadata")
    _optional_string(event, "device_id", "", MAX_DEVICE_ID_CHARS)
    _optional_string(event, "stream_id", "", MAX_STREAM_ID_CHARS)
    _optional_string(event, "workflow_id", "", MAX_WORKFLOW_ID_CHARS)
    _optional_string(event, "workflow_version", "", MAX_WORKFLOW_VERSION_CHARS)
    if "draft" in event and not isinstance(event["draft"], bool):
        raise ContractError("draft", "must be a boolean")
    return event
