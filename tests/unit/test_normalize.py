"""Messages to events: every event type, precedence, rules, limits, identity and time."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumer.config import ImagesConfig, LimitsConfig
from consumer.errors import ConfigError, MessageError, Reason
from consumer.model import VisionEvent
from consumer.normalize import Skipped, SkipReason
from tests.support.images import b64, jpeg_bytes, png_bytes
from tests.support.messages import message, normalizer

ENVELOPE_ROUTES = """
routes:
  - name: everything
    match: "events/#"
"""

RULE_ROUTES = """
routes:
  - name: qc
    match: "factory/{site}/{camera}/qc"
    event_type: quality_check
    use_case: line-qc
    fields:
      device_id: "{camera}"
      external_id: {select: inference_id}
    quality_check: {fail_classes: [defect], min_confidence: 0.5}
    custom_metadata: {site: "{site}", frame: {select: frame_id}}
  - name: count
    match: "shelf/{zone}"
    event_type: inventory_count
    use_case: inventory
    fields: {location: "{zone}"}
    inventory_count: {item_classes: [box], min_confidence: 0.4}
  - name: safety
    match: "safety/{camera}"
    event_type: safety_alert
    use_case: safety
    safety_alert:
      classes:
        no_hardhat: {alert_type: no_hardhat, severity: high}
    cooldown: {seconds: 30, key: "{camera}:{alert_type}"}
  - name: strict-images
    match: "strict/#"
    event_type: custom
    use_case: u
    predictions_without_image: dead_letter
"""


def _box(name: str, confidence: float, x: float = 10.0) -> dict[str, Any]:
    return {
        "x": x,
        "y": 10.0,
        "width": 4.0,
        "height": 6.0,
        "confidence": confidence,
        "class": name,
        "class_id": 0,
    }


def _roboflow(*predictions: dict[str, Any]) -> dict[str, Any]:
    return {
        "inference_id": "inf-1",
        "time": 0.01,
        "image": {"width": 64, "height": 48},
        "predictions": list(predictions),
    }


def _event(result: VisionEvent | Skipped) -> VisionEvent:
    assert isinstance(result, VisionEvent), result
    return result


def _error(routes: str, topic: str, payload: Any, **kwargs: Any) -> MessageError:
    with pytest.raises(MessageError) as caught:
        normalizer(routes, **kwargs).normalize(message(topic, payload))
    return caught.value


@pytest.mark.parametrize(
    ("fields", "event_data"),
    [
        (
            {"event_type": "quality_check", "qc_result": "fail", "external_id": "b-1"},
            {"result": "fail", "externalId": "b-1"},
        ),
        (
            {"event_type": "inventory_count", "location": "A", "item_count": 3, "item_type": "box"},
            {"location": "A", "itemCount": 3, "itemType": "box"},
        ),
        (
            {
                "event_type": "safety_alert",
                "alert_type": "fire",
                "severity": "high",
                "alert_description": "smoke",
            },
            {"alertType": "fire", "severity": "high", "description": "smoke"},
        ),
        ({"event_type": "custom", "custom_value": "hello"}, {"value": "hello"}),
        (
            {
                "event_type": "operator_feedback",
                "related_event_id": "e-1",
                "feedback": "correct",
                "external_id": "x",
            },
            {"relatedEventId": "e-1", "feedback": "correct"},
        ),
    ],
)
def test_each_event_type_from_an_envelope(fields: dict[str, Any], event_data: dict[str, Any]) -> None:
    event = _event(normalizer(ENVELOPE_ROUTES).normalize(message("events/a", {"use_case": "uc", **fields})))
    assert event.event_type.value == fields["event_type"]
    assert event.use_case_id == "uc"
    assert event.event_data == event_data
    assert event.route == "everything"


def test_solution_is_an_alias_of_use_case() -> None:
    event = _event(
        normalizer(ENVELOPE_ROUTES).normalize(message("events/a", {"event_type": "custom", "solution": "s"}))
    )
    assert event.use_case_id == "s"


def test_raw_roboflow_output_with_rule_and_captures() -> None:
    payload = {**_roboflow(_box("defect", 0.8), _box("ok", 0.9)), "frame_id": 17}
    event = _event(normalizer(RULE_ROUTES).normalize(message("factory/berlin/cam-1/qc", payload)))
    assert event.event_type.value == "quality_check"
    assert event.event_data == {"result": "fail", "externalId": "inf-1"}
    assert event.device_id == "cam-1"
    assert event.custom_metadata == {"site": "berlin", "frame": 17}


def test_quality_rule_passes_below_threshold() -> None:
    event = _event(
        normalizer(RULE_ROUTES).normalize(message("factory/a/b/qc", _roboflow(_box("defect", 0.2))))
    )
    assert event.event_data["result"] == "pass"


def test_message_fields_beat_rules_and_rules_beat_route_fields() -> None:
    routes = RULE_ROUTES.replace('location: "{zone}"', 'location: "{zone}", item_count: 99')
    payload: dict[str, Any] = {
        "predictions": [_box("box", 0.9), _box("box", 0.9)],
        "input_image": {"base64": b64(png_bytes())},
    }
    event = _event(normalizer(routes).normalize(message("shelf/z1", payload)))
    assert event.event_data["itemCount"] == 2  # the rule beat the route's constant
    payload["item_count"] = 7
    event = _event(normalizer(routes).normalize(message("shelf/z1", payload)))
    assert event.event_data["itemCount"] == 7  # the message beat the rule
    assert event.event_data["itemType"] == "box"


def test_safety_alert_only_when_a_listed_class_is_present_then_cooldown() -> None:
    norm = normalizer(RULE_ROUTES)
    nobody = norm.normalize(message("safety/cam-1", _roboflow(_box("person", 0.9))))
    assert nobody == Skipped(SkipReason.NO_ALERT, "safety")
    first = _event(norm.normalize(message("safety/cam-1", _roboflow(_box("no_hardhat", 0.9)))))
    assert first.event_data["alertType"] == "no_hardhat"
    assert first.event_data["severity"] == "high"
    again = norm.normalize(message("safety/cam-1", _roboflow(_box("no_hardhat", 0.95, x=11))))
    assert again == Skipped(SkipReason.COOLDOWN, "safety")
    other_camera = norm.normalize(message("safety/cam-2", _roboflow(_box("no_hardhat", 0.9))))
    assert isinstance(other_camera, VisionEvent)


def test_unrouted_message_is_a_no_route_error_or_dropped_when_configured() -> None:
    assert _error(ENVELOPE_ROUTES, "other/topic", {"event_type": "custom"}).reason is Reason.NO_ROUTE
    dropping = normalizer(ENVELOPE_ROUTES + "unrouted: drop\n")
    assert dropping.normalize(message("other/topic", {})) == Skipped(SkipReason.UNROUTED, "unrouted")


@pytest.mark.parametrize(
    ("payload", "reason", "path"),
    [
        (b"{not json", Reason.INVALID_JSON, ""),
        (b'{"event_type": "custom", "x": NaN}', Reason.NON_FINITE_NUMBER, ""),
        (b'"just a string"', Reason.NOT_AN_OBJECT, ""),
        (b"[" * 40 + b"]" * 40, Reason.TOO_DEEP, ""),
        ({"event_type": "birthday", "use_case": "u"}, Reason.INVALID_VALUE, "event_type"),
        ({"event_type": "custom"}, Reason.MISSING_FIELD, "use_case"),
        ({"use_case": "u"}, Reason.MISSING_FIELD, "event_type"),
        ({"event_type": "custom", "use_case": 7}, Reason.INVALID_TYPE, "use_case"),
        (
            {"event_type": "inventory_count", "use_case": "u", "item_count": "3"},
            Reason.INVALID_TYPE,
            "item_count",
        ),
        (
            {"event_type": "inventory_count", "use_case": "u", "item_count": True},
            Reason.INVALID_TYPE,
            "item_count",
        ),
        (
            {"event_type": "inventory_count", "use_case": "u", "item_count": -1},
            Reason.INVALID_VALUE,
            "item_count",
        ),
        (
            {"event_type": "quality_check", "use_case": "u", "qc_result": "maybe"},
            Reason.INVALID_VALUE,
            "qc_result",
        ),
        (
            {"event_type": "safety_alert", "use_case": "u", "severity": "extreme"},
            Reason.INVALID_VALUE,
            "severity",
        ),
        (
            {"event_type": "safety_alert", "use_case": "u", "alert_type": "no hat!"},
            Reason.INVALID_VALUE,
            "alert_type",
        ),
        (
            {"event_type": "operator_feedback", "use_case": "u", "feedback": "meh"},
            Reason.INVALID_VALUE,
            "feedback",
        ),
        ({"event_type": "custom", "use_case": "x" * 257}, Reason.TOO_LONG, "use_case"),
        (
            {"event_type": "custom", "use_case": "u", "external_id": "x" * 1001},
            Reason.TOO_LONG,
            "external_id",
        ),
        (
            {"event_type": "custom", "use_case": "u", "custom_value": "x" * 10_001},
            Reason.TOO_LONG,
            "custom_value",
        ),
        (
            {"event_type": "safety_alert", "use_case": "u", "alert_description": "x" * 10_001},
            Reason.TOO_LONG,
            "alert_description",
        ),
        ({"event_type": "custom", "use_case": "u", "device_id": "d" * 257}, Reason.TOO_LONG, "device_id"),
        (
            {"event_type": "custom", "use_case": "u", "timestamp": "yesterday"},
            Reason.INVALID_VALUE,
            "timestamp",
        ),
        (
            {"event_type": "custom", "use_case": "u", "custom_metadata": {"a": {"b": 1}}},
            Reason.INVALID_TYPE,
            "custom_metadata.a",
        ),
        (
            {"event_type": "custom", "use_case": "u", "custom_metadata": {"a": None}},
            Reason.INVALID_TYPE,
            "custom_metadata.a",
        ),
        (
            {"event_type": "custom", "use_case": "u", "input_image": {"base64": "!!!"}},
            Reason.INVALID_IMAGE,
            "input_image",
        ),
        (
            {
                "event_type": "custom",
                "use_case": "u",
                "input_image": {"base64": b64(b"plain text, not an image")},
            },
            Reason.INVALID_IMAGE,
            "input_image",
        ),
        (
            {"event_type": "custom", "use_case": "u", "input_image": {"base64": "a", "url": "b"}},
            Reason.INVALID_VALUE,
            "input_image",
        ),
        (
            {"event_type": "custom", "use_case": "u", "output_image": {"url": "https://evil.example/x.jpg"}},
            Reason.IMAGE_URL_NOT_ALLOWED,
            "output_image",
        ),
        (
            {"event_type": "custom", "use_case": "u", "output_image": {"url": "file:///etc/passwd"}},
            Reason.IMAGE_URL_NOT_ALLOWED,
            "output_image",
        ),
    ],
)
def test_bad_input_becomes_a_typed_error_with_path(payload: Any, reason: Reason, path: str) -> None:
    error = _error(ENVELOPE_ROUTES, "events/x", payload)
    assert error.reason is reason
    assert error.path == path


def test_message_size_limit() -> None:
    limits = LimitsConfig(max_message_bytes=1024)
    error = _error(
        ENVELOPE_ROUTES,
        "events/x",
        {"event_type": "custom", "use_case": "u", "pad": "x" * 2000},
        limits=limits,
    )
    assert error.reason is Reason.MESSAGE_TOO_LARGE


@pytest.mark.parametrize(
    ("metadata", "reason", "path"),
    [
        ({f"k{i}": i for i in range(101)}, Reason.TOO_MANY, "custom_metadata"),
        ({"bad/key": 1}, Reason.INVALID_VALUE, "custom_metadata.bad/key"),
        ({"k" * 101: 1}, Reason.TOO_LONG, "custom_metadata." + "k" * 101),
        ({"long": "v" * 1001}, Reason.TOO_LONG, "custom_metadata.long"),
        ({"list": [1, 2]}, Reason.INVALID_TYPE, "custom_metadata.list"),
    ],
)
def test_custom_metadata_limits(metadata: dict[str, Any], reason: Reason, path: str) -> None:
    error = _error(
        ENVELOPE_ROUTES, "events/x", {"event_type": "custom", "use_case": "u", "custom_metadata": metadata}
    )
    assert (error.reason, error.path) == (reason, path)


def test_custom_metadata_at_the_limits_is_accepted() -> None:
    metadata: dict[str, Any] = {f"key {i}-x_": i for i in range(99)}
    metadata["s"] = "v" * 1000
    event = _event(
        normalizer(ENVELOPE_ROUTES).normalize(
            message("events/x", {"event_type": "custom", "use_case": "u", "custom_metadata": metadata})
        )
    )
    assert len(event.custom_metadata) == 100


def test_route_selected_metadata_of_wrong_type_is_an_error() -> None:
    routes = 'routes: [{match: "m", event_type: custom, use_case: u, custom_metadata: {x: {select: obj}}}]'
    error = _error(routes, "m", {"predictions": [_box("a", 0.5)], "obj": {"nested": True}})
    assert (error.reason, error.path) == (Reason.INVALID_TYPE, "custom_metadata.x")


def test_timestamp_is_capture_time_when_given_else_receive_time() -> None:
    captured = datetime.now(UTC) - timedelta(hours=2)
    norm = normalizer(ENVELOPE_ROUTES)
    event = _event(
        norm.normalize(
            message("events/x", {"event_type": "custom", "use_case": "u", "timestamp": captured.isoformat()})
        )
    )
    assert event.timestamp == captured
    received = time.time() - 5
    event = _event(
        norm.normalize(message("events/x", {"event_type": "custom", "use_case": "u"}, received_at=received))
    )
    assert event.timestamp == datetime.fromtimestamp(received, UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T05:04:05+02:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (1767323045, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (1767323045000, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ],
)
def test_timestamp_forms(value: Any, expected: datetime) -> None:
    clock = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
    from consumer.normalize import Normalizer
    from tests.support.messages import routes

    norm = Normalizer(routes(ENVELOPE_ROUTES), LimitsConfig(), ImagesConfig(), clock=lambda: clock)
    event = _event(
        norm.normalize(message("events/x", {"event_type": "custom", "use_case": "u", "timestamp": value}))
    )
    assert event.timestamp == expected
    assert event.timestamp.tzinfo is UTC


@pytest.mark.parametrize("delta", [timedelta(days=366), timedelta(days=-2)])
def test_timestamp_outside_the_api_window_is_rejected(delta: timedelta) -> None:
    moment = (datetime.now(UTC) - delta).isoformat()
    error = _error(
        ENVELOPE_ROUTES, "events/x", {"event_type": "custom", "use_case": "u", "timestamp": moment}
    )
    assert (error.reason, error.path) == (Reason.TIMESTAMP_OUT_OF_RANGE, "timestamp")


def test_event_ids_are_stable_for_redelivery() -> None:
    norm = normalizer(ENVELOPE_ROUTES)
    payload = {"event_type": "custom", "use_case": "u", "custom_value": "v"}
    first = _event(norm.normalize(message("events/a", payload)))
    again = _event(norm.normalize(message("events/a", payload, received_at=time.time() + 60)))
    other_topic = _event(norm.normalize(message("events/b", payload)))
    other_payload = _event(norm.normalize(message("events/a", {**payload, "custom_value": "w"})))
    assert first.event_id == again.event_id
    assert len({first.event_id, other_topic.event_id, other_payload.event_id}) == 3
    own = _event(norm.normalize(message("events/a", {**payload, "event_id": "pub-1"})))
    own_again = _event(
        norm.normalize(message("events/z", {**payload, "event_id": "pub-1", "custom_value": "z"}))
    )
    assert own.event_id == own_again.event_id
    assert own.event_id != first.event_id
    assert own.event_id.count("-") == 4 and own.event_id[14] == "5"  # a UUIDv5


def test_images_from_base64_url_and_source_id() -> None:
    images = ImagesConfig(url_allowed_hosts=["cams.example.com", "*.cdn.example"])
    norm = normalizer(ENVELOPE_ROUTES, images=images)
    jpeg = jpeg_bytes()
    event = _event(
        norm.normalize(
            message(
                "events/x",
                {
                    "event_type": "custom",
                    "use_case": "u",
                    "input_image": {"base64": "data:image/jpeg;base64," + b64(jpeg)},
                    "output_image": {"url": "https://a.cdn.example/frame.jpg"},
                },
            )
        )
    )
    assert event.input_image is not None and event.input_image.data() == jpeg
    assert event.output_image is not None and event.output_image.url == "https://a.cdn.example/frame.jpg"
    by_id = _event(
        norm.normalize(
            message(
                "events/x", {"event_type": "custom", "use_case": "u", "output_image": {"source_id": "s1"}}
            )
        )
    )
    assert by_id.output_image is not None and by_id.output_image.source_id == "s1"


def test_predictions_without_image_are_dropped_and_counted_by_default() -> None:
    dropped: list[str] = []
    norm = normalizer(ENVELOPE_ROUTES, dropped=dropped)
    payload = {"event_type": "custom", "use_case": "u", "predictions": _roboflow(_box("a", 0.9))}
    event = _event(norm.normalize(message("events/x", payload)))
    assert event.annotations == {}
    assert dropped == ["no_image"]
    with_image = _event(
        norm.normalize(message("events/x", {**payload, "input_image": {"base64": b64(png_bytes())}}))
    )
    assert list(with_image.annotations) == ["objectDetections"]
    assert dropped == ["no_image"]


def test_predictions_without_image_can_be_dead_lettered_by_route() -> None:
    error = _error(RULE_ROUTES, "strict/x", _roboflow(_box("a", 0.9)))
    assert (error.reason, error.path) == (Reason.MISSING_FIELD, "input_image")


def test_unknown_shape_is_a_format_error() -> None:
    routes = 'routes: [{match: "m", event_type: custom, use_case: u}]'
    assert _error(routes, "m", {"hello": "world"}).reason is Reason.UNKNOWN_FORMAT


def test_fast_uuid5_equals_the_standard_library() -> None:
    import random
    import uuid

    from consumer.identity import EVENT_ID_NAMESPACE, uuid5_text

    rng = random.Random(4)
    names = [
        "",
        "id:x",
        "topic:a/b\x00sha256:" + "f" * 64,
        "ünïcode",
        *(str(rng.random()) for _ in range(500)),
    ]
    for name in names:
        assert uuid5_text(name) == str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


def test_the_route_image_unavailable_policy_travels_with_the_event() -> None:
    routes = """
routes:
  - {name: keep, match: "keep/#", image_unavailable: deliver_without_image}
  - {name: strict, match: "strict/#"}
"""
    norm = normalizer(routes, images=ImagesConfig(url_allowed_hosts=["img.test"]))
    payload = {"event_type": "custom", "use_case": "u", "output_image": {"url": "https://img.test/a.jpg"}}
    assert _event(norm.normalize(message("keep/x", payload))).deliver_without_image is True
    assert _event(norm.normalize(message("strict/x", payload))).deliver_without_image is False
    with pytest.raises(ConfigError, match="image_unavailable"):
        normalizer('routes: [{match: "m", image_unavailable: drop}]')
