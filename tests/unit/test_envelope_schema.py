"""The published JSON Schema is the envelope model's, and the docs' examples satisfy it."""

from __future__ import annotations

from pathlib import Path

import orjson

from consumer.envelope import ENVELOPE_MARKERS, envelope_json_schema

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "schemas" / "inference-message.schema.json"


def test_published_schema_matches_the_model() -> None:
    published = orjson.loads(SCHEMA.read_bytes())
    assert published == envelope_json_schema(), (
        "schemas/inference-message.schema.json is stale: regenerate it with `make schema`"
    )


def test_schema_lists_every_envelope_field_and_the_image_forms() -> None:
    schema = envelope_json_schema()
    properties = set(schema["properties"])
    assert {
        "event_type",
        "use_case",
        "predictions",
        "input_image",
        "output_image",
        "custom_metadata",
    } <= properties
    assert ENVELOPE_MARKERS - {"solution"} <= properties
    image = schema["$defs"]["ImageInput"]
    assert set(image["properties"]) == {"base64", "url", "source_id"}
    assert image["additionalProperties"] is False
