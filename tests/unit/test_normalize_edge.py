"""Edge-stack messages through the normalizer: the message's own fields reach the event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from consumer.errors import MessageError, Reason
from consumer.model import VisionEvent
from tests.support.messages import message, normalizer

FIXTURES = Path(__file__).parent / "fixtures" / "edge"

ROUTES = """
routes:
  - name: deepstream
    match: "deepstream/{camera}"
    format: FMT
    event_type: custom
    use_case: traffic
    fields:
      custom_value: vehicle
"""


def _deepstream(captured: datetime) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((FIXTURES / "deepstream_full_test4_vehicle.json").read_text())
    payload["@timestamp"] = captured.isoformat().replace("+00:00", "Z")
    return payload


def _event(result: object) -> VisionEvent:
    assert isinstance(result, VisionEvent), result
    return result


def test_deepstream_message_fields_reach_the_event_by_route_format_and_by_detection() -> None:
    captured = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=337000)
    payload = _deepstream(captured)
    for fmt in ("deepstream", "auto"):
        event = _event(normalizer(ROUTES.replace("FMT", fmt)).normalize(message("deepstream/cam", payload)))
        assert event.timestamp == captured
        assert event.stream_id == "CAMERA_ID"
        assert event.event_data == {"value": "vehicle", "externalId": payload["messageid"]}
        assert event.custom_metadata.get("license") == "XX1234"


def test_deepstream_event_id_follows_the_publisher_message_id() -> None:
    payload = _deepstream(datetime.now(UTC) - timedelta(minutes=1))
    table = ROUTES.replace("FMT", "deepstream")
    first = _event(normalizer(table).normalize(message("deepstream/cam", payload)))
    again = _event(normalizer(table).normalize(message("deepstream/cam", payload)))
    other = _event(normalizer(table).normalize(message("deepstream/cam", {**payload, "messageid": "m-2"})))
    assert first.event_id == again.event_id
    assert first.event_id != other.event_id


FRIGATE_ROUTES = """
routes:
  - name: frigate-events
    match: "frigate/events"
    format: FMT
    event_type: custom
    use_case: doorbell
    fields:
      custom_value: person
  - name: frigate-updates
    match: "frigate/tracked_object_update"
    format: FMT
    event_type: custom
    use_case: doorbell
    fields:
      custom_value: plate
  - name: frigate-counts
    match: "frigate/{camera}/{object}"
    format: frigate
    event_type: inventory_count
    use_case: doorbell
  - name: auto-counts
    match: "auto/{camera}/{object}"
    event_type: inventory_count
    use_case: doorbell
"""


def _frigate(name: str, time_key: str, captured: datetime) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    target = payload.get("after", payload)
    target[time_key] = captured.timestamp()
    return payload


def test_frigate_event_fields_reach_the_event_by_route_format_and_by_detection() -> None:
    captured = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=250000)
    payload = _frigate("frigate_events_update.json", "frame_time", captured)
    for fmt in ("frigate", "auto"):
        event = _event(
            normalizer(FRIGATE_ROUTES.replace("FMT", fmt)).normalize(message("frigate/events", payload))
        )
        assert event.timestamp == captured
        assert event.stream_id == "front_door"
        assert event.event_data == {"value": "person", "externalId": "1607123955.475377-mxklsc"}
        assert event.custom_metadata["tracking_id"] == "1607123955.475377-mxklsc"
        assert event.custom_metadata["frigate_type"] == "update"
    table = FRIGATE_ROUTES.replace("FMT", "frigate")
    first = _event(normalizer(table).normalize(message("frigate/events", payload)))
    again = _event(normalizer(table).normalize(message("frigate/events", payload)))
    ended = _event(normalizer(table).normalize(message("frigate/events", {**payload, "type": "end"})))
    assert first.event_id == again.event_id != ended.event_id


def test_frigate_update_with_a_timestamp_key_is_not_read_as_an_envelope() -> None:
    captured = (datetime.now(UTC) - timedelta(minutes=2)).replace(microsecond=500000)
    payload = _frigate("frigate_tracked_object_update_lpr.json", "timestamp", captured)
    table = FRIGATE_ROUTES.replace("FMT", "auto")
    event = _event(normalizer(table).normalize(message("frigate/tracked_object_update", payload)))
    assert event.timestamp == captured
    assert event.stream_id == "driveway_cam"
    assert event.custom_metadata["license_plate"] == "123ABC"


def test_frigate_count_topic_becomes_an_item_count_only_where_the_route_names_frigate() -> None:
    table = normalizer(FRIGATE_ROUTES.replace("FMT", "frigate"))
    event = _event(table.normalize(message("frigate/front_door/person", b"2")))
    assert event.event_data == {"itemCount": 2, "itemType": "person"}
    with pytest.raises(MessageError) as info:
        table.normalize(message("frigate/front_door/person", b"-3"))
    assert info.value.reason is Reason.INVALID_VALUE
    # A bare number on a route without the format is never guessed to be a Frigate count.
    with pytest.raises(MessageError) as info:
        table.normalize(message("auto/front_door/person", b"2"))
    assert info.value.reason is Reason.NOT_AN_OBJECT


AXIS_ROUTES = """
routes:
  - name: axis
    match: "axis/{camera}/#"
    format: FMT
    event_type: custom
    use_case: scene
    fields:
      custom_value: frame
"""


def test_axis_v1_frame_is_detected_despite_its_timestamp_and_needs_an_image_size() -> None:
    captured = (datetime.now(UTC) - timedelta(minutes=3)).replace(microsecond=320111)
    payload: dict[str, Any] = json.loads((FIXTURES / "axis_scene_frame_v1.json").read_text())
    payload["timestamp"] = captured.isoformat().replace("+00:00", "Z")
    for fmt in ("axis", "auto"):
        table = normalizer(AXIS_ROUTES.replace("FMT", fmt))
        # Normalized boxes and no image size from the message or the route: refused, never half-converted.
        with pytest.raises(MessageError) as info:
            table.normalize(message("axis/cam1/frame", payload))
        assert info.value.reason is Reason.INVALID_PREDICTIONS
        assert info.value.path == "detections[0].bounding_box"
        event = _event(table.normalize(message("axis/cam1/frame", {**payload, "detections": []})))
        assert event.timestamp == captured
        assert event.stream_id == "1"
