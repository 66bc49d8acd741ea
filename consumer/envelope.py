"""The envelope: our documented JSON message (``docs/message-format.md``).

Field names mirror the Vision Events block's properties. The JSON Schema published in
``schemas/inference-message.schema.json`` is generated from :class:`EnvelopeMessage`, so the two
cannot drift apart (a unit test compares them). Unknown top-level keys are allowed and ignored, so
routes can select publisher-specific fields into custom metadata.
"""

from __future__ import annotations

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

from consumer.contract import EventType
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


def _path_text(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def envelope_json_schema() -> dict[str, Any]:
    """The JSON Schema of the envelope, as published in ``schemas/``."""
    schema = EnvelopeMessage.model_json_schema(by_alias=False)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
