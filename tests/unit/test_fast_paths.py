"""The hot-path shortcuts give exactly what the general code gives (benchmark round, issue 6)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jmespath
import orjson
import pytest
from pydantic import ValidationError as PydanticValidationError

from consumer.config import ImagesConfig, LimitsConfig
from consumer.decode import check_depth, decode_message
from consumer.envelope import ImageInput
from consumer.errors import DecodeError, MessageError, Reason
from consumer.fakeapi.acceptance import AcceptanceLog, percentile
from consumer.fakeapi.state import FakeState
from consumer.fakeapi.validation import ContractError, _box, _classification, validate_annotations
from consumer.formats.common import Collected
from consumer.formats.roboflow import convert_detections
from consumer.model import InboundMessage, VisionEvent
from consumer.normalize import Normalizer, compile_value
from consumer.routing import load_routes
from consumer.routing.values import ValueSpec, parse_value

# -- decode: the bracket count never lets a too-deep document through ------------------------------


@pytest.mark.parametrize("depth", [1, 5, 31, 32, 33, 60])
def test_depth_limit_holds_with_and_without_the_walk(depth: int) -> None:
    small = b"[" * depth + b"]" * depth
    padded = b'{"pad": "' + b"x" * 20_000 + b'", "v": ' + small + b"}"
    for payload in (small, padded):
        actual_depth = depth + (1 if payload is padded else 0)
        if actual_depth > 32:
            with pytest.raises(DecodeError, match="nesting deeper"):
                decode_message(payload, max_bytes=1 << 20, max_depth=32)
        else:
            assert decode_message(payload, max_bytes=1 << 20, max_depth=32) is not None


def test_brackets_inside_strings_only_make_the_walk_happen() -> None:
    payload = orjson.dumps({"text": "[[[[{{{{" * 10, "v": [1, [2]]})
    assert decode_message(payload, max_bytes=1 << 20, max_depth=4) == orjson.loads(payload)


def test_check_depth_counts_container_subclasses() -> None:
    class Sub(dict[str, Any]):
        pass

    with pytest.raises(DecodeError):
        check_depth({"a": Sub(b=Sub(c=[]))}, 3)
    check_depth({"a": Sub(b=[])}, 3)


# -- route values: compiled getters equal ValueSpec.evaluate ---------------------------------------

DOCUMENTS: list[Any] = [
    {"a": 1, "b": {"c": "x", "d": None, "e": 0, "f": False}, "l": [1, 2], "s": "text"},
    {"a": None, "b": "not an object"},
    [{"a": 1}],
    {},
    {"b": {"c": {"deeper": [1]}}},
]
SELECTORS = ["a", "b.c", "b.d", "b.e", "b.f", "b.c.deeper", "l", "missing", "l[0]", "b.*", "a || 'x'"]


@pytest.mark.parametrize("expression", SELECTORS)
@pytest.mark.parametrize("default", [None, "fallback", 7])
def test_compiled_selectors_match_jmespath(expression: str, default: Any) -> None:
    spec = ValueSpec(selector=jmespath.compile(expression), default=default)
    get = compile_value(spec)
    for document in DOCUMENTS:
        assert get(document, {}) == spec.evaluate(document, {}), (expression, document)


@pytest.mark.parametrize("raw", ["{camera}", "cam-{camera}", "{camera}/{line}", "plain", 3, True, 1.5])
def test_compiled_templates_and_constants_match(raw: Any) -> None:
    spec = parse_value(raw, frozenset({"camera", "line"}), "test")
    get = compile_value(spec)
    for context in ({"camera": "c1", "line": "l"}, {"camera": 5}, {}):
        assert get({}, context) == spec.evaluate({}, context)


# -- normalize: images given as {"source_id"|"url"|"base64": text} ---------------------------------

ROUTES = """
routes:
  - name: od
    match: "cam/{camera}/od"
    format: roboflow
    event_type: quality_check
    use_case: qc
    fields:
      input_image: {select: frame}
      device_id: "{camera}"
"""


def _normalizer(tmp_path: Path) -> Normalizer:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    return Normalizer(load_routes(routes), LimitsConfig(), ImagesConfig(url_allowed_hosts=["img.local"]))


def _outcome(normalizer: Normalizer, frame: Any) -> tuple[str, Any]:
    payload = orjson.dumps({"predictions": [], "frame": frame})
    try:
        event = normalizer.normalize(InboundMessage("mqtt", "cam/c1/od", payload, 1.7e9))
    except MessageError as exc:
        return "error", (exc.reason, exc.path, exc.detail)
    assert isinstance(event, VisionEvent)
    image = event.input_image
    assert image is not None
    return "ok", (image.base64, image.url, image.source_id, event.device_id)


@pytest.mark.parametrize(
    "frame",
    [
        {"source_id": "ve-img-1"},
        {"source_id": ""},
        {"source_id": 5},
        {"url": "http://img.local/a.jpg"},
        {"url": "http://elsewhere/a.jpg"},
        {"base64": "not base64!"},
        {"base64": "iVBORw0KGgo="},
        {"other": "x"},
        {"source_id": "a", "url": "http://img.local/a.jpg"},
        {},
    ],
)
def test_image_objects_are_read_as_pydantic_would(tmp_path: Path, frame: dict[str, Any]) -> None:
    normalizer = _normalizer(tmp_path)
    got = _outcome(normalizer, frame)
    try:
        spec = ImageInput.model_validate(frame)
    except PydanticValidationError:
        assert got[0] == "error"
        assert got[1][:2] == (Reason.INVALID_IMAGE, "input_image")
        return
    expected: tuple[str, Any]
    try:
        image = normalizer._image(spec, "input_image")
    except MessageError as exc:
        expected = ("error", (exc.reason, exc.path, exc.detail))
    else:
        assert image is not None
        expected = ("ok", (image.base64, image.url, image.source_id, "c1"))
    assert got == expected


# -- Roboflow detections: the fast path makes what the general path makes --------------------------


def _box_variants() -> list[dict[str, Any]]:
    base = {"x": 10.5, "y": 20.0, "width": 4.0, "height": 3.0, "confidence": 0.9, "class": "a"}
    return [
        base,
        {**base, "x": 10},
        {**base, "confidence": 1.5},
        {**base, "confidence": None},
        {**base, "class": None, "class_name": "b"},
        {**base, "class": 3},
        {**base, "root_parent_origin": {"offset_x": 1.0, "offset_y": 2.0}},
        {**base, "points": [{"x": 1.0, "y": 1.0}, {"x": 2.0, "y": 1.0}, {"x": 2.0, "y": 2.0}]},
        {**base, "keypoints": [{"x": 1.0, "y": 1.0, "class_id": 0}]},
        {**base, "width": -1.0},
        {**base, "x": math.inf},
        {k: v for k, v in base.items() if k != "confidence"},
        {**base, "extra": "kept out"},
    ]


@pytest.mark.parametrize("prediction", _box_variants())
def test_detection_fast_path_equals_the_general_path(prediction: dict[str, Any]) -> None:
    # A prediction the fast path takes must come out as the general path makes it: force the general
    # path with a key that only it reads (an explicit null crop offset changes nothing).
    general = {"root_parent_origin": None, **prediction}
    results: list[tuple[Any, ...]] = []
    for item in (prediction, general):
        sink = Collected()
        try:
            convert_detections([item], "predictions", sink)
        except MessageError as exc:
            results.append(("error", exc.reason, exc.path))
        else:
            results.append(("ok", sink.annotations()))
    assert results[0] == results[1]


# -- the stand-in's fast annotation checks never accept what the detailed checks refuse ------------


def _random_item(rng: random.Random, keys: tuple[str, ...]) -> dict[str, Any]:
    values: list[Any] = [0.5, 1, -1.0, 2.0, math.nan, math.inf, "a", "", None, True, "x" * 300, 0.0, 1.0]
    item = {key: rng.choice(values) for key in keys if rng.random() > 0.05}
    if rng.random() < 0.05:
        item["extra"] = 1
    return item


@pytest.mark.parametrize("seed", range(5))
def test_fast_annotation_checks_agree_with_the_detailed_ones(seed: int) -> None:
    rng = random.Random(seed)
    box_keys = ("class", "x", "y", "width", "height", "confidence")
    for _ in range(400):
        for key, keys, check in (
            ("objectDetections", box_keys, lambda item, path: _box(item, path, frozenset(box_keys))),
            ("classifications", ("class", "confidence"), _classification),
        ):
            items = [_random_item(rng, keys) for _ in range(rng.randint(1, 3))]
            detailed: str | None = None
            for index, item in enumerate(items):
                try:
                    check(item, f"images[0].{key}[{index}]")
                except ContractError as exc:
                    detailed = str(exc)
                    break
            fast: str | None = None
            try:
                validate_annotations({key: items}, "images[0]")
            except ContractError as exc:
                fast = str(exc)
            assert fast == detailed, items


# -- the stand-in's fast mode and acceptance log ----------------------------------------------------


def test_acceptance_log_records_latency_from_the_event_timestamp() -> None:
    now = 1_800_000_000.0
    log = AcceptanceLog(clock=lambda: now)
    stamps = [datetime.fromtimestamp(now - delay, UTC).isoformat() for delay in (0.1, 0.2, 0.3, 0.4)]
    log.record(stamps)
    summary = log.summary()
    assert summary["count"] == 4
    assert summary["first"] == summary["last"] == now
    assert summary["latency"]["p50"] == pytest.approx(0.2)
    assert summary["latency"]["max"] == pytest.approx(0.4)
    assert sum(count for _, count in summary["timeline"]) == 4
    log.reset()
    assert log.count() == {"count": 0, "first": None, "last": None}
    assert math.isnan(percentile([], 50))


def test_fast_state_keeps_ids_and_sizes_but_no_bodies() -> None:
    state = FakeState(["qc"], retain=False)
    source_id = state.add_upload(b"\xff\xd8\xff" + b"0" * 100)
    assert state.is_uploaded(source_id)
    assert state.upload(source_id) is None
    assert state.upload_sizes() == {source_id: 103}
    stamp = datetime.now(UTC).isoformat()
    event = {"eventId": "e1", "eventType": "quality_check", "timestamp": stamp}
    assert state.store_events([event]) == 0
    assert state.store_events([event]) == 1
    assert state.events() == {"e1": {}}
    assert state.stats()["uploads"] == 1
    assert state.acceptance.count()["count"] == 2


# -- Kafka offsets registered a batch at a time ------------------------------------------------------


@pytest.mark.parametrize(
    "offsets",
    [
        [("t", 0, 1), ("t", 0, 2), ("t", 1, 5), ("t", 0, 3)],
        [("t", 0, 1), ("t", 0, 2), ("t", 0, 1), ("t", 0, 2)],  # a rewind inside the batch
        [],
    ],
)
def test_register_many_releases_like_register(offsets: list[tuple[str, int, int]]) -> None:
    from consumer.sources.offsets import OffsetBook

    one, many = OffsetBook(), OffsetBook()
    singles = [one.register(*coords) for coords in offsets]
    batch = many.register_many(offsets)
    assert len(batch) == len(singles)
    for index in reversed(range(len(offsets))):
        singles[index]()
        batch[index]()
        assert one.committable() == many.committable()
    for topic, partition, _ in offsets:
        assert one.in_flight(topic, partition) == many.in_flight(topic, partition)
