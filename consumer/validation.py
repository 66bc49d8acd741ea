"""Client-side checks of every limit and enum of the contract, so the API never sees a bad event.

Values arrive from the envelope (already typed) or from route selectors (any JSON), so every check
also checks the type. Errors carry a reason code and a path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from consumer import contract
from consumer.contract import EventType
from consumer.errors import Reason, ValidationError
from consumer.model import MetadataValue

# Epoch numbers above this are taken as milliseconds (1e11 s is the year 5138).
_EPOCH_MILLIS_THRESHOLD = 1e11


def require_str(value: Any, path: str, max_chars: int) -> str:
    """A string of at most ``max_chars`` characters."""
    if not isinstance(value, str):
        raise ValidationError(Reason.INVALID_TYPE, f"expected a string, got {type(value).__name__}", path)
    if len(value) > max_chars:
        raise ValidationError(
            Reason.TOO_LONG, f"{len(value)} characters exceeds the limit of {max_chars}", path
        )
    return value


def require_non_empty_str(value: Any, path: str, max_chars: int) -> str:
    """A non-empty string of at most ``max_chars`` characters."""
    text = require_str(value, path, max_chars)
    if not text:
        raise ValidationError(Reason.INVALID_VALUE, "must not be empty", path)
    return text


def require_enum(value: Any, path: str, allowed: frozenset[str]) -> str:
    """One of ``allowed``."""
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(Reason.INVALID_VALUE, f"{value!r} is not one of {sorted(allowed)}", path)
    return value


def require_count(value: Any, path: str) -> int:
    """A non-negative integer (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(Reason.INVALID_TYPE, f"expected an integer, got {type(value).__name__}", path)
    if value < 0:
        raise ValidationError(Reason.INVALID_VALUE, "must not be negative", path)
    return value


def require_event_type(value: Any, path: str) -> EventType:
    """One of the five event types."""
    try:
        return EventType(value)
    except ValueError:
        allowed = [t.value for t in EventType]
        raise ValidationError(Reason.INVALID_VALUE, f"{value!r} is not one of {allowed}", path) from None


def parse_timestamp(value: Any, path: str, now: datetime) -> datetime:
    """ISO 8601 (no offset means UTC) or Unix epoch seconds/milliseconds, within the API's window."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(
                Reason.INVALID_VALUE, f"{value[:64]!r} is not an ISO 8601 time", path
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        seconds = value / 1000 if value > _EPOCH_MILLIS_THRESHOLD else value
        try:
            parsed = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise ValidationError(Reason.INVALID_VALUE, f"{value} is not a valid epoch time", path) from None
    else:
        raise ValidationError(Reason.INVALID_TYPE, "expected an ISO 8601 string or epoch seconds", path)
    return check_timestamp_window(parsed.astimezone(UTC), path, now)


def check_timestamp_window(moment: datetime, path: str, now: datetime) -> datetime:
    """The API accepts times from one year ago to one day ahead."""
    earliest = now - timedelta(seconds=contract.TIMESTAMP_MAX_AGE_SECONDS)
    latest = now + timedelta(seconds=contract.TIMESTAMP_MAX_AHEAD_SECONDS)
    if not earliest <= moment <= latest:
        raise ValidationError(
            Reason.TIMESTAMP_OUT_OF_RANGE,
            f"{moment.isoformat()} is outside [{earliest.isoformat()}, {latest.isoformat()}]",
            path,
        )
    return moment


def check_custom_metadata(metadata: dict[str, Any], path: str) -> dict[str, MetadataValue]:
    """Flat; <= 100 keys matching ``[a-zA-Z0-9_ -]+`` (<= 100 chars); scalar values; strings <= 1000 chars."""
    if len(metadata) > contract.MAX_CUSTOM_METADATA_KEYS:
        raise ValidationError(
            Reason.TOO_MANY,
            f"{len(metadata)} keys exceeds the limit of {contract.MAX_CUSTOM_METADATA_KEYS}",
            path,
        )
    for key, value in metadata.items():
        where = f"{path}.{key}"
        if len(key) > contract.MAX_CUSTOM_METADATA_KEY_CHARS:
            raise ValidationError(
                Reason.TOO_LONG, f"key longer than {contract.MAX_CUSTOM_METADATA_KEY_CHARS}", where
            )
        if not contract.CUSTOM_METADATA_KEY_PATTERN.fullmatch(key):
            raise ValidationError(Reason.INVALID_VALUE, "key must match [a-zA-Z0-9_ -]+", where)
        if isinstance(value, str):
            if len(value) > contract.MAX_CUSTOM_METADATA_STRING_CHARS:
                raise ValidationError(
                    Reason.TOO_LONG, f"string longer than {contract.MAX_CUSTOM_METADATA_STRING_CHARS}", where
                )
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValidationError(Reason.NON_FINITE_NUMBER, "must be a finite number", where)
        elif not isinstance(value, int):  # bool is an int
            raise ValidationError(
                Reason.INVALID_TYPE,
                f"values must be string, number or boolean, not {type(value).__name__}",
                where,
            )
    return metadata


def build_event_data(event_type: EventType, values: dict[str, Any]) -> dict[str, Any]:
    """The camelCase eventData for ``event_type`` from the collected field values (contract §2.3).

    Fields that do not belong to the event type are ignored, as the Roboflow block does.
    """
    data: dict[str, Any] = {}
    get = values.get
    if event_type is EventType.QUALITY_CHECK:
        _put(data, "result", get("qc_result"), lambda v: require_enum(v, "qc_result", contract.QC_RESULTS))
    elif event_type is EventType.INVENTORY_COUNT:
        _put(
            data,
            "location",
            get("location"),
            lambda v: require_str(v, "location", contract.MAX_LOCATION_CHARS),
        )
        _put(data, "itemCount", get("item_count"), lambda v: require_count(v, "item_count"))
        _put(
            data,
            "itemType",
            get("item_type"),
            lambda v: require_str(v, "item_type", contract.MAX_ITEM_TYPE_CHARS),
        )
    elif event_type is EventType.SAFETY_ALERT:
        _put(data, "alertType", get("alert_type"), _alert_type)
        _put(data, "severity", get("severity"), lambda v: require_enum(v, "severity", contract.SEVERITIES))
        _put(
            data,
            "description",
            get("alert_description"),
            lambda v: require_str(v, "alert_description", contract.MAX_DESCRIPTION_CHARS),
        )
    elif event_type is EventType.CUSTOM:
        _put(
            data,
            "value",
            get("custom_value"),
            lambda v: require_str(v, "custom_value", contract.MAX_CUSTOM_VALUE_CHARS),
        )
    else:
        _put(
            data,
            "relatedEventId",
            get("related_event_id"),
            lambda v: require_non_empty_str(v, "related_event_id", contract.MAX_RELATED_EVENT_ID_CHARS),
        )
        _put(
            data, "feedback", get("feedback"), lambda v: require_enum(v, "feedback", contract.FEEDBACK_VALUES)
        )
    if event_type is not EventType.OPERATOR_FEEDBACK:
        _put(
            data,
            "externalId",
            get("external_id"),
            lambda v: require_str(v, "external_id", contract.MAX_EXTERNAL_ID_CHARS),
        )
    return data


def _alert_type(value: Any) -> str:
    text = require_non_empty_str(value, "alert_type", contract.MAX_ALERT_TYPE_CHARS)
    if not contract.ALERT_TYPE_PATTERN.fullmatch(text):
        raise ValidationError(Reason.INVALID_VALUE, "letters, digits, '_' and '-' only", "alert_type")
    return text


def _put(data: dict[str, Any], key: str, value: Any, check: Callable[[Any], Any]) -> None:
    if value is not None:
        data[key] = check(value)
