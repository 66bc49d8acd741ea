"""Model outputs -> Vision Events annotations (consumer.formats; contract §4; docs/formats.md)."""

from __future__ import annotations

import copy
import math
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

import consumer.formats
from consumer.contract import MAX_ANNOTATIONS_PER_LIST
from consumer.errors import FormatError, MessageError, Reason, ValidationError
from consumer.formats import ModelOutput, PredictionFormat, convert_predictions, detect_format
from consumer.formats.common import DEFAULT_OPTIONS

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
BOX_KEYS = {"class", "x", "y", "width", "height", "confidence"}
AUTO = PredictionFormat.AUTO
ROBOFLOW = PredictionFormat.ROBOFLOW
WORKFLOW = PredictionFormat.WORKFLOW
ULTRALYTICS = PredictionFormat.ULTRALYTICS


def load(name: str) -> Any:
    return orjson.loads((FIXTURES / f"{name}.json").read_bytes())


def convert(value: Any, fmt: PredictionFormat = AUTO, path: str = "") -> ModelOutput:
    return convert_predictions(value, fmt, path=path)


def failure(value: Any, fmt: PredictionFormat = AUTO, path: str = "") -> MessageError:
    with pytest.raises(MessageError) as info:
        convert_predictions(value, fmt, path=path)
    return info.value


def box(**fields: Any) -> dict[str, Any]:
    """A Roboflow detection with defaults for the fields a test does not care about."""
    base: dict[str, Any] = {
        "x": 10.0,
        "y": 20.0,
        "width": 4.0,
        "height": 6.0,
        "confidence": 0.5,
        "class": "a",
    }
    base.update(fields)
    return base


def row(x1: float, y1: float, x2: float, y2: float, **fields: Any) -> dict[str, Any]:
    """An Ultralytics summary row."""
    base: dict[str, Any] = {
        "name": "a",
        "class": 0,
        "confidence": 0.5,
        "box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
    }
    base.update(fields)
    return base


# -- Roboflow inference server responses ----------------------------------------------------------


def test_roboflow_object_detection_keeps_center_boxes_and_drops_ids() -> None:
    out = convert(load("roboflow_object_detection"))
    assert out.format is ROBOFLOW
    assert (out.image_width, out.image_height) == (1280, 720)
    assert out.visualization_base64 is None
    assert out.annotations == {
        "objectDetections": [
            {"class": "person", "x": 412.5, "y": 300.0, "width": 85.0, "height": 210.0, "confidence": 0.912},
            {
                "class": "forklift",
                "x": 980.0,
                "y": 512.25,
                "width": 240.5,
                "height": 130.5,
                "confidence": 0.774,
            },
            {"class": "hardhat", "x": 60.0, "y": 44.0, "width": 20.0, "height": 16.0, "confidence": 0.41},
        ]
    }
    # Integer pixels in the input still go out as floats.
    hardhat = out.annotations["objectDetections"][2]
    assert all(type(hardhat[key]) is float for key in ("x", "y", "width", "height", "confidence"))


def test_roboflow_visualization_is_returned_for_the_output_image() -> None:
    response = load("roboflow_object_detection")
    response["visualization"] = (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg=="
    )
    out = convert(response)
    assert out.visualization_base64 == response["visualization"]


def test_roboflow_instance_segmentation_with_short_polygon_falls_back_to_a_detection() -> None:
    out = convert(load("roboflow_instance_segmentation"))
    assert out.annotations == {
        "instanceSegmentations": [
            {
                "class": "person",
                "x": 30.0,
                "y": 40.0,
                "width": 40.0,
                "height": 40.0,
                "confidence": 0.88,
                "points": [[10.0, 20.0], [50.0, 20.0], [50.0, 60.0], [10.0, 60.0]],
            }
        ],
        # Two points are no polygon: the prediction is kept, as a box.
        "objectDetections": [
            {"class": "scratch", "x": 300.5, "y": 200.5, "width": 3.0, "height": 1.0, "confidence": 0.52}
        ],
    }


def test_polygon_points_may_be_pairs() -> None:
    out = convert([box(points=[[1, 2], [3, 4], [5, 6.5]])], ROBOFLOW)
    assert out.annotations["instanceSegmentations"][0]["points"] == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.5]]


def test_roboflow_keypoints_use_the_keypoint_class_id_and_send_no_names_or_confidences() -> None:
    out = convert(load("roboflow_keypoints"))
    (person,) = out.annotations["keypoints"]
    assert set(person) == BOX_KEYS | {"keypoints"}
    assert person["keypoints"] == [
        {"id": 0, "x": 958.0, "y": 270.0},
        {"id": 1, "x": 948.5, "y": 260.0},
        {"id": 2, "x": 968.5, "y": 260.0},
        {"id": 3, "x": 930.0, "y": 265.0},
        {"id": 4, "x": 990.0, "y": 265.0},
    ]


def test_keypoint_id_falls_back_to_the_index() -> None:
    keypoints = [{"x": 1.0, "y": 2.0, "class_id": 7}, {"x": 3.0, "y": 4.0}]
    out = convert([box(keypoints=keypoints)], ROBOFLOW)
    assert out.annotations["keypoints"][0]["keypoints"] == [
        {"id": 7, "x": 1.0, "y": 2.0},
        {"id": 1, "x": 3.0, "y": 4.0},
    ]


def test_single_label_classification_sends_the_whole_distribution() -> None:
    out = convert(load("roboflow_classification"))
    assert out.format is ROBOFLOW
    assert out.annotations == {
        "classifications": [
            {"class": "scratched", "confidence": 0.8123},
            {"class": "ok", "confidence": 0.1502},
            {"class": "dented", "confidence": 0.0375},
        ]
    }


def test_single_label_with_no_scores_falls_back_to_top() -> None:
    out = convert({"image": {"width": 2, "height": 2}, "predictions": [], "top": "ok", "confidence": 0.9})
    assert out.annotations == {"classifications": [{"class": "ok", "confidence": 0.9}]}
    empty = convert({"image": {"width": 2, "height": 2}, "predictions": [], "top": "", "confidence": 0.0})
    assert empty.annotations == {}


def test_multi_label_sends_one_item_per_predicted_class() -> None:
    out = convert(load("roboflow_multilabel"))
    assert out.annotations == {
        "classifications": [
            {"class": "label_missing", "confidence": 0.91},
            {"class": "cap_loose", "confidence": 0.66},
        ]
    }


def test_multi_label_edge_cases() -> None:
    scores = {"a": {"confidence": 0.9, "class_id": 0}, "b": {"confidence": 0.2, "class_id": 1}}
    # Nothing predicted: nothing to send.
    assert convert({"predictions": scores, "predicted_classes": []}).annotations == {}
    # A predicted class with no score gets 0.0, as the Vision Events block does.
    missing = convert({"predictions": scores, "predicted_classes": ["c"]})
    assert missing.annotations == {"classifications": [{"class": "c", "confidence": 0.0}]}
    # Without predicted_classes every scored class is sent (contract §4.5 item 3).
    every = convert({"predictions": scores}, ROBOFLOW)
    assert [item["class"] for item in every.annotations["classifications"]] == ["a", "b"]


def test_classification_confidences_are_not_clamped_but_detections_are() -> None:
    classes = convert([{"class": "a", "confidence": 1.25}, {"class": "b", "confidence": -0.5}], ROBOFLOW)
    assert [c["confidence"] for c in classes.annotations["classifications"]] == [1.25, -0.5]
    boxes = convert(
        [box(confidence=1.7), box(confidence=-0.2), box(confidence=None), box(confidence=1)], ROBOFLOW
    )
    assert [b["confidence"] for b in boxes.annotations["objectDetections"]] == [1.0, 0.0, 0.0, 1.0]
    no_confidence = box()
    del no_confidence["confidence"]
    assert convert([no_confidence], ROBOFLOW).annotations["objectDetections"][0]["confidence"] == 0.0


def test_missing_class_is_unknown_and_a_numeric_class_becomes_text() -> None:
    nameless = box()
    del nameless["class"]
    out = convert([nameless, box(**{"class": 3})], ROBOFLOW)
    assert [b["class"] for b in out.annotations["objectDetections"]] == ["unknown", "3"]


def test_bare_predictions_list_as_the_envelope_sends_it() -> None:
    out = convert_predictions([box(), box(points=[{"x": 0, "y": 0}, {"x": 1, "y": 0}, {"x": 1, "y": 1}])])
    assert out.format is ROBOFLOW
    assert len(out.annotations["objectDetections"]) == 1
    assert len(out.annotations["instanceSegmentations"]) == 1


# -- Roboflow Workflows outputs ---------------------------------------------------------------------


def test_workflow_serialized_keypoints_drop_trailing_padding_slots() -> None:
    out = convert(load("workflow_keypoints_serialized"), WORKFLOW)
    first, second = out.annotations["keypoints"]
    assert [k["id"] for k in first["keypoints"]] == [0, 1, 2]
    assert second["keypoints"] == [{"id": 0, "x": 902.0, "y": 330.0}]
    assert set(second) == BOX_KEYS | {"keypoints"}  # no tracker_id, detection_id...


def test_detection_with_only_padding_keypoints_becomes_a_plain_detection() -> None:
    padding = {"class_id": 0, "class": "", "confidence": 0.0, "x": 0.0, "y": 0.0}
    out = convert([box(keypoints=[padding, padding])], ROBOFLOW)
    assert out.annotations == {"objectDetections": [box()]}


def test_workflow_run_response_merges_every_prediction_output() -> None:
    out = convert(load("workflow_run_response"))
    assert out.format is WORKFLOW
    assert (out.image_width, out.image_height) == (1920, 1080)
    assert out.visualization_base64 is None
    assert out.annotations == {
        "objectDetections": [
            {"class": "car", "x": 700.0, "y": 550.0, "width": 400.0, "height": 300.0, "confidence": 0.95},
            # Found on a crop at (500, 400): moved into the root image.
            {
                "class": "license_plate",
                "x": 700.0,
                "y": 650.0,
                "width": 90.0,
                "height": 30.0,
                "confidence": 0.87,
            },
        ],
        "classifications": [{"class": "sedan", "confidence": 0.7}, {"class": "suv", "confidence": 0.3}],
    }


def test_workflow_outputs_dict_without_the_http_wrapper() -> None:
    outputs = load("workflow_run_response")["outputs"][0]
    assert detect_format(outputs) is WORKFLOW
    assert convert(outputs).annotations == convert(load("workflow_run_response")).annotations


def test_workflow_output_named_predictions() -> None:
    serialized = load("workflow_run_response")["outputs"][0]["detections"]
    out = convert({"predictions": serialized, "count": 1})
    assert out.format is WORKFLOW
    assert out.annotations["objectDetections"][0]["class"] == "car"


def test_workflow_crop_translation_applies_to_polygons_and_keypoints() -> None:
    origin = {"offset_x": 100, "offset_y": 50, "width": 1000, "height": 800}
    keypoint = {"class_id": 5, "class": "wrist", "confidence": 0.9, "x": 1.0, "y": 2.0}
    crop = {
        "image": {"width": 200, "height": 200},
        "predictions": [
            box(points=[{"x": 0, "y": 0}, {"x": 4, "y": 0}, {"x": 4, "y": 4}], root_parent_origin=origin),
            box(keypoints=[keypoint], root_parent_origin=origin),
        ],
    }
    out = convert({"crops": [crop, None]}, WORKFLOW)
    segmentation = out.annotations["instanceSegmentations"][0]
    assert (segmentation["x"], segmentation["y"]) == (110.0, 70.0)
    assert segmentation["points"] == [[100.0, 50.0], [104.0, 50.0], [104.0, 54.0]]
    assert out.annotations["keypoints"][0]["keypoints"] == [{"id": 5, "x": 101.0, "y": 52.0}]
    # Crop outputs do not state the root image's size.
    assert (out.image_width, out.image_height) == (None, None)


def test_workflow_serialized_detections_without_image_size() -> None:
    serialized = {"image": {"width": None, "height": None}, "predictions": [box()]}
    assert detect_format(serialized) is WORKFLOW
    out = convert(serialized)
    assert (out.image_width, out.image_height) == (None, None)
    assert out.annotations == {"objectDetections": [box()]}


def test_workflow_response_with_several_images_is_refused() -> None:
    response = load("workflow_run_response")
    response["outputs"].append(response["outputs"][0])
    error = failure(response)
    assert isinstance(error, FormatError)
    assert (error.reason, error.path) == (Reason.INVALID_PREDICTIONS, "outputs")


def test_workflow_outputs_without_predictions_convert_to_nothing() -> None:
    assert convert({"outputs": [{"count": 3, "label": "x"}]}).annotations == {}
    assert convert({"outputs": []}).annotations == {}


# -- Ultralytics Results.to_json() ------------------------------------------------------------------


def test_ultralytics_xyxy_becomes_a_center_box() -> None:
    out = convert([row(10, 20, 50, 60, name="person", confidence=0.9, track_id=4)])
    assert out.format is ULTRALYTICS
    assert out.annotations == {
        "objectDetections": [
            {"class": "person", "x": 30.0, "y": 40.0, "width": 40.0, "height": 40.0, "confidence": 0.9}
        ]
    }


def test_xyxy_math_is_the_contracts_even_for_swapped_corners() -> None:
    # w = |x2 - x1|, x = x1 + w / 2 (contract §4.1), taken literally.
    (swapped,) = convert([row(50, 60, 10, 20)]).annotations["objectDetections"]
    assert (swapped["x"], swapped["y"], swapped["width"], swapped["height"]) == (70.0, 80.0, 40.0, 40.0)


def test_ultralytics_detect_fixture() -> None:
    person, bus = convert(load("ultralytics_detect")).annotations["objectDetections"]
    assert person["class"] == "person"  # the name, not the class id
    assert person["x"] == pytest.approx(22.87 + 782.13 / 2)
    assert person["y"] == pytest.approx(231.27 + 525.57 / 2)
    assert person["width"] == pytest.approx(782.13)
    assert person["height"] == pytest.approx(525.57)
    assert set(bus) == BOX_KEYS  # track_id is not sent


def test_ultralytics_segments_and_empty_mask_fallback() -> None:
    out = convert(load("ultralytics_segment"))
    (person,) = out.annotations["instanceSegmentations"]
    assert person["points"] == [[10.0, 20.0], [50.0, 20.0], [50.0, 60.0], [10.0, 60.0]]
    (tie,) = out.annotations["objectDetections"]
    assert tie == {"class": "tie", "x": 102.0, "y": 115.0, "width": 4.0, "height": 30.0, "confidence": 0.41}


def test_ultralytics_keypoints_drop_only_points_erased_to_the_origin() -> None:
    (person,) = convert(load("ultralytics_pose")).annotations["keypoints"]
    # Index 3 is (0, 0) with visibility 0.21: old Ultralytics erased its position. Index 4 is also
    # below 0.5 but keeps real coordinates (current Ultralytics), so it is sent.
    assert person["keypoints"] == [
        {"id": 0, "x": 201.5, "y": 110.0},
        {"id": 1, "x": 195.0, "y": 100.0},
        {"id": 2, "x": 208.0, "y": 100.0},
        {"id": 4, "x": 220.0, "y": 104.0},
    ]


def test_ultralytics_keypoints_without_visibility_are_all_sent() -> None:
    keypoints = {"x": [0.0, 12.0, 14.0], "y": [0.0, 30.0, 31.0]}
    (person,) = convert([row(10, 20, 50, 60, keypoints=keypoints)]).annotations["keypoints"]
    assert [k["id"] for k in person["keypoints"]] == [0, 1, 2]


def test_ultralytics_pose_with_every_keypoint_erased_becomes_a_plain_detection() -> None:
    keypoints = {"x": [0.0, 0.0], "y": [0.0, 0.0], "visible": [0.1, 0.2]}
    out = convert([row(10, 20, 50, 60, keypoints=keypoints)])
    assert list(out.annotations) == ["objectDetections"]
    assert "keypoints" not in out.annotations["objectDetections"][0]


def test_ultralytics_oriented_box_becomes_its_axis_aligned_bounds() -> None:
    corners = {
        "x1": 100.0,
        "y1": 50.0,
        "x2": 150.0,
        "y2": 100.0,
        "x3": 100.0,
        "y3": 150.0,
        "x4": 50.0,
        "y4": 100.0,
    }
    (obb,) = convert([{"name": "ship", "class": 1, "confidence": 0.8, "box": corners}]).annotations[
        "objectDetections"
    ]
    assert (obb["x"], obb["y"], obb["width"], obb["height"]) == (100.0, 100.0, 100.0, 100.0)


def test_ultralytics_classification_rows() -> None:
    out = convert(load("ultralytics_classify"))
    assert out.format is ULTRALYTICS
    classes = out.annotations["classifications"]
    assert classes[0] == {"class": "tabby", "confidence": 0.61}
    assert len(classes) == 5


def test_ultralytics_polars_rows_with_null_columns() -> None:
    # Current releases write JSON through a Polars DataFrame: absent keys become null columns.
    rows = [row(10, 20, 50, 60, track_id=None, segments=None, keypoints=None)]
    assert convert(rows).annotations == {
        "objectDetections": [
            {"class": "a", "x": 30.0, "y": 40.0, "width": 40.0, "height": 40.0, "confidence": 0.5}
        ]
    }


def test_ultralytics_normalized_coordinates_are_refused() -> None:
    error = failure([row(0.1, 0.2, 0.5, 0.6), row(0.0, 0.0, 1.0, 1.0)], path="predictions")
    assert isinstance(error, FormatError)
    assert (error.reason, error.path) == (Reason.INVALID_PREDICTIONS, "predictions")
    # One absolute box is enough to show the pixels are absolute.
    assert (
        convert([row(0.1, 0.2, 0.5, 0.6), row(0, 0, 2, 2)]).annotations["objectDetections"][0]["width"] == 0.4
    )


# -- the cap ----------------------------------------------------------------------------------------


def test_each_list_is_capped() -> None:
    at_cap = {"image": {"width": 9, "height": 9}, "predictions": [box()] * MAX_ANNOTATIONS_PER_LIST}
    assert len(convert(at_cap).annotations["objectDetections"]) == MAX_ANNOTATIONS_PER_LIST
    over = {"image": {"width": 9, "height": 9}, "predictions": [box()] * (MAX_ANNOTATIONS_PER_LIST + 1)}
    error = failure(over)
    assert isinstance(error, ValidationError)
    assert (error.reason, error.path) == (Reason.TOO_MANY, "predictions")


def test_cap_counts_each_list_separately() -> None:
    polygon = [[0, 0], [1, 0], [1, 1]]
    mixed = [box()] * MAX_ANNOTATIONS_PER_LIST + [box(points=polygon)] * MAX_ANNOTATIONS_PER_LIST
    out = convert(mixed, ROBOFLOW)
    assert len(out.annotations["objectDetections"]) == len(out.annotations["instanceSegmentations"])


def test_cap_applies_to_merged_workflow_outputs() -> None:
    half = {"image": {"width": 9, "height": 9}, "predictions": [box()] * 600}
    error = failure({"left": half, "right": half}, WORKFLOW, path="predictions")
    assert (error.reason, error.path) == (Reason.TOO_MANY, "predictions.right.predictions")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param([{"class": str(i), "confidence": 0.001} for i in range(1001)], id="roboflow-classes"),
        pytest.param([row(1, 1, 9, 9)] * 1001, id="ultralytics-rows"),
        pytest.param({"predictions": {str(i): {"confidence": 0.5} for i in range(1001)}}, id="multi-label"),
    ],
)
def test_cap_on_every_format(value: Any) -> None:
    assert failure(value).reason is Reason.TOO_MANY


# -- errors: reason and exact path ------------------------------------------------------------------


def _response(*predictions: Any) -> dict[str, Any]:
    return {"image": {"width": 640, "height": 480}, "predictions": list(predictions)}


ERROR_CASES = [
    pytest.param(
        _response(box(), box(confidence="high")),
        "predictions",
        Reason.INVALID_TYPE,
        "predictions.predictions[1].confidence",
        id="confidence-string",
    ),
    pytest.param(
        [box(x=True)], "predictions", Reason.INVALID_TYPE, "predictions[0].x", id="bool-is-no-number"
    ),
    pytest.param(
        [box(), {"x": 1.0, "y": 2.0, "height": 3.0}],
        "",
        Reason.MISSING_FIELD,
        "[1].width",
        id="missing-width",
    ),
    pytest.param([box(height=-1.0)], "", Reason.INVALID_VALUE, "[0].height", id="negative-height"),
    pytest.param([box(y=math.inf)], "", Reason.NON_FINITE_NUMBER, "[0].y", id="infinite"),
    pytest.param([box(x=10**400)], "", Reason.INVALID_VALUE, "[0].x", id="huge-integer"),
    pytest.param(
        _response(box(), box(), "oops"), "", Reason.INVALID_TYPE, "predictions[2]", id="not-an-object"
    ),
    pytest.param({"predictions": "none", "image": {}}, "", Reason.UNKNOWN_FORMAT, "", id="predictions-str"),
    pytest.param(
        _response(box(points=[{"x": 1, "y": 1}, {"x": 2, "y": "2"}, {"x": 3, "y": 3}])),
        "",
        Reason.INVALID_TYPE,
        "predictions[0].points[1].y",
        id="point-y",
    ),
    pytest.param(
        _response(box(points=[[1, 1], 7, [3, 3]])),
        "",
        Reason.INVALID_TYPE,
        "predictions[0].points[1]",
        id="point-not-pair",
    ),
    pytest.param(
        _response(box(keypoints=[{"x": 1, "y": 1, "class_id": "nose"}])),
        "",
        Reason.INVALID_TYPE,
        "predictions[0].keypoints[0].class_id",
        id="keypoint-id-type",
    ),
    pytest.param(
        _response(box(keypoints=[{"x": 1, "y": 1}, {"x": 1, "y": 1, "class_id": -1}])),
        "",
        Reason.INVALID_VALUE,
        "predictions[0].keypoints[1].class_id",
        id="keypoint-id-negative",
    ),
    pytest.param(
        {"predictions": {"cat": {"confidence": "x"}}, "predicted_classes": ["cat"]},
        "predictions",
        Reason.INVALID_TYPE,
        "predictions.predictions.cat.confidence",
        id="multi-label-confidence",
    ),
    pytest.param(
        {"predictions": {"cat": {"confidence": 0.9}}, "predicted_classes": "cat"},
        "",
        Reason.INVALID_TYPE,
        "predicted_classes",
        id="predicted-classes-type",
    ),
    pytest.param(
        {"predictions": [{"class": "a", "confidence": math.nan}], "top": "a", "confidence": 0.0},
        "",
        Reason.NON_FINITE_NUMBER,
        "predictions[0].confidence",
        id="class-confidence-nan",
    ),
    pytest.param(
        {"image": {"width": "640", "height": 480}, "predictions": []},
        "",
        Reason.INVALID_TYPE,
        "image.width",
        id="image-width",
    ),
    pytest.param(
        {"image": {"width": 6, "height": 4}, "predictions": [], "visualization": 5},
        "",
        Reason.INVALID_TYPE,
        "visualization",
        id="visualization",
    ),
    pytest.param(
        _response(box(root_parent_origin={"offset_y": 3})),
        "",
        Reason.MISSING_FIELD,
        "predictions[0].root_parent_origin.offset_x",
        id="crop-offset",
    ),
    pytest.param(
        [row(1, 2, 3, 4), {"name": "a", "confidence": 0.5, "box": {"x1": 1, "y1": 2, "y2": 4}}],
        "predictions",
        Reason.MISSING_FIELD,
        "predictions[1].box.x2",
        id="ultralytics-box",
    ),
    pytest.param(
        [row(1, 2, 30, 40, segments={"x": [1, 2, 3], "y": [1, 2]})],
        "",
        Reason.INVALID_PREDICTIONS,
        "[0].segments.y",
        id="ultralytics-segments-length",
    ),
    pytest.param(
        [row(1, 2, 30, 40, keypoints={"x": [1, 2], "y": [1, 2], "visible": [0.9, "yes"]})],
        "",
        Reason.INVALID_TYPE,
        "[0].keypoints.visible[1]",
        id="ultralytics-visible",
    ),
    pytest.param(
        [row(1, 2, 30, 40, keypoints={"x": [1, None], "y": [1, 2]})],
        "",
        Reason.MISSING_FIELD,
        "[0].keypoints.x[1]",
        id="ultralytics-keypoint-null",
    ),
    pytest.param(
        [row(1, 2, 30, 40), {"track_id": 3}],
        "",
        Reason.MISSING_FIELD,
        "[1].box",
        id="ultralytics-row-empty",
    ),
    pytest.param({"outputs": [7]}, "", Reason.INVALID_TYPE, "outputs[0]", id="workflow-outputs-element"),
    pytest.param({"a": 1}, "predictions", Reason.UNKNOWN_FORMAT, "predictions", id="unknown"),
    pytest.param("text", "predictions", Reason.UNKNOWN_FORMAT, "predictions", id="unknown-scalar"),
]


@pytest.mark.parametrize(("value", "path", "reason", "where"), ERROR_CASES)
def test_malformed_inputs_raise_typed_errors_with_the_field_path(
    value: Any, path: str, reason: Reason, where: str
) -> None:
    error = failure(value, path=path)
    assert error.reason is reason
    assert error.path == where
    expected_class = (
        FormatError if reason in (Reason.UNKNOWN_FORMAT, Reason.INVALID_PREDICTIONS) else ValidationError
    )
    assert isinstance(error, expected_class)


@pytest.mark.parametrize(
    ("value", "fmt", "where"),
    [
        pytest.param({"predictions": []}, ULTRALYTICS, "", id="ultralytics-wants-a-list"),
        pytest.param(load("ultralytics_detect"), ROBOFLOW, "[0].x", id="roboflow-given-ultralytics"),
        pytest.param([1, 2], WORKFLOW, "[0]", id="workflow-list-of-numbers"),
        pytest.param("x", ROBOFLOW, "", id="roboflow-given-text"),
        pytest.param({"predictions": "none"}, ROBOFLOW, "predictions", id="roboflow-predictions-text"),
        pytest.param(
            {"image": {"width": 1, "height": 1}}, ROBOFLOW, "predictions", id="roboflow-no-predictions"
        ),
    ],
)
def test_an_explicit_format_that_does_not_fit_is_an_error(
    value: Any, fmt: PredictionFormat, where: str
) -> None:
    error = failure(value, fmt)
    assert error.path == where
    assert error.reason in (Reason.INVALID_TYPE, Reason.MISSING_FIELD)


def test_detection_reads_only_the_first_element_and_conversion_checks_the_rest() -> None:
    value = [box(), "garbage"]
    assert detect_format(value) is ROBOFLOW
    error = failure(value, path="predictions")
    assert (error.reason, error.path) == (Reason.INVALID_TYPE, "predictions[1]")


def test_unexpected_library_errors_become_format_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(value: Any, path: str) -> ModelOutput:
        raise KeyError("x")

    monkeypatch.setattr(consumer.formats, "convert_roboflow", broken)
    error = failure([box()], ROBOFLOW, path="predictions")
    assert isinstance(error, FormatError)
    assert (error.reason, error.path) == (Reason.INVALID_PREDICTIONS, "predictions")


# -- detect_format ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("roboflow_object_detection", ROBOFLOW),
        ("roboflow_instance_segmentation", ROBOFLOW),
        ("roboflow_keypoints", ROBOFLOW),
        ("roboflow_classification", ROBOFLOW),
        ("roboflow_multilabel", ROBOFLOW),
        ("workflow_run_response", WORKFLOW),
        ("ultralytics_detect", ULTRALYTICS),
        ("ultralytics_segment", ULTRALYTICS),
        ("ultralytics_pose", ULTRALYTICS),
        ("ultralytics_classify", ULTRALYTICS),
    ],
)
def test_detect_format_on_each_fixture(name: str, expected: PredictionFormat) -> None:
    assert detect_format(load(name)) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(load("roboflow_object_detection")["predictions"], ROBOFLOW, id="bare-detections"),
        pytest.param(load("roboflow_classification")["predictions"], ROBOFLOW, id="bare-distribution"),
        pytest.param([], ROBOFLOW, id="empty-list"),
        pytest.param(
            {"prediction_type": "classification", **load("roboflow_classification")}, WORKFLOW, id="wf-cls"
        ),
        pytest.param([_response(box()), _response(box())], None, id="batch-of-responses"),
        pytest.param([1, 2, 3], None, id="numbers"),
        pytest.param([{"label": "a"}], None, id="unknown-rows"),
        pytest.param(
            {"count": 3, "image": {"type": "base64", "value": "AA=="}}, None, id="outputs-without-preds"
        ),
        pytest.param({}, None, id="empty-object"),
        pytest.param(None, None, id="null"),
        pytest.param(3.5, None, id="number"),
    ],
)
def test_detect_format_on_other_shapes(value: Any, expected: PredictionFormat | None) -> None:
    assert detect_format(value) is expected


@pytest.mark.parametrize(
    "envelope",
    [
        pytest.param(
            {
                "event_type": "quality_check",
                "use_case": "bottle-line",
                "qc_result": "fail",
                "predictions": load("roboflow_object_detection"),
                "input_image": {"url": "https://cam.local/frame.jpg"},
            },
            id="envelope-with-roboflow-predictions",
        ),
        pytest.param({"event_type": "custom", "predictions": [box()]}, id="event-type-and-bare-list"),
        pytest.param({"event_type": "custom"}, id="only-event-type"),
        pytest.param({"use_case": "x", "predictions": {"outputs": []}}, id="use-case-and-workflow"),
        pytest.param({"solution": "x", "detections": _response(box())}, id="solution-alias"),
    ],
)
def test_detect_format_is_none_for_envelope_messages(envelope: dict[str, Any]) -> None:
    assert detect_format(envelope) is None


def test_envelope_predictions_field_shapes_convert() -> None:
    for value, fmt in [
        (load("ultralytics_detect"), ULTRALYTICS),
        (load("roboflow_keypoints")["predictions"], ROBOFLOW),
        (load("roboflow_multilabel"), ROBOFLOW),
        (load("workflow_run_response")["outputs"][0], WORKFLOW),
    ]:
        out = convert_predictions(value, path="predictions")
        assert out.format is fmt
        assert out.annotations


# -- properties over every fixture and random damage ------------------------------------------------

FIXTURE_NAMES = sorted(path.stem for path in FIXTURES.glob("*.json"))


def check_annotations(out: ModelOutput) -> None:
    """The wire invariants: non-empty lists, only contract keys, finite floats, clamped detections."""
    assert out.format is not AUTO
    for key, items in out.annotations.items():
        assert key in {"objectDetections", "classifications", "instanceSegmentations", "keypoints"}
        assert 0 < len(items) <= MAX_ANNOTATIONS_PER_LIST
        for annotation in items:
            assert type(annotation["class"]) is str
            assert type(annotation["confidence"]) is float
            assert math.isfinite(annotation["confidence"])
            if key == "classifications":
                assert set(annotation) == {"class", "confidence"}
                continue
            extra = {"instanceSegmentations": {"points"}, "keypoints": {"keypoints"}}.get(key, set())
            assert BOX_KEYS <= set(annotation) <= BOX_KEYS | extra
            assert 0.0 <= annotation["confidence"] <= 1.0
            assert all(type(annotation[k]) is float and math.isfinite(annotation[k]) for k in ("x", "y"))
            assert annotation["width"] >= 0.0
            assert annotation["height"] >= 0.0
            if key == "instanceSegmentations":
                assert len(annotation["points"]) >= 3
            for point in annotation.get("keypoints", []):
                assert set(point) == {"id", "x", "y"}
                assert type(point["id"]) is int


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_fixture_converts_to_valid_annotations(name: str) -> None:
    out = convert(load(name))
    assert out.annotations
    check_annotations(out)


JUNK: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    7,
    0.5,
    -3.5,
    1e308,
    -1e308,
    2**70,
    math.nan,
    math.inf,
    "",
    "x",
    "0.5",
    [],
    [1],
    [1, 2],
    [[1, 2]],
    {},
    {"x": 1},
    {"predictions": []},
]


def _damage(value: Any, rng: random.Random) -> None:
    slots: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in list(node):
                slots.append((node, key))
                walk(node[key])
        elif isinstance(node, list):
            for index in range(len(node)):
                slots.append((node, index))
                walk(node[index])

    walk(value)
    if not slots:
        return
    container, key = rng.choice(slots)
    if isinstance(container, dict) and rng.random() < 0.25:
        del container[key]
    else:
        container[key] = copy.deepcopy(rng.choice(JUNK))


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_damaged_inputs_never_escape_as_untyped_errors(name: str) -> None:
    """Random damage gives valid annotations or a MessageError, without the last-resort net."""
    rng = random.Random(name)
    original = load(name)
    for _ in range(400):
        value = copy.deepcopy(original)
        for _ in range(rng.randint(1, 3)):
            _damage(value, rng)
        for fmt in (AUTO, ROBOFLOW, WORKFLOW, ULTRALYTICS):
            try:
                out = consumer.formats._convert(value, fmt, "predictions", DEFAULT_OPTIONS)
            except MessageError as exc:
                failed: MessageError = exc
            else:
                check_annotations(out)
                continue
            assert failed.path.startswith("predictions")
