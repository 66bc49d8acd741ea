"""The envelope: our documented JSON message (``docs/message-format.md``).

Field names mirror the Vision Events block's properties. The JSON Schema published in
``schemas/inference-message.schema.json`` is generated from :class:`EnvelopeMessage`, so the two
cannot drift apart (a unit test compares them). Unknown top-level keys are allowed and ignored, so
routes can select publisher-specific fields into custom metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from consumer.contract import FEEDBACK_VALUES, QC_RESULTS, SEVERITIES, EventType
from consumer.errors import Reason, ValidationError


class ImageInput(BaseModel):
    """An image: exactly one of ``base64`` (optionally a data URL), ``url`` or ``source_id``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base64: StrictStr | None = Field(None, description="Base64 image bytes (JPEG, PNG, WebP...).")
    url: StrictStr | None = Field(
        None, description="http(s) URL the consumer fetches (allow-listed hosts only)."
    )
    source_id: StrictStr | None = Field(
        None, description="An image already uploaded to the Vision Events API."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageInput:
        given = [v for v in (self.base64, self.url, self.source_id) if v is not None]
        if len(given) != 1:
            raise ValueError("an image needs exactly one of base64, url or source_id")
        return self


class EnvelopeMessage(BaseModel):
    """One inference result with the Vision Event fields it should become."""

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        title="Vision events consumer inference message",
    )

    event_type: EventType | None = Field(
        None, description="The Vision Event type; a route may set it instead."
    )
    use_case: StrictStr | None = Field(
        None,
        validation_alias=AliasChoices("use_case", "solution"),
        description="Use case id (alias: solution); a route may set it instead.",
    )
    event_id: StrictStr | None = Field(
        None, description="Stable id of this result; redelivery with the same id overwrites the event."
    )
    timestamp: StrictStr | StrictInt | StrictFloat | None = Field(
        None,
        description="Capture time: ISO 8601 (no offset means UTC) or Unix epoch seconds or milliseconds.",
    )
    device_id: StrictStr | None = None
    stream_id: StrictStr | None = None
    workflow_id: StrictStr | None = None
    external_id: StrictStr | None = Field(
        None, description="Your reference (batch, order...), <= 1000 chars."
    )
    qc_result: Literal["pass", "fail"] | None = None
    location: StrictStr | None = None
    item_count: Annotated[StrictInt, Field(ge=0)] | None = None
    item_type: StrictStr | None = None
    alert_type: StrictStr | None = None
    severity: Literal["low", "medium", "high"] | None = None
    alert_description: StrictStr | None = None
    custom_value: StrictStr | None = None
    related_event_id: StrictStr | None = None
    feedback: Literal["correct", "incorrect", "inconclusive"] | None = None
    # Values are checked (with precise paths) by consumer.validation.check_custom_metadata; the
    # schema still tells publishers what is allowed.
    custom_metadata: dict[str, Any] | None = Field(
        None,
        description="Flat: <= 100 keys matching [a-zA-Z0-9_ -]+, string values <= 1000 chars.",
        json_schema_extra={
            "maxProperties": 100,
            "propertyNames": {"pattern": "^[a-zA-Z0-9_ -]{1,100}$"},
            "additionalProperties": {
                "anyOf": [{"type": "string", "maxLength": 1000}, {"type": "number"}, {"type": "boolean"}]
            },
        },
    )
    predictions: Any = Field(None, description="Model output in any supported format (docs/formats.md).")
    input_image: ImageInput | None = Field(None, description="The frame the model ran on.")
    output_image: ImageInput | None = Field(None, description="A visualization to display instead.")


# Keys that only an envelope has: a document with any of them is read as an envelope.
ENVELOPE_MARKERS: Final = frozenset(
    name for name in EnvelopeMessage.model_fields if name not in {"predictions"}
) | {"solution"}


def parse_envelope(document: dict[str, Any]) -> EnvelopeMessage:
    """Validate ``document`` as an envelope; the first problem becomes a typed error with its path."""
    try:
        return EnvelopeMessage.model_validate(document)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        path = _path_text(first["loc"])
        kind = first["type"]
        if kind == "missing":
            reason = Reason.MISSING_FIELD
        elif kind.endswith("_type") or kind in {"model_type", "dict_type", "is_instance_of"}:
            reason = Reason.INVALID_TYPE
        else:
            reason = Reason.INVALID_VALUE
        raise ValidationError(reason, first["msg"], path) from None


def envelope_fields(document: dict[str, Any]) -> dict[str, Any]:
    """The envelope's non-null fields by name, exactly as :func:`parse_envelope` reads them.

    Raises what ``parse_envelope`` raises. Most messages are plainly valid, and for them a walk over
    the document's keys gives the same values far more cheaply than building the model; anything
    that walk is unsure of (a wrong type, a value out of a literal, ``solution``...) goes through
    the model, so the model stays the only judge of every error.
    """
    fields = _plain_envelope_fields(document)
    if fields is not None:
        return fields
    envelope = parse_envelope(document)
    return {name: value for name in _FIELD_NAMES if (value := getattr(envelope, name)) is not None}


def _path_text(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


# -- the plain-envelope reader ----------------------------------------------------------------------
#
# One reader per model field: it returns the value the model would hold for a non-null input, or
# _UNUSUAL when the input is not one the model plainly accepts. A reader may only return a value the
# model would give (same type, equal value); when unsure it returns _UNUSUAL, never raises.

_UNUSUAL: Final = object()
_FIELD_NAMES: Final = tuple(EnvelopeMessage.model_fields)
_EVENT_TYPES: Final = {member.value: member for member in EventType}
_IMAGE_KEYS: Final = frozenset(ImageInput.model_fields)

_Reader = Callable[[Any], Any]


def _text(value: Any) -> Any:
    return value if type(value) is str else _UNUSUAL


def _choice(allowed: frozenset[str]) -> _Reader:
    def read(value: Any) -> Any:
        return value if type(value) is str and value in allowed else _UNUSUAL

    return read


def _event_type(value: Any) -> Any:
    return _EVENT_TYPES.get(value, _UNUSUAL) if type(value) is str else _UNUSUAL


def _timestamp(value: Any) -> Any:
    # StrictStr | StrictInt | StrictFloat keeps each exact type as it is (booleans are refused).
    kind = type(value)
    return value if kind is str or kind is int or kind is float else _UNUSUAL


def _count(value: Any) -> Any:
    return value if type(value) is int and value >= 0 else _UNUSUAL


def _metadata(value: Any) -> Any:
    # dict[str, Any]: the model keeps a copy; its values are checked later, with their paths.
    if type(value) is dict and all(type(key) is str for key in value):
        return dict(value)
    return _UNUSUAL


def _anything(value: Any) -> Any:
    return value


def _image(value: Any) -> Any:
    # Exactly one known key with a text value is an ImageInput that cannot fail to validate; it is
    # still built as one, since an image is an ImageInput wherever the envelope's fields go.
    if type(value) is dict and len(value) == 1:
        ((key, text),) = value.items()
        if key in _IMAGE_KEYS and type(text) is str:
            return ImageInput(**value)
    return _UNUSUAL


def _never(_value: Any) -> Any:
    return _UNUSUAL


_READERS: Final[dict[str, _Reader]] = {
    "event_type": _event_type,
    "use_case": _text,
    # The alias of use_case: which of the two wins is the model's business.
    "solution": _never,
    "event_id": _text,
    "timestamp": _timestamp,
    "device_id": _text,
    "stream_id": _text,
    "workflow_id": _text,
    "external_id": _text,
    "qc_result": _choice(QC_RESULTS),
    "location": _text,
    "item_count": _count,
    "item_type": _text,
    "alert_type": _text,
    "severity": _choice(SEVERITIES),
    "alert_description": _text,
    "custom_value": _text,
    "related_event_id": _text,
    "feedback": _choice(FEEDBACK_VALUES),
    "custom_metadata": _metadata,
    "predictions": _anything,
    "input_image": _image,
    "output_image": _image,
}


def _plain_envelope_fields(document: dict[str, Any]) -> dict[str, Any] | None:
    """What ``envelope_fields`` returns, when every field is plainly valid; else None."""
    fields: dict[str, Any] = {}
    for key, value in document.items():
        if value is None:
            continue  # every field is optional: null is the same as absent
        read = _READERS.get(key)
        if read is None:
            continue  # not a field: ignored, as the model ignores unknown keys
        got = read(value)
        if got is _UNUSUAL:
            return None
        fields[key] = got
    return fields


def envelope_json_schema() -> dict[str, Any]:
    """The JSON Schema of the envelope, as published in ``schemas/``."""
    schema = EnvelopeMessage.model_json_schema(by_alias=False)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
