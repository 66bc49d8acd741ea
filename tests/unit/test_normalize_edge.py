"""Edge-stack messages through the normalizer: the message's own fields reach the event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from consumer.errors import MessageError, Reason
from consumer.formats import PredictionFormat, detect_format
from consumer.model import VisionEvent
from tests.support.messages import message, normalizer, sample_payloads

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


MINIMAL_ROUTES = """
routes:
  - name: deepstream-minimal
    match: "deepstream/{camera}"
    format: FMT
    event_type: custom
    use_case: traffic
    fields:
      custom_value: frame
"""


def test_deepstream_minimal_fields_reach_the_event_by_route_format_and_by_detection() -> None:
    captured = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=15000)
    payload: dict[str, Any] = json.loads((FIXTURES / "deepstream_minimal_eventmsg_vehicle.json").read_text())
    payload["@timestamp"] = captured.isoformat().replace("+00:00", "Z")
    for fmt in ("deepstream_minimal", "auto"):
        table = MINIMAL_ROUTES.replace("FMT", fmt)
        event = _event(normalizer(table).normalize(message("deepstream/cam", payload)))
        assert event.timestamp == captured
        assert event.stream_id == "sensor-0"
        assert event.event_data == {"value": "frame"}  # the frame number is no external id
        assert event.custom_metadata["frame_id"] == "957"
        assert event.custom_metadata["tracking_ids"] == "957"
        assert event.custom_metadata["obj0_license"] == "CA 444"


DLS_ROUTES = """
routes:
  - name: dlstreamer
    match: "dlstreamer/{camera}"
    format: FMT
    event_type: custom
    use_case: retail
    fields:
      custom_value: frame
"""


def test_dlstreamer_capture_time_reaches_the_event_never_the_stream_time() -> None:
    captured = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=123000)
    payload: dict[str, Any] = json.loads((FIXTURES / "dlstreamer_vehicle_attributes_tags.json").read_text())
    payload["system_timestamp"] = captured.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    for fmt in ("dlstreamer", "auto"):
        table = DLS_ROUTES.replace("FMT", fmt)
        event = _event(normalizer(table).normalize(message("dlstreamer/cam", payload)))
        assert event.timestamp == captured
        assert event.stream_id == "rtsp://192.168.1.20:554/stream1"
        assert event.custom_metadata["stream_time_ns"] == 48500000000
        assert event.custom_metadata["tag_camera_location"] == "parking_lot"
    # Without a capture time the receive time is used: the stream-relative "timestamp" is not a time.
    del payload["system_timestamp"]
    received = datetime.now(UTC).timestamp()
    event = _event(
        normalizer(DLS_ROUTES.replace("FMT", "auto")).normalize(
            message("dlstreamer/cam", payload, received_at=received)
        )
    )
    assert event.timestamp == datetime.fromtimestamp(received, UTC)


def test_dlstreamer_pipeline_server_blob_is_the_event_input_image() -> None:
    import base64

    from tests.support.images import jpeg_bytes

    payload: dict[str, Any] = json.loads((FIXTURES / "dlstreamer_pipeline_server_mqtt.json").read_text())
    payload["blob"] = base64.b64encode(jpeg_bytes()).decode()
    payload["metadata"]["time"] = int((datetime.now(UTC) - timedelta(seconds=3)).timestamp() * 1e9)
    event = _event(
        normalizer(DLS_ROUTES.replace("FMT", "auto")).normalize(message("dlstreamer/cam", payload))
    )
    assert event.input_image is not None
    assert event.input_image.base64 == payload["blob"]
    assert event.annotations["objectDetections"][0]["class"] == "defect"
    assert event.event_data == {"value": "frame", "externalId": "Q7ZP2M4K1A"}
    assert event.custom_metadata["pipeline_name"] == "user_defined_pipelines"


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("deepstream/plant-1/events", "deepstream"),
        ("deepstream/plant-1/frames", "deepstream_minimal"),
        ("dlstreamer/", "dlstreamer"),
        ("dlsps/", "dlstreamer"),
        ("frigate/events", "frigate"),
        ("axis/", "axis"),
    ],
)
def test_each_bundled_edge_sample_is_detected_as_its_own_format(prefix: str, expected: str) -> None:
    """The demo's edge samples, detected as the publisher sends them (Frigate counts need the route)."""
    everything = sample_payloads()
    others = sample_payloads(excluding=(prefix,))
    own = [payload for payload in everything if payload not in others]
    assert own
    assert {detect_format(payload) for payload in own} == {PredictionFormat(expected)}
