"""DeepStream full schema: spec examples, detection and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from consumer.errors import MessageError, Reason
from consumer.formats import PredictionFormat, convert_predictions, detect_format
from tests.support.messages import sample_payloads

EDGE = Path(__file__).parent / "fixtures" / "edge"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EDGE / name).read_text())
    return data


def test_test4_vehicle_converts_per_rules() -> None:
    message = _load("deepstream_full_test4_vehicle.json")
    assert detect_format(message) is PredictionFormat.DEEPSTREAM
    out = convert_predictions(message, path="")
    assert out.annotations["objectDetections"] == [
        {
            "class": "vehicle",
            "x": 1118.0,
            "y": 559.5,
            "width": 144.0,
            "height": 93.0,
            "confidence": 0.6904296875,
        }
    ]
    assert [c["class"] for c in out.annotations["classifications"]] == ["sedan", "Bugatti", "M", "blue"]
    assert out.values == {
        "timestamp": "2025-11-20T09:15:42.337000Z",
        "stream_id": "CAMERA_ID",
        "external_id": "8f6c3c6e-1111-4222-8333-444455556666",
        "event_id": "8f6c3c6e-1111-4222-8333-444455556666",
    }
    assert out.metadata == {"license": "XX1234", "license_state": "CA", "ds_event_type": "moving"}
    assert "tracking_id" not in out.context


def test_label_as_key_object_has_tracking_id_and_zero_confidence() -> None:
    message = _load("deepstream_full_test4_vehicle.json")
    message["object"] = {
        "id": "42",
        "car": {},
        "bbox": {"topleftx": 612, "toplefty": 488, "bottomrightx": 745, "bottomrighty": 571},
    }
    out = convert_predictions(message, PredictionFormat.DEEPSTREAM, path="")
    assert out.annotations["objectDetections"][0]["class"] == "car"
    assert out.annotations["objectDetections"][0]["confidence"] == 0.0
    assert out.metadata["tracking_id"] == "42"


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda m: m["object"]["bbox"].pop("topleftx"), "object.bbox.topleftx"),
        (lambda m: m["object"]["bbox"].update(toplefty=float("nan")), "object.bbox.toplefty"),
        (lambda m: m["object"].update(vehicle="sedan"), "object.vehicle"),
        (lambda m: m.update({"@timestamp": "yesterday"}), "@timestamp"),
    ],
)
def test_bad_input_is_a_typed_error_with_path(mutate: Any, path: str) -> None:
    message = _load("deepstream_full_test4_vehicle.json")
    mutate(message)
    with pytest.raises(MessageError) as info:
        convert_predictions(message, PredictionFormat.DEEPSTREAM, path="")
    assert info.value.path == path
    assert info.value.reason in set(Reason)


def test_existing_samples_are_not_taken_for_deepstream() -> None:
    for payload in sample_payloads(excluding=("deepstream/plant-1/events",)):
        assert detect_format(payload) is not PredictionFormat.DEEPSTREAM


def test_stream_id_loses_credentials_and_is_capped_stably() -> None:
    from consumer.formats.common import stream_id

    assert stream_id("rtsp://user:pw@cam:554/live", "s") == "rtsp://cam:554/live"
    long = "rtsp://cam/" + "a" * 400
    assert len(stream_id(long, "s")) == 256
    assert stream_id(long, "s") == stream_id(long, "s")
    assert stream_id(long, "s") != stream_id(long + "b", "s")


def _with_pose(pose: dict[str, Any]) -> dict[str, Any]:
    message = _load("deepstream_full_test4_vehicle.json")
    message["object"] = {
        "id": "3",
        "person": {"confidence": 0.9},
        "bbox": {"topleftx": 0, "toplefty": 0, "bottomrightx": 100, "bottomrighty": 200},
        "pose": pose,
    }
    return message


def test_pose2d_joint_ids_follow_nvidia_joint_maps() -> None:
    pose = {
        "nose": {"x": 50, "y": 10, "confidence": 0.9},
        "right-hip": {"x": 40, "y": 100, "confidence": 0.8},
        "left-ear": {"x": 55, "y": 8, "confidence": 0.7},
        "neck": {"x": 50, "y": 30, "confidence": 0},  # 6.2 wrote int scores; zero = not detected
    }
    out = convert_predictions(_with_pose(pose), PredictionFormat.DEEPSTREAM, path="")
    (person,) = out.annotations["keypoints"]
    # _joint_maps type 0 (pose2D): nose 0, right-hip 8, left-ear 17.
    assert person["keypoints"] == [
        {"id": 0, "x": 50.0, "y": 10.0},
        {"id": 8, "x": 40.0, "y": 100.0},
        {"id": 17, "x": 55.0, "y": 8.0},
    ]


def test_pose_with_z_uses_the_pose25d_joint_table() -> None:
    pose = {
        "pelvis": {"x": 50, "y": 100, "z": 3, "confidence": 0.9},
        "left-hip": {"x": 55, "y": 100, "z": 3, "confidence": 0.9},
        "right-thumb-tip": {"x": 20, "y": 90, "z": 2, "confidence": 0.5},
    }
    out = convert_predictions(_with_pose(pose), PredictionFormat.DEEPSTREAM, path="")
    # _joint_maps type 1 (pose25D): pelvis 0, left-hip 1 (11 in pose2D), right-thumb-tip 33.
    assert [k["id"] for k in out.annotations["keypoints"][0]["keypoints"]] == [0, 1, 33]


def test_unknown_joint_name_is_a_typed_error() -> None:
    with pytest.raises(MessageError) as info:
        convert_predictions(
            _with_pose({"tail": {"x": 1, "y": 2, "confidence": 0.5}}), PredictionFormat.DEEPSTREAM, path=""
        )
    assert info.value.reason is Reason.INVALID_PREDICTIONS
    assert info.value.path == "object.pose.tail"
