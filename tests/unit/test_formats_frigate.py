"""Frigate: events, tracked-object updates and count topics; the spec's examples, detection, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from consumer.errors import MessageError, Reason
from consumer.formats import ConvertOptions, PredictionFormat, convert_predictions, detect_format
from consumer.formats.detect import marked_edge_format
from consumer.formats.frigate import count_payload
from tests.support.messages import sample_payloads

EDGE = Path(__file__).parent / "fixtures" / "edge"
FRIGATE = PredictionFormat.FRIGATE


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EDGE / name).read_text())
    return data


def _event() -> dict[str, Any]:
    return _load("frigate_events_update.json")


def test_events_update_converts_per_rules() -> None:
    message = _event()
    assert detect_format(message) is FRIGATE
    out = convert_predictions(message, path="")
    assert out.format is FRIGATE
    assert out.annotations["objectDetections"] == [
        {
            "class": "person",
            "x": 488.0,
            "y": 675.0,
            "width": 112.0,
            "height": 358.0,
            "confidence": 0.87890625,
        },
        {"class": "face", "x": 488.0, "y": 515.0, "width": 92.0, "height": 18.0, "confidence": 0.86},
    ]
    assert out.annotations["classifications"] == [{"class": "John Smith", "confidence": 0.79}]
    tracking = "1607123955.475377-mxklsc"
    assert out.values == {
        "timestamp": "2020-12-04T23:19:22.082975Z",
        "stream_id": "front_door",
        "external_id": tracking,
        "event_id": f"{tracking}:update:1607123962.082975",
    }
    assert out.metadata == {
        "frigate_type": "update",
        "tracking_id": tracking,
        "zones": "yard,driveway",
        "top_score": 0.958984375,
        "stationary": False,
        "license_plate": "ABC12345",
    }
    assert out.context == {
        "id": tracking,
        "tracking_id": tracking,
        "camera": "front_door",
        "label": "person",
        "type": "update",
    }


def test_snapshot_option_takes_the_snapshot_frame_box_score_and_time() -> None:
    out = convert_predictions(_event(), FRIGATE, path="", options=ConvertOptions(frigate_snapshot=True))
    assert out.annotations["objectDetections"] == [
        {"class": "person", "x": 471.5, "y": 594.5, "width": 113.0, "height": 211.0, "confidence": 0.77546}
    ]
    assert out.values["timestamp"] == "2020-12-04T23:19:25.975463Z"
    # The message's identity stays the live frame's, so both choices dedupe the same way.
    assert out.values["event_id"].endswith(":update:1607123962.082975")


def test_snapshot_option_without_a_snapshot_keeps_the_live_box() -> None:
    message = _event()
    del message["after"]["snapshot"]
    out = convert_predictions(message, FRIGATE, path="", options=ConvertOptions(frigate_snapshot=True))
    assert out.annotations["objectDetections"][0]["y"] == 675.0


def test_event_types_give_distinct_event_ids_and_a_missing_score_is_the_default() -> None:
    ids = set()
    for kind in ("new", "update", "end"):
        message = _event()
        message["type"] = kind
        ids.add(convert_predictions(message, FRIGATE, path="").values["event_id"])
    assert len(ids) == 3
    message = _event()
    del message["after"]["score"]
    assert (
        convert_predictions(message, FRIGATE, path="").annotations["objectDetections"][0]["confidence"] == 0.0
    )
    out = convert_predictions(message, FRIGATE, path="", options=ConvertOptions(default_confidence=1.0))
    assert out.annotations["objectDetections"][0]["confidence"] == 1.0


def test_old_string_sub_label_is_a_zero_confidence_classification() -> None:
    message = _event()
    message["after"]["sub_label"] = "John Smith"
    out = convert_predictions(message, FRIGATE, path="")
    assert out.annotations["classifications"] == [{"class": "John Smith", "confidence": 0.0}]


def test_lpr_update_is_a_plate_box_detected_despite_its_timestamp_key() -> None:
    message = _load("frigate_tracked_object_update_lpr.json")
    # ``timestamp`` is also an envelope field; the update's shape still tells it apart.
    assert detect_format(message) is FRIGATE
    assert marked_edge_format(message) is FRIGATE
    out = convert_predictions(message, path="")
    assert out.annotations == {
        "objectDetections": [
            {
                "class": "license_plate",
                "x": 973.0,
                "y": 508.0,
                "width": 112.0,
                "height": 42.0,
                "confidence": 0.95,
            }
        ]
    }
    assert out.metadata == {
        "update_type": "lpr",
        "tracking_id": "1607123955.475377-mxklsc",
        "license_plate": "123ABC",
        "name": "John's Car",
    }
    assert out.values["stream_id"] == "driveway_cam"
    assert out.values["timestamp"] == "2020-12-04T23:19:18.748393Z"
    assert out.values["external_id"] == "1607123955.475377-mxklsc"
    assert out.context["tracking_id"] == "1607123955.475377-mxklsc"


def test_face_classification_and_description_updates() -> None:
    base = {"id": "t-1", "camera": "door", "timestamp": 1700000000.5}
    face = convert_predictions({**base, "type": "face", "name": "Ann", "score": 0.9}, path="")
    assert face.annotations == {"classifications": [{"class": "Ann", "confidence": 0.9}]}
    unknown = convert_predictions({**base, "type": "face", "name": None, "score": 0.9}, path="")
    assert unknown.annotations == {}
    classified = convert_predictions(
        {**base, "type": "classification", "model": "birds", "sub_label": "blue_jay", "score": 0.7}, path=""
    )
    assert classified.annotations == {"classifications": [{"class": "blue_jay", "confidence": 0.7}]}
    assert classified.metadata["model"] == "birds"
    described = convert_predictions(
        {"type": "description", "id": "t-1", "description": "A man walks."}, path=""
    )
    assert described.annotations == {}
    assert described.metadata["description"] == "A man walks."
    # No time: no publisher id, so the event id falls back to the payload hash.
    assert "event_id" not in described.values


def test_count_topic_is_an_item_count_without_annotations() -> None:
    assert count_payload(b"2") == 2
    assert count_payload(b" 0\n") == 0
    for payload in (b'"2"', b"{}", b"[1]", b"ON", b"", b"1" * 40):
        assert count_payload(payload) is None, payload
    out = convert_predictions(2, FRIGATE, path="", options=ConvertOptions(topic="frigate/front_door/person"))
    assert out.annotations == {}
    assert out.values == {"item_count": 2, "item_type": "person"}
    assert out.context == {"item_count": 2, "label": "person", "camera": "front_door", "active": False}
    active = convert_predictions(
        1, FRIGATE, path="", options=ConvertOptions(topic="nvr/frigate/yard/car/active")
    )
    assert active.context == {"item_count": 1, "label": "car", "camera": "yard", "active": True}
    bare = convert_predictions(3, FRIGATE, path="")
    assert bare.values == {"item_count": 3}


def test_a_bare_number_is_never_detected() -> None:
    for value in (2, 0, 2.5, "2"):
        assert detect_format(value) is None
        with pytest.raises(MessageError) as info:
            convert_predictions(value, path="")
        assert info.value.reason is Reason.UNKNOWN_FORMAT


@pytest.mark.parametrize(
    ("value", "reason"),
    [(-1, Reason.INVALID_VALUE), (2.5, Reason.INVALID_TYPE), (float("nan"), Reason.INVALID_TYPE)],
)
def test_bad_counts_are_refused(value: float, reason: Reason) -> None:
    with pytest.raises(MessageError) as info:
        convert_predictions(value, FRIGATE, path="")
    assert info.value.reason is reason
    assert info.value.path == "payload"


def _set(path: list[Any], value: Any) -> Any:
    def mutate(message: dict[str, Any]) -> None:
        target = message
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "reason", "path"),
    [
        (lambda m: m["after"].pop("box"), Reason.INVALID_PREDICTIONS, "after.box"),
        (_set(["after", "box"], [1, 2, 3]), Reason.INVALID_PREDICTIONS, "after.box"),
        (_set(["after", "box"], "1,2,3,4"), Reason.INVALID_PREDICTIONS, "after.box"),
        (_set(["after", "box", 1], float("nan")), Reason.NON_FINITE_NUMBER, "after.box[1]"),
        (_set(["after", "box", 2], "544"), Reason.INVALID_TYPE, "after.box[2]"),
        (_set(["after", "score"], "high"), Reason.INVALID_TYPE, "after.score"),
        (_set(["after", "camera"], 7), Reason.INVALID_TYPE, "after.camera"),
        (lambda m: m["after"].pop("id"), Reason.MISSING_FIELD, "after.id"),
        (_set(["after", "frame_time"], "now"), Reason.INVALID_TYPE, "after.frame_time"),
        (_set(["after", "frame_time"], float("inf")), Reason.NON_FINITE_NUMBER, "after.frame_time"),
        (_set(["after", "sub_label"], [1, 0.5]), Reason.INVALID_TYPE, "after.sub_label[0]"),
        (_set(["after", "current_zones"], "yard"), Reason.INVALID_TYPE, "after.current_zones"),
        (
            _set(["after", "current_attributes", 0, "box"], None),
            Reason.INVALID_PREDICTIONS,
            "after.current_attributes[0].box",
        ),
        (_set(["after", "current_attributes"], {"face": 1}), Reason.INVALID_TYPE, "after.current_attributes"),
        (_set(["after", "stationary"], "no"), Reason.INVALID_TYPE, "after.stationary"),
        (_set(["type"], "started"), Reason.INVALID_VALUE, "type"),
        (_set(["after"], None), Reason.MISSING_FIELD, "after"),
    ],
)
def test_bad_events_are_typed_errors_with_a_path(mutate: Any, reason: Reason, path: str) -> None:
    message = _event()
    mutate(message)
    with pytest.raises(MessageError) as info:
        convert_predictions(message, FRIGATE, path="")
    assert (info.value.reason, info.value.path) == (reason, path)


@pytest.mark.parametrize(
    ("mutate", "reason", "path"),
    [
        (lambda m: m.pop("plate_box"), Reason.INVALID_PREDICTIONS, "plate_box"),
        (_set(["plate_box", 0], None), Reason.MISSING_FIELD, "plate_box[0]"),
        (_set(["plate"], 123), Reason.INVALID_TYPE, "plate"),
        (_set(["timestamp"], "yesterday"), Reason.INVALID_TYPE, "timestamp"),
        (_set(["id"], ""), Reason.INVALID_TYPE, "id"),
    ],
)
def test_bad_updates_are_typed_errors_with_a_path(mutate: Any, reason: Reason, path: str) -> None:
    message = _load("frigate_tracked_object_update_lpr.json")
    mutate(message)
    with pytest.raises(MessageError) as info:
        convert_predictions(message, FRIGATE, path="")
    assert (info.value.reason, info.value.path) == (reason, path)


def test_other_formats_and_envelopes_are_not_taken_for_frigate() -> None:
    for payload in sample_payloads(excluding=("frigate/",)):
        assert detect_format(payload) is not FRIGATE
    assert detect_format(_load("deepstream_full_test4_vehicle.json")) is PredictionFormat.DEEPSTREAM
    lpr = _load("frigate_tracked_object_update_lpr.json")
    # A document with any envelope field besides ``timestamp`` is an envelope, whatever else it has.
    assert marked_edge_format({**lpr, "event_type": "custom"}) is None
    assert detect_format({**lpr, "event_type": "custom"}) is None
    # Without the type's own key a {type, id} dict is not an update.
    assert detect_format({"type": "lpr", "id": "x", "score": 1}) is None
    assert detect_format({"type": ["new"], "after": {}}) is None
    assert detect_format({"type": "new", "after": {"camera": "c", "label": "l"}}) is None
