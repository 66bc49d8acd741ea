"""The normalizer's shortcuts give exactly what the general code gives, and step aside when unsure.

Each shortcut is compared with the code it stands for over varied inputs, invalid ones included:
the same values, or the same reason, path and detail of the error.
"""

from __future__ import annotations

import math
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumer import contract
from consumer.config import ImagesConfig, LimitsConfig
from consumer.contract import EventType
from consumer.envelope import (
    _READERS,
    EnvelopeMessage,
    _plain_envelope_fields,
    envelope_fields,
    parse_envelope,
)
from consumer.errors import MessageError, Reason, ValidationError
from consumer.formats import PredictionFormat, convert_predictions
from consumer.formats.common import MAX_IMAGE_SIDE, class_confidence, class_name, image_side
from consumer.identity import EVENT_ID_NAMESPACE, uuid5_text
from consumer.model import VisionEvent
from consumer.normalize import Normalizer, Skipped
from consumer.routing.rules import QualityRule, _everything
from consumer.validation import build_event_data, check_timestamp_window, require_event_type
from tests.support.messages import message, routes

# -- the envelope: the plain-document reader equals the model ---------------------------------------

_TEXT_FIELDS = (
    "event_id",
    "device_id",
    "stream_id",
    "workflow_id",
    "external_id",
    "location",
    "item_type",
    "alert_type",
    "alert_description",
    "custom_value",
    "related_event_id",
)
_PLAIN_IMAGES: list[Any] = [{"source_id": "ve-img-1"}, {"url": "http://img.local/a.jpg"}, {"base64": "iVBO"}]
_UNUSUAL_IMAGES: list[Any] = [
    {"source_id": 5},
    {"source_id": None},
    {},
    {"source_id": "a", "url": "http://img.local/a.jpg"},
    {"source_id": "a", "url": None},
    {"other": "x"},
    "ve-img-1",
    [],
]

# Values the plain reader takes (the model accepts them as they are) ...
PLAIN: dict[str, list[Any]] = {
    "event_type": [t.value for t in EventType],
    "use_case": ["uc", ""],
    "timestamp": ["2024-01-01T00:00:00Z", "not a time", 1.7e9, 1_700_000_000_000, 2**70, -1, math.inf],
    "qc_result": ["pass", "fail"],
    "item_count": [0, 3, 2**70],
    "severity": ["low", "medium", "high"],
    "feedback": ["correct", "incorrect", "inconclusive"],
    "custom_metadata": [{}, {"a": 1, "b": "x", "c": [1]}],
    "predictions": [[], {"predictions": []}, "anything", 0, False],
    "input_image": _PLAIN_IMAGES,
    "output_image": _PLAIN_IMAGES,
    "not_a_field": [1, "x", {"y": None}],
    **{name: ["text", ""] for name in _TEXT_FIELDS},
}
# ... and values it leaves to the model (valid for the model or not).
UNUSUAL: dict[str, list[Any]] = {
    "event_type": ["birthday", "", "QUALITY_CHECK", 3, True, ["custom"], EventType.CUSTOM],
    "use_case": [7, False, {"a": 1}],
    "solution": ["sol", 5, ""],
    "timestamp": [True, [1], {"t": 1}],
    "qc_result": ["PASS", 1, True],
    "item_count": [-1, 3.0, "3", True],
    "severity": ["urgent", 2],
    "feedback": ["maybe", 0],
    "custom_metadata": [[], "x", 3, {1: "an integer key"}],
    "input_image": _UNUSUAL_IMAGES,
    "output_image": _UNUSUAL_IMAGES,
    **{name: [5, 1.5, True, ["x"], {"x": 1}] for name in _TEXT_FIELDS},
}


def _by_model(document: dict[str, Any]) -> tuple[Any, ...]:
    """What the general path gives: the model's non-null fields, or its error."""
    try:
        envelope = parse_envelope(document)
    except MessageError as exc:
        return ("error", exc.reason, exc.path, exc.detail)
    fields = {n: v for n in EnvelopeMessage.model_fields if (v := getattr(envelope, n)) is not None}
    return ("ok", _typed(fields))


def _by_fields(document: dict[str, Any]) -> tuple[Any, ...]:
    try:
        fields = envelope_fields(document)
    except MessageError as exc:
        return ("error", exc.reason, exc.path, exc.detail)
    return ("ok", _typed(fields))


def _typed(fields: dict[str, Any]) -> dict[str, tuple[type, Any, str, str]]:
    # Equal values of the same type that also print alike (a cooldown key may render them).
    return {name: (type(value), value, repr(value), str(value)) for name, value in fields.items()}


def _documents(rng: random.Random, pools: list[dict[str, list[Any]]], count: int) -> list[dict[str, Any]]:
    documents = []
    for _ in range(count):
        document: dict[str, Any] = {}
        for pool in pools:
            for name, samples in pool.items():
                if rng.random() < 0.25:
                    document[name] = rng.choice([*samples, None])
        documents.append(document)
    return documents


def test_the_reader_table_is_the_model() -> None:
    assert set(_READERS) == set(EnvelopeMessage.model_fields) | {"solution"}


@pytest.mark.parametrize("name", sorted(set(PLAIN) | set(UNUSUAL)))
def test_each_sample_alone_reads_as_the_model_reads_it(name: str) -> None:
    for value in [*PLAIN.get(name, []), *UNUSUAL.get(name, []), None]:
        document = {name: value}
        assert _by_fields(document) == _by_model(document), document
        plain = value is None or any(value is sample for sample in PLAIN.get(name, []))
        assert (_plain_envelope_fields(document) is not None) == plain, document


@pytest.mark.parametrize("seed", range(4))
def test_plain_documents_take_the_fast_path_and_equal_the_model(seed: int) -> None:
    for document in _documents(random.Random(seed), [PLAIN], 300):
        assert _plain_envelope_fields(document) is not None, document
        assert _by_fields(document) == _by_model(document), document


@pytest.mark.parametrize("seed", range(4))
def test_mixed_documents_equal_the_model_with_the_same_errors(seed: int) -> None:
    for document in _documents(random.Random(seed), [PLAIN, UNUSUAL], 300):
        assert _by_fields(document) == _by_model(document), document


def test_a_fast_read_does_not_share_the_metadata_dict_with_the_message() -> None:
    metadata = {"a": 1}
    fields = envelope_fields({"custom_metadata": metadata})
    assert fields["custom_metadata"] == metadata
    assert fields["custom_metadata"] is not metadata  # as the model, which keeps a copy


# -- normalize: envelopes through the fast reader and through the model give the same outcome -------

ENVELOPE_ROUTES = """
routes:
  - name: keyed
    match: "keyed/#"
    event_type: safety_alert
    use_case: s
    cooldown: {seconds: 30, key: "{input_image}|{output_image}|{timestamp}"}
  - name: everything
    match: "events/#"
    quality_check: {fail_classes: [defect], min_confidence: 0.5}
"""

NOW = datetime.now(UTC)
ENVELOPES: list[dict[str, Any]] = [
    {
        "event_id": "e-1",
        "event_type": "quality_check",
        "use_case": "qc",
        "timestamp": NOW.isoformat(),
        "device_id": "cam-1",
        "input_image": {"source_id": "ve-img-1"},
        "predictions": {
            "image": {"width": 224, "height": 224},
            "predictions": [{"class": "defect", "class_id": 1, "confidence": 0.7}],
            "top": "defect",
            "confidence": 0.7,
        },
    },
    {
        "event_type": "inventory_count",
        "use_case": "inv",
        "item_count": 4,
        "location": "A",
        "item_type": "box",
    },
    {"event_type": "custom", "solution": "s", "custom_value": "v", "custom_metadata": {"k": "v", "n": 2}},
    {"event_type": "custom", "use_case": "u", "custom_metadata": {"bad key!": 1}},
    {"event_type": "operator_feedback", "use_case": "u", "related_event_id": "", "feedback": "correct"},
    {"event_type": "safety_alert", "use_case": "u", "alert_type": "no helmet", "severity": "high"},
    {"event_type": "custom", "use_case": "u", "timestamp": NOW.timestamp() - 400 * 86400},
    {"event_type": "custom", "use_case": "u", "timestamp": NOW.timestamp(), "stream_id": "x" * 300},
    {"event_type": "custom", "use_case": "u", "output_image": {"url": "http://elsewhere/a.jpg"}},
    {"event_type": "custom", "use_case": "u", "output_image": {"url": "http://img.local/a.jpg"}},
    {"event_type": "custom", "use_case": "u", "input_image": {"source_id": ""}},
    {"event_type": "custom", "use_case": "u", "input_image": {"source_id": 3}},
    {"event_type": "custom", "use_case": "u", "item_count": -1},
    {"event_type": "birthday", "use_case": "u"},
    {"use_case": "u", "predictions": {"predictions": [{"x": 1.0}]}},
]


def _outcomes(documents: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    # A fresh normalizer per run, on a fixed clock: both runs see the same cooldowns and "now".
    norm = Normalizer(
        routes(ENVELOPE_ROUTES),
        LimitsConfig(),
        ImagesConfig(url_allowed_hosts=["img.local"]),
        clock=NOW.timestamp,
    )
    outcomes: list[tuple[Any, ...]] = []
    for topic in ("events/a", "keyed/a"):
        for document in documents:
            try:
                result = norm.normalize(message(topic, document, received_at=NOW.timestamp()))
            except MessageError as exc:
                outcomes.append(("error", exc.reason, exc.path, exc.detail))
                continue
            outcomes.append(_event_fields(result))
    return outcomes


def _event_fields(result: VisionEvent | Skipped) -> tuple[Any, ...]:
    if isinstance(result, Skipped):
        return ("skipped", result)
    images = [
        None if image is None else (image.base64, image.url, image.source_id)
        for image in (result.input_image, result.output_image)
    ]
    return (
        "event",
        result.event_id,
        result.event_type,
        result.use_case_id,
        result.timestamp,
        result.route,
        result.event_data,
        result.custom_metadata,
        result.device_id,
        result.stream_id,
        result.workflow_id,
        images,
        result.annotations,
    )


def test_normalized_envelopes_equal_those_read_by_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _outcomes(ENVELOPES)
    monkeypatch.setattr("consumer.envelope._plain_envelope_fields", lambda _document: None)
    general = _outcomes(ENVELOPES)
    assert fast == general
    assert [o[0] for o in fast].count("event") >= 4  # the comparison is not only of errors


# -- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [*EventType, *(t.value for t in EventType), "QUALITY_CHECK", "", 1, None, 2.5, ["custom"]]
)
def test_event_type_lookup_equals_the_enum_call(value: Any) -> None:
    try:
        expected: Any = EventType(value)
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(ValidationError) as caught:
            require_event_type(value, "event_type")
        assert (caught.value.reason, caught.value.path) == (Reason.INVALID_VALUE, "event_type")
    else:
        assert require_event_type(value, "event_type") is expected


# Each event type's fields (snake_case in, camelCase out), a valid value, and a wrong one.
EVENT_DATA: dict[EventType, list[tuple[str, str, Any, Any, Reason]]] = {
    EventType.QUALITY_CHECK: [("qc_result", "result", "pass", "ok", Reason.INVALID_VALUE)],
    EventType.INVENTORY_COUNT: [
        ("location", "location", "A", 1, Reason.INVALID_TYPE),
        ("item_count", "itemCount", 2, -1, Reason.INVALID_VALUE),
        ("item_type", "itemType", "box", "x" * 300, Reason.TOO_LONG),
    ],
    EventType.SAFETY_ALERT: [
        ("alert_type", "alertType", "no_helmet", "no helmet", Reason.INVALID_VALUE),
        ("severity", "severity", "high", "urgent", Reason.INVALID_VALUE),
        ("alert_description", "description", "d", 3, Reason.INVALID_TYPE),
    ],
    EventType.CUSTOM: [("custom_value", "value", "v", "x" * 10_001, Reason.TOO_LONG)],
    EventType.OPERATOR_FEEDBACK: [
        ("related_event_id", "relatedEventId", "e-1", "", Reason.INVALID_VALUE),
        ("feedback", "feedback", "correct", "maybe", Reason.INVALID_VALUE),
    ],
}
EXTERNAL_ID = ("external_id", "externalId", "x-1", "x" * 1001, Reason.TOO_LONG)


@pytest.mark.parametrize("event_type", list(EventType))
def test_event_data_takes_only_its_type_fields_and_checks_each_with_its_path(event_type: EventType) -> None:
    own = list(EVENT_DATA[event_type])
    if event_type is not EventType.OPERATOR_FEEDBACK:
        own.append(EXTERNAL_ID)
    others = [f for t, fields in EVENT_DATA.items() if t is not event_type for f in fields]
    if event_type is EventType.OPERATOR_FEEDBACK:
        others.append(EXTERNAL_ID)
    # Other types' fields are ignored, even when invalid; absent ones are simply left out.
    foreign = {name: bad for name, _key, _good, bad, _reason in others}
    assert build_event_data(event_type, foreign) == {}
    valid = {name: good for name, _key, good, _bad, _reason in own}
    expected = {key: good for _name, key, good, _bad, _reason in own}
    assert build_event_data(event_type, {**foreign, **valid}) == expected
    for name, _key, _good, bad, reason in own:
        with pytest.raises(ValidationError) as caught:
            build_event_data(event_type, {**valid, name: bad})
        assert (caught.value.reason, caught.value.path) == (reason, name)


def test_timestamp_window_bounds_are_inclusive() -> None:
    now = datetime(2030, 6, 1, tzinfo=UTC)
    earliest = now - timedelta(seconds=contract.TIMESTAMP_MAX_AGE_SECONDS)
    latest = now + timedelta(seconds=contract.TIMESTAMP_MAX_AHEAD_SECONDS)
    assert check_timestamp_window(earliest, "t", now) == earliest
    assert check_timestamp_window(latest, "t", now) == latest
    for outside in (earliest - timedelta(microseconds=1), latest + timedelta(microseconds=1)):
        with pytest.raises(ValidationError) as caught:
            check_timestamp_window(outside, "t", now)
        assert caught.value.reason is Reason.TIMESTAMP_OUT_OF_RANGE


# -- rules, classifications, identity -----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_quality_rule_equals_a_walk_over_every_annotation(seed: int) -> None:
    rng = random.Random(seed)
    keys = ("objectDetections", "classifications", "instanceSegmentations", "keypoints")
    rule = QualityRule(frozenset({"defect", "scratch"}), 0.5)
    for _ in range(300):
        annotations = {
            key: [
                {"class": rng.choice(["defect", "scratch", "ok"]), "confidence": rng.choice([0.2, 0.5, 0.9])}
                for _ in range(rng.randint(1, 3))
            ]
            for key in keys
            if rng.random() < 0.4
        }
        failing = any(
            item["class"] in rule.fail_classes and item["confidence"] >= rule.min_confidence
            for item in _everything(annotations)
        )
        assert rule.result(annotations) == ("fail" if failing else "pass")


def _class_reference(prediction: dict[str, Any], index: int) -> dict[str, Any]:
    """What the general classification code makes of one class, by its building blocks."""
    name = prediction.get("class")
    if not isinstance(name, str):
        if name is None:
            name = prediction.get("class_name")
        name = class_name(name, f"predictions[{index}].class")
    confidence = class_confidence(prediction.get("confidence"), f"predictions[{index}].confidence")
    return {"class": name, "confidence": confidence}


@pytest.mark.parametrize(
    "prediction",
    [
        {"class": "a", "confidence": 0.5},
        {"class": "a", "confidence": 1.5},
        {"class": "a", "confidence": -0.5},
        {"class": "a", "confidence": 1},
        {"class": "a", "confidence": None},
        {"class": "a"},
        {"class": "a", "confidence": math.nan},
        {"class": "a", "confidence": math.inf},
        {"class": "a", "confidence": True},
        {"class": "a", "confidence": "0.5"},
        {"class": 3, "confidence": 0.5},
        {"class": None, "class_name": "b", "confidence": 0.5},
        {"class_name": "b", "confidence": 0.5},
        {"class": 1.5, "confidence": 0.5},
    ],
)
def test_classification_fast_path_equals_the_general_path(prediction: dict[str, Any]) -> None:
    response = {"predictions": [prediction], "top": "a", "confidence": 0.5}
    try:
        expected: Any = ("ok", [_class_reference(prediction, 0)])
    except MessageError as exc:
        expected = ("error", exc.reason, exc.path)
    try:
        output = convert_predictions(response, PredictionFormat.ROBOFLOW, path="")
    except MessageError as exc:
        got: Any = ("error", exc.reason, exc.path)
    else:
        got = ("ok", output.annotations["classifications"])
    assert got == expected


SIDES: list[Any] = [0, 640, MAX_IMAGE_SIDE, MAX_IMAGE_SIDE + 1, -1, 3.0, 2.5, None, True, "640"]


@pytest.mark.parametrize("width", SIDES)
@pytest.mark.parametrize("height", [640, -1, None, 3.0])
def test_image_size_fast_path_equals_image_side(width: Any, height: Any) -> None:
    def outcome(run: Any) -> tuple[Any, ...]:
        try:
            return ("ok", *run())
        except MessageError as exc:
            return ("error", exc.reason, exc.path, exc.detail)

    def converted() -> tuple[Any, Any]:
        response = {"predictions": [], "image": {"width": width, "height": height}}
        output = convert_predictions(response, PredictionFormat.ROBOFLOW, path="")
        return output.image_width, output.image_height

    def reference() -> tuple[Any, Any]:
        return image_side(width, "image.width"), image_side(height, "image.height")

    assert outcome(converted) == outcome(reference)


def test_convert_predictions_still_takes_the_format_as_text() -> None:
    response = {"predictions": [{"class": "a", "confidence": 0.5}], "top": "a"}
    by_text = convert_predictions(response, "roboflow", path="")  # type: ignore[arg-type]
    assert by_text == convert_predictions(response, PredictionFormat.ROBOFLOW, path="")


def test_uuid5_text_equals_the_standard_library_for_every_variant_digit() -> None:
    rng = random.Random(5)
    variants = set()
    for number in range(2000):
        name = f"topic:t/{number}\x00sha256:{rng.getrandbits(256):064x}"
        text = uuid5_text(name)
        assert text == str(uuid.uuid5(EVENT_ID_NAMESPACE, name))
        variants.add(text[19])
    assert variants == set("89ab")
