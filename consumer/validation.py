"""Client-side checks of every limit and enum of the contract, so the API never sees a bad event.

Values arrive from the envelope (already typed) or from route selectors (any JSON), so every check
also checks the type. Errors carry a reason code and a path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from consumer import contract
from consumer.contract import EventType
from consumer.errors import Reason, ValidationError
from consumer.model import MetadataValue

# Epoch numbers above this are taken as milliseconds (1e11 s is the year 5138).
_EPOCH_MILLIS_THRESHOLD = 1e11
# The API's timestamp window around "now", built once rather than per message.
_MAX_AGE = timedelta(seconds=contract.TIMESTAMP_MAX_AGE_SECONDS)
_MAX_AHEAD = timedelta(seconds=contract.TIMESTAMP_MAX_AHEAD_SECONDS)
# Event types by their text: a dictionary lookup is what EventType(text) does, without the call.
_EVENT_TYPES: Final = {member.value: member for member in EventType}


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
    if type(value) is EventType:
        return value
    if type(value) is str and (member := _EVENT_TYPES.get(value)) is not None:
        return member
    try:
        return EventType(value)
    except ValueError:
        allowed = [t.value for t in EventType]
        raise ValidationError(Reason.INVALID_VALUE, f"{value!r} is not one of {allowed}", path) from None


def parse_timestamp(value: Any, path: str, now: datetime) -> datetime:
    """ISO 8601 (no offset means UTC) or Unix epoch seconds/milliseconds, within the API's window."""
    return check_timestamp_window(read_timestamp(value, path), path, now)


def read_timestamp(value: Any, path: str) -> datetime:
    """ISO 8601 (no offset means UTC) or Unix epoch seconds/milliseconds, in UTC; any moment."""
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
    return parsed.astimezone(UTC)


def check_timestamp_window(moment: datetime, path: str, now: datetime) -> datetime:
    """The API accepts times from one year ago to one day ahead."""
    earliest = now - _MAX_AGE
    latest = now + _MAX_AHEAD
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

    Fields that do not belong to the event type are ignored, as the Roboflow block does. An absent
    (None) value is left out unchecked; each present one is checked, its field name as the path.
    """
    data: dict[str, Any] = {}
    for name, key, check in _EVENT_DATA_FIELDS[event_type]:
        value = values.get(name)
        if value is not None:
            data[key] = check(value, name)
    return data


_Check = Callable[[Any, str], Any]


def _text(max_chars: int) -> _Check:
    return lambda value, path: require_str(value, path, max_chars)


def _choice(allowed: frozenset[str]) -> _Check:
    return lambda value, path: require_enum(value, path, allowed)


def _alert_type(value: Any, path: str) -> str:
    text = require_non_empty_str(value, path, contract.MAX_ALERT_TYPE_CHARS)
    if not contract.ALERT_TYPE_PATTERN.fullmatch(text):
        raise ValidationError(Reason.INVALID_VALUE, "letters, digits, '_' and '-' only", path)
    return text


def _related_event_id(value: Any, path: str) -> str:
    return require_non_empty_str(value, path, contract.MAX_RELATED_EVENT_ID_CHARS)


_EXTERNAL_ID: Final = ("external_id", "externalId", _text(contract.MAX_EXTERNAL_ID_CHARS))
# Per event type, in the order they are checked: (field, eventData key, check). Built once, so a
# message costs a lookup per field of its own type.
_EVENT_DATA_FIELDS: Final[dict[EventType, tuple[tuple[str, str, _Check], ...]]] = {
    EventType.QUALITY_CHECK: (("qc_result", "result", _choice(contract.QC_RESULTS)), _EXTERNAL_ID),
    EventType.INVENTORY_COUNT: (
        ("location", "location", _text(contract.MAX_LOCATION_CHARS)),
        ("item_count", "itemCount", require_count),
        ("item_type", "itemType", _text(contract.MAX_ITEM_TYPE_CHARS)),
        _EXTERNAL_ID,
    ),
    EventType.SAFETY_ALERT: (
        ("alert_type", "alertType", _alert_type),
        ("severity", "severity", _choice(contract.SEVERITIES)),
        ("alert_description", "description", _text(contract.MAX_DESCRIPTION_CHARS)),
        _EXTERNAL_ID,
    ),
    EventType.CUSTOM: (("custom_value", "value", _text(contract.MAX_CUSTOM_VALUE_CHARS)), _EXTERNAL_ID),
    EventType.OPERATOR_FEEDBACK: (
        ("related_event_id", "relatedEventId", _related_event_id),
        ("feedback", "feedback", _choice(contract.FEEDBACK_VALUES)),
    ),
}
