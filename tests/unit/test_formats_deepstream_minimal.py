"""DeepStream minimal schema (payload-type 1): spec examples, the object-string grammar and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from consumer.errors import MessageError, Reason
from consumer.formats import ConvertOptions, PredictionFormat, convert_predictions, detect_format
from tests.support.messages import sample_payloads

EDGE = Path(__file__).parent / "fixtures" / "edge"
MINIMAL = PredictionFormat.DEEPSTREAM_MINIMAL


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EDGE / name).read_text())
    return data


def _frame(*objects: Any, **extra: Any) -> dict[str, Any]:
    return {
        "version": "4.0",
        "id": "12",
        "@timestamp": "2025-11-20T10:09:12.015Z",
        "sensorId": "cam-1",
        "objects": list(objects),
        **extra,
    }


def _convert(frame: dict[str, Any], options: ConvertOptions | None = None) -> Any:
    return convert_predictions(frame, MINIMAL, path="", options=options or ConvertOptions())


def test_spec_framemeta_example_converts_per_rules() -> None:
    message = _load("deepstream_minimal_dsmeta_untracked.json")
    assert detect_format(message) is MINIMAL
    out = convert_predictions(message, path="")
    boxes = out.annotations["objectDetections"]
    assert [b["class"] for b in boxes] == ["car", "person", "car"]
    assert boxes[0]["x"] == pytest.approx(1118.585)
    assert boxes[0]["y"] == pytest.approx(559.7015)
    assert boxes[0]["width"] == pytest.approx(144.47)
    assert boxes[0]["height"] == pytest.approx(92.855)
    # No trailing confidence on the first two (FrameMeta path without classifiers): rule R3 gives 0.0.
    assert [b["confidence"] for b in boxes] == [0.0, 0.0, 0.543945]
    assert out.annotations["classifications"] == [
        {"class": "white", "confidence": 0.0},
        {"class": "sedan", "confidence": 0.0},
    ]
    assert out.values == {"timestamp": "2025-11-20T10:09:12.015000Z", "stream_id": "CAMERA_ID"}
    # Untracked objects (UNTRACKED_OBJECT_ID) give no tracking ids; the frame number is metadata only.
    assert out.metadata == {"frame_id": "240"}
    assert "external_id" not in out.values


def test_nvidia_vehicle_example_names_positional_attributes() -> None:
    out = convert_predictions(_load("deepstream_minimal_eventmsg_vehicle.json"), path="")
    assert out.annotations["objectDetections"] == [
        {"class": "Vehicle", "x": 1876.0, "y": 182.5, "width": 84.0, "height": 65.0, "confidence": 0.8}
    ]
    assert [c["class"] for c in out.annotations["classifications"]] == ["sedan", "Bugatti", "M", "blue"]
    assert out.metadata == {
        "frame_id": "957",
        "obj0_license": "CA 444",
        "obj0_license_state": "California",
        "tracking_ids": "957",
    }
    assert out.context["tracking_ids"] == "957"


def test_attribute_count_that_does_not_match_the_type_reads_as_classifier_labels() -> None:
    # A FrameMeta label "Vehicle" with two classifier labels: not the typed layout (Q9).
    out = _convert(_frame("4|0|0|10|10|Vehicle|#|CA 444|red|0.5"))
    assert [c["class"] for c in out.annotations["classifications"]] == ["CA 444", "red"]
    assert "obj0_license" not in out.metadata


def test_filler_without_attributes_and_confidence_always_written() -> None:
    out = _convert(_frame("5|10|20|30|40|Bag" + "|#||||||" + "|0.5"))
    assert out.annotations == {
        "objectDetections": [
            {"class": "Bag", "x": 20.0, "y": 30.0, "width": 20.0, "height": 20.0, "confidence": 0.5}
        ]
    }


def test_pose_section_gives_keypoints_with_joint_table_ids() -> None:
    pose = "|#|pose2D|nose,150.000000,60.000000,0.900000|neck,150.000000,90.000000,0.000000|"
    pose += "left-ear,160.000000,58.000000,0.800000|"
    out = _convert(_frame("7|100|50|200|350|Person|#|male|30|black|none|jeans" + pose + "|0.87"))
    (person,) = out.annotations["keypoints"]
    assert person["confidence"] == 0.87
    # nose = 0 and left-ear = 17 in _joint_maps pose2D; the zero-score neck is left out.
    assert person["keypoints"] == [{"id": 0, "x": 150.0, "y": 60.0}, {"id": 17, "x": 160.0, "y": 58.0}]
    assert [c["class"] for c in out.annotations["classifications"]] == ["male", "black", "none", "jeans"]
    assert out.metadata["obj0_age"] == "30"


def test_pose25d_uses_its_own_table_and_pose3d_is_not_image_keypoints() -> None:
    joints = "|#|pose25D|pelvis,10,20,5,0.9|right-thumb-tip,30,40,5,0.7|"
    out = _convert(_frame("7|0|0|100|100|Person|#|male|30|black|none|jeans" + joints + "|0.5"))
    assert out.annotations["keypoints"][0]["keypoints"] == [
        {"id": 0, "x": 10.0, "y": 20.0},
        {"id": 33, "x": 30.0, "y": 40.0},
    ]
    world = "|#|pose3D|pelvis,1000,2000,500,0.9|"
    out = _convert(_frame("7|0|0|100|100|Person|#|male|30|black|none|jeans" + world + "|0.5"))
    assert "keypoints" not in out.annotations
    assert len(out.annotations["objectDetections"]) == 1


@pytest.mark.parametrize(
    "tail",
    [
        "|#|embedding|0.1,0.2,0.3|",
        "#|SV3DT|0.9|1,2|3,4|1,2,3,4|",
        "|#|embedding|0.1|#|SV3DT|0.9|1,2|3,4|1,2|",
    ],
)
def test_embedding_and_sv3dt_tails_are_cut(tail: str) -> None:
    out = _convert(_frame("9|0|0|10|10|car|#||||||" + "|0.25" + tail))
    assert out.annotations["objectDetections"][0]["confidence"] == 0.25
    assert out.metadata["tracking_ids"] == "9"


def test_masks_match_objects_by_tracking_id_relative_to_the_box() -> None:
    frame = _frame(
        "3|100|100|200|200|Person|#|male|30|black|none|jeans|0.9",
        "4|0|0|10|10|Bag|#||||||" + "|0.4",
        masks=["3|2|0|0|1|0|1|1|#|0|0|10|0|10|10"],
    )
    out = _convert(frame)
    (segment,) = out.annotations["instanceSegmentations"]
    assert segment["points"] == [[100.0, 100.0], [110.0, 100.0], [110.0, 110.0]]
    assert [b["class"] for b in out.annotations["objectDetections"]] == ["Bag"]
    assert out.metadata["tracking_ids"] == "3,4"


def test_dummy_object_and_empty_frame_are_well_formed_nothing() -> None:
    assert _convert(_frame("")).annotations == {}
    out = _convert(_frame())
    assert out.annotations == {}
    assert out.values["stream_id"] == "cam-1"


def test_default_confidence_applies_only_to_missing_scores() -> None:
    out = _convert(
        _frame("1|0|0|10|10|car", "2|0|0|10|10|car|#|red|0.3"), ConvertOptions(default_confidence=1.0)
    )
    assert [b["confidence"] for b in out.annotations["objectDetections"]] == [1.0, 0.3]


def test_tracker_only_negative_confidence_is_clamped() -> None:
    out = _convert(_frame("1|0|0|10|10|car|#|red|-0.1"))
    assert out.annotations["objectDetections"][0]["confidence"] == 0.0


@pytest.mark.parametrize(
    ("objects", "path", "words"),
    [
        (["1|2|3|car"], "objects[0]", "4 '|'-separated fields"),
        (["1|0|0|10|10|car", "1|nan|3|4|5|car"], "objects[1]", "not a finite number"),
        (["1|abc|3|4|5|car"], "objects[0]", "left: 'abc' is not a number"),
        (["1|||||car"], "objects[0]", "left: '' is not a number"),
        (["1|1_0|3|4|5|car"], "objects[0]", "not a number"),
        (["1|2|3|4|5|car|#|red|nan"], "objects[0]", "confidence: 'nan' is not a finite number"),
        (["1|2|3|4|5|car|junk"], "objects[0]", "expected '#'"),
        (["1|2|3|4|5|Person|#|a|#|pose2D|nose,1,2|"], "objects[0]", "has 3 parts"),
        (["1|2|3|4|5|Person|#|a|#|pose2D|tail,1,2,0.5|"], "objects[0]", "not a pose2D joint"),
        (["1|2|3|4|5|car|#|a|#|b"], "objects[0]", "unexpected '#' section"),
    ],
)
def test_malformed_object_refuses_the_whole_frame(objects: list[str], path: str, words: str) -> None:
    with pytest.raises(MessageError) as info:
        _convert(_frame(*objects))
    assert info.value.reason is Reason.INVALID_PREDICTIONS
    assert info.value.path == path
    assert words in info.value.detail


@pytest.mark.parametrize(
    ("frame", "reason", "path"),
    [
        ({"version": "4.0", "sensorId": "c"}, Reason.MISSING_FIELD, "objects"),
        (_frame(**{"objects": "1|2|3|4|5|car"}), Reason.INVALID_TYPE, "objects"),
        (_frame("1|0|0|1|1|car", 5), Reason.INVALID_TYPE, "objects[1]"),
        (_frame("1|0|0|1|1|car", masks=["9|1|0|0|1|0|1|1"]), Reason.INVALID_PREDICTIONS, "masks"),
        (_frame("1|0|0|1|1|car", masks=["1|2|0|0|1|0|1|1"]), Reason.INVALID_PREDICTIONS, "masks[0]"),
        (_frame("1|0|0|1|1|car", masks=["1|1|0|0|1"]), Reason.INVALID_PREDICTIONS, "masks[0]"),
        (_frame("1|0|0|1|1|car", **{"@timestamp": "soon"}), Reason.INVALID_VALUE, "@timestamp"),
    ],
)
def test_bad_frame_fields_are_typed_errors(frame: dict[str, Any], reason: Reason, path: str) -> None:
    with pytest.raises(MessageError) as info:
        _convert(frame)
    assert info.value.reason is reason
    assert info.value.path == path


def test_error_paths_follow_the_caller_path() -> None:
    with pytest.raises(MessageError) as info:
        convert_predictions(_frame("1|x|0|1|1|car"), MINIMAL, path="predictions")
    assert info.value.path == "predictions.objects[0]"


def test_stream_id_loses_credentials() -> None:
    out = _convert(_frame(sensorId="rtsp://admin:secret@10.0.0.5/stream1"))
    assert out.values["stream_id"] == "rtsp://10.0.0.5/stream1"
    assert "secret" not in json.dumps(out.context)


def test_detection_is_not_confused_with_other_shapes() -> None:
    full = _load("deepstream_full_test4_vehicle.json")
    assert detect_format(full) is PredictionFormat.DEEPSTREAM
    # DL Streamer frames also have "objects", as dicts; without version 4.0 and sensorId it is not minimal.
    assert detect_format({"objects": [{"x": 1, "y": 2, "w": 3, "h": 4}], "resolution": {}}) is not MINIMAL
    assert detect_format({"version": "4.0", "objects": ["1|0|0|1|1|car"]}) is not MINIMAL
    assert detect_format({**_frame("1|0|0|1|1|car"), "event_type": "custom"}) is None  # our envelope
    for payload in sample_payloads(excluding=("deepstream/plant-1/frames",)):
        assert detect_format(payload) is not MINIMAL
