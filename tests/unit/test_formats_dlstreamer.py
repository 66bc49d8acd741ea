"""DL Streamer gvametaconvert JSON and the Pipeline Server wrapper: spec examples, rules and bad input."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from consumer.errors import MessageError, Reason
from consumer.formats import ConvertOptions, PredictionFormat, convert_predictions, detect_format
from tests.support.images import jpeg_bytes
from tests.support.messages import sample_payloads

EDGE = Path(__file__).parent / "fixtures" / "edge"
DLS = PredictionFormat.DLSTREAMER


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EDGE / name).read_text())
    return data


def _convert(message: Any, options: ConvertOptions | None = None) -> Any:
    return convert_predictions(message, DLS, path="", options=options or ConvertOptions())


def test_verbatim_person_frame_converts_per_rules() -> None:
    message = _load("dlstreamer_person_verbatim.json")
    assert detect_format(message) is DLS
    out = convert_predictions(message, path="")
    # x,y,w,h (top-left + size, pixels) win over the normalized box: rule R1.
    assert out.annotations == {
        "objectDetections": [
            {
                "class": "person",
                "x": 550.5,
                "y": 381.5,
                "width": 51.0,
                "height": 97.0,
                "confidence": 0.93408203125,
            }
        ]
    }
    assert (out.image_width, out.image_height) == (768, 432)
    # The stream-relative "timestamp" is never the event time.
    assert "timestamp" not in out.values
    assert out.metadata == {"stream_time_ns": 1916666666}
    assert out.values["stream_id"].startswith("https://github.com/intel-iot-devkit/")


def test_vehicle_attributes_tags_and_credentials() -> None:
    # The pipeline-server README output, with an RTSP source holding credentials and tags added.
    out = convert_predictions(_load("dlstreamer_vehicle_attributes_tags.json"), path="")
    (box,) = out.annotations["objectDetections"]
    assert (box["class"], box["x"], box["y"], box["width"], box["height"]) == (
        "vehicle",
        62.0,
        103.5,
        124.0,
        103.0,
    )
    # Attributes without confidence (older releases): R4 gives 0.0; the attribute name is dropped.
    assert out.annotations["classifications"] == [
        {"class": "white", "confidence": 0.0},
        {"class": "car", "confidence": 0.0},
    ]
    assert out.values["stream_id"] == "rtsp://192.168.1.20:554/stream1"
    assert "hunter2" not in json.dumps([out.values, out.metadata, out.context])
    assert out.metadata == {
        "stream_time_ns": 48500000000,
        "tag_camera_location": "parking_lot",
        "tag_direction": "east",
    }


def test_normalized_box_uses_resolution_then_route_size_else_refuses() -> None:
    frame = {
        "objects": [
            {
                "detection": {
                    "bounding_box": {"x_min": 0.1, "y_min": 0.2, "x_max": 0.3, "y_max": 0.6},
                    "label": "cup",
                }
            }
        ],
        "resolution": {"width": 1000, "height": 500},
    }
    box = _convert(frame).annotations["objectDetections"][0]
    assert box["x"] == pytest.approx(200.0)
    assert box["y"] == pytest.approx(200.0)
    assert box["width"] == pytest.approx(200.0)
    assert box["height"] == pytest.approx(200.0)
    del frame["resolution"]
    box = _convert(frame, ConvertOptions(image_width=100, image_height=100)).annotations["objectDetections"][
        0
    ]
    assert (box["x"], box["y"]) == pytest.approx((20.0, 40.0))
    with pytest.raises(MessageError) as info:
        _convert(frame)
    assert info.value.reason is Reason.INVALID_PREDICTIONS
    assert info.value.path == "objects[0].detection.bounding_box"
    assert "image size" in info.value.detail


def test_full_frame_entry_gives_classifications_without_a_box() -> None:
    frame = {
        "objects": [
            {
                "x": 0,
                "y": 0,
                "w": 640,
                "h": 480,
                "scene": {"label": "indoor", "confidence": 0.7, "model": {"name": "m"}},
            }
        ],
        "resolution": {"width": 640, "height": 480},
    }
    out = _convert(frame)
    assert out.annotations == {"classifications": [{"class": "indoor", "confidence": 0.7}]}


def test_keypoint_tensor_is_relative_to_the_box() -> None:
    tensor = {
        "type": "keypoints",
        "format": "body-pose/coco-17",
        "dims": [2, 2],
        "data": [0.5, 0.0, 1.0, 1.0],
    }
    frame = {
        "objects": [
            {
                "x": 100,
                "y": 50,
                "w": 20,
                "h": 40,
                "roi_type": "person",
                "detection": {
                    "bounding_box": {"x_min": 0, "y_min": 0, "x_max": 1, "y_max": 1},
                    "confidence": 0.9,
                },
                "tensors": [{"name": "detection"}, tensor],
            }
        ],
        "resolution": {"width": 640, "height": 480},
    }
    (person,) = _convert(frame).annotations["keypoints"]
    assert person["keypoints"] == [{"id": 0, "x": 110.0, "y": 50.0}, {"id": 1, "x": 120.0, "y": 90.0}]


def test_system_timestamp_is_capture_time_in_both_forms_and_rtp_is_next() -> None:
    base = _load("dlstreamer_person_verbatim.json")
    utc = {**base, "system_timestamp": "2026-03-01T10:00:00.123Z"}
    assert _convert(utc).values["timestamp"] == "2026-03-01T10:00:00.123000Z"
    local = {**base, "system_timestamp": "2026-03-01T11:00:00.123:+0100"}
    assert _convert(local).values["timestamp"] == "2026-03-01T10:00:00.123000Z"
    micro = {**base, "system_timestamp": "2026-03-01T04:30:00.123456:-0530"}
    assert _convert(micro).values["timestamp"] == "2026-03-01T10:00:00.123456Z"
    rtp = {**base, "rtp": {"sender_ntp_unix_timestamp_ns": 1772359200123456789}}
    assert _convert(rtp).values["timestamp"] == "2026-03-01T10:00:00.123456Z"


def test_tracking_ids_in_object_order_untracked_left_out() -> None:
    box = {"x": 0, "y": 0, "w": 1, "h": 1, "roi_type": "car"}
    frame = {"objects": [{**box, "id": 4}, box, {**box, "id": 9}], "resolution": {"width": 2, "height": 2}}
    out = _convert(frame)
    assert out.metadata["tracking_ids"] == "4,9"
    assert out.context["tracking_ids"] == "4,9"


def test_pipeline_server_wrapper_unwraps_and_keeps_its_fields() -> None:
    message = _load("dlstreamer_pipeline_server_mqtt.json")
    assert detect_format(message) is DLS
    out = convert_predictions(message, path="")
    assert out.annotations["objectDetections"] == [
        {"class": "defect", "x": 720.0, "y": 675.0, "width": 480.0, "height": 270.0, "confidence": 0.8}
    ]
    assert out.values == {"external_id": "Q7ZP2M4K1A", "timestamp": "2025-11-20T11:12:13.456789Z"}
    assert "input_image" not in out.values  # an empty blob: the frame was not published
    assert out.metadata == {
        "stream_time_ns": 4033333333,
        "tracking_ids": "7",
        "pipeline_name": "user_defined_pipelines",
        "pipeline_version": "pallet_defect_detection",
        "pipeline_instance_id": "a1b2c3",
        "frame_id": 121,
    }


def test_pipeline_server_blob_is_the_input_image() -> None:
    message = _load("dlstreamer_pipeline_server_mqtt.json")
    message["blob"] = base64.b64encode(jpeg_bytes()).decode()
    out = _convert(message)
    assert out.values["input_image"] == {"base64": message["blob"]}


def test_pipeline_server_size_without_resolution() -> None:
    message = _load("dlstreamer_pipeline_server_mqtt.json")
    del message["metadata"]["resolution"]
    out = _convert(message)
    assert (out.image_width, out.image_height) == (1920, 1080)
    assert out.annotations["objectDetections"][0]["x"] == 720.0


def test_multi_stream_batch_is_refused_with_a_clear_reason() -> None:
    batch = {"source": "s", "timestamp": 1, "streams": [{"stream_index": 0, "stream_id": 0, "objects": []}]}
    assert detect_format(batch) is DLS
    with pytest.raises(MessageError) as info:
        convert_predictions(batch, path="")
    assert info.value.reason is Reason.INVALID_PREDICTIONS
    assert info.value.path == "streams"
    assert "several images" in info.value.detail


def test_empty_frame_is_well_formed_nothing() -> None:
    out = _convert({"objects": [], "resolution": {"width": 640, "height": 480}, "timestamp": 0})
    assert out.annotations == {}


def _person() -> dict[str, Any]:
    return copy.deepcopy(_load("dlstreamer_person_verbatim.json"))


@pytest.mark.parametrize(
    ("mutate", "reason", "path"),
    [
        (lambda m: m["objects"][0].update(x="525"), Reason.INVALID_TYPE, "objects[0].x"),
        (lambda m: m["objects"][0].update(w=float("nan")), Reason.NON_FINITE_NUMBER, "objects[0].w"),
        (lambda m: m["objects"][0].pop("h"), Reason.MISSING_FIELD, "objects[0].h"),
        (
            lambda m: (
                [m["objects"][0].pop(k) for k in "xywh"] and m["objects"][0]["detection"].pop("bounding_box")
            ),
            Reason.MISSING_FIELD,
            "objects[0].detection.bounding_box",
        ),
        (
            lambda m: m["objects"][0]["detection"].update(confidence="high"),
            Reason.INVALID_TYPE,
            "objects[0].detection.confidence",
        ),
        (lambda m: m["objects"][0].update(id="7"), Reason.INVALID_TYPE, "objects[0].id"),
        (lambda m: m["objects"].append("person"), Reason.INVALID_TYPE, "objects[1]"),
        (lambda m: m.update(objects={"a": 1}), Reason.INVALID_TYPE, "objects"),
        (lambda m: m.update(timestamp="1s"), Reason.INVALID_TYPE, "timestamp"),
        (lambda m: m.update(system_timestamp="yesterday"), Reason.INVALID_VALUE, "system_timestamp"),
        (
            lambda m: m.update(resolution={"width": "wide", "height": 1}),
            Reason.INVALID_TYPE,
            "resolution.width",
        ),
        (
            lambda m: m["objects"][0].update(tensors=[{"type": "keypoints", "dims": [2, 2], "data": [0.1]}]),
            Reason.INVALID_PREDICTIONS,
            "objects[0].tensors[0].data",
        ),
    ],
)
def test_bad_input_is_a_typed_error_with_path(mutate: Any, reason: Reason, path: str) -> None:
    message = _person()
    mutate(message)
    with pytest.raises(MessageError) as info:
        _convert(message)
    assert info.value.reason is reason
    assert info.value.path == path


def test_bad_blob_in_wrapper_is_a_typed_error() -> None:
    message = _load("dlstreamer_pipeline_server_mqtt.json")
    message["blob"] = 12
    with pytest.raises(MessageError) as info:
        _convert(message)
    assert info.value.path == "blob"


def test_detection_is_not_confused_with_other_shapes() -> None:
    assert detect_format(_load("deepstream_full_test4_vehicle.json")) is PredictionFormat.DEEPSTREAM
    assert (
        detect_format(_load("deepstream_minimal_eventmsg_vehicle.json"))
        is PredictionFormat.DEEPSTREAM_MINIMAL
    )
    assert detect_format({**_person(), "event_type": "custom"}) is None  # our envelope
    assert detect_format({"metadata": {"a": 1}, "blob": ""}) is None
    # "timestamp" is an envelope field too: with any other envelope field it stays an envelope.
    assert detect_format({**_person(), "stream_id": "cam"}) is None
    assert detect_format({"timestamp": "2026-01-01T00:00:00Z", "objects": []}) is None
    for payload in sample_payloads(excluding=("dlstreamer/", "dlsps/")):
        assert detect_format(payload) is not DLS
