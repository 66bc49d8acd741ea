"""AXIS scene metadata, beta and v1: the vendor's example, detection, the image-size rule, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from consumer.errors import MessageError, Reason
from consumer.formats import ConvertOptions, PredictionFormat, convert_predictions, detect_format
from consumer.formats.detect import marked_edge_format
from tests.support.messages import sample_payloads

EDGE = Path(__file__).parent / "fixtures" / "edge"
AXIS = PredictionFormat.AXIS
FULL_HD = ConvertOptions(image_width=1920, image_height=1080)


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EDGE / name).read_text())
    return data


def _approx(annotation: dict[str, Any]) -> dict[str, Any]:
    return {
        key: pytest.approx(value) if isinstance(value, float) else value for key, value in annotation.items()
    }


def test_beta_example_converts_per_rules_with_the_route_image_size() -> None:
    message = _load("axis_scene_beta.json")
    assert detect_format(message) is AXIS
    out = convert_predictions(message, path="", options=FULL_HD)
    assert out.format is AXIS
    assert out.annotations["objectDetections"] == [
        _approx(
            {
                "class": "Human",
                "x": 896.0256,
                "y": 806.0796,
                "width": 1280.1024,
                "height": 317.412,
                "confidence": 0.6,
            }
        ),
        _approx(
            {
                "class": "Bus",
                "x": 751.9392,
                "y": 374.3874,
                "width": 615.4944,
                "height": 329.7564,
                "confidence": 0.7,
            }
        ),
    ]
    # Colour lists, in object order then attribute order; the attribute's name is dropped (R4).
    assert out.annotations["classifications"] == [
        {"class": "White", "confidence": 0.78},
        {"class": "Blue", "confidence": 0.59},
        {"class": "Yellow", "confidence": 0.78},
    ]
    assert out.values == {"timestamp": "2023-03-08T09:00:19.320111Z"}
    assert out.metadata == {"tracking_ids": "1,2"}
    assert out.context == {"tracking_ids": "1,2"}
    assert (out.image_width, out.image_height) == (1920, 1080)


def test_metadata_broker_data_wrapper_reads_the_same_with_paths_under_data() -> None:
    message = {"data": _load("axis_scene_beta.json")}
    assert detect_format(message) is AXIS
    out = convert_predictions(message, path="", options=FULL_HD)
    assert len(out.annotations["objectDetections"]) == 2
    del message["data"]["frame"]["observations"][1]["bounding_box"]["left"]
    with pytest.raises(MessageError) as info:
        convert_predictions(message, AXIS, path="", options=FULL_HD)
    assert info.value.path == "data.frame.observations[1].bounding_box.left"


def test_v1_frame_has_channel_stream_id_and_object_track_ids_despite_its_timestamp_key() -> None:
    message = _load("axis_scene_frame_v1.json")
    # ``timestamp`` is also an envelope field; channel_id + detections still tell a v1 frame.
    assert marked_edge_format(message) is AXIS
    assert detect_format(message) is AXIS
    out = convert_predictions(message, path="", options=FULL_HD)
    assert out.annotations["objectDetections"][0]["class"] == "Human"
    assert out.annotations["classifications"] == [{"class": "White", "confidence": 0.78}]
    assert out.values == {"stream_id": "1", "timestamp": "2026-03-08T09:00:19.320111Z"}
    assert out.metadata == {"tracking_ids": "7"}
    assert out.context == {"channel_id": "1", "tracking_ids": "7"}


def test_normalized_boxes_without_an_image_size_are_refused() -> None:
    with pytest.raises(MessageError) as info:
        convert_predictions(_load("axis_scene_beta.json"), AXIS, path="")
    assert info.value.reason is Reason.INVALID_PREDICTIONS
    assert info.value.path == "frame.observations[0].bounding_box"
    # An empty frame needs no size: well-formed nothing is no error (R9).
    empty = {"frame": {"timestamp": "2023-03-08T09:00:19Z", "observations": []}}
    assert convert_predictions(empty, path="").annotations == {}


def test_missing_score_is_zero_or_the_route_default_and_untracked_objects_are_left_out() -> None:
    message = _load("axis_scene_beta.json")
    del message["frame"]["observations"][0]["class"]["score"]
    message["frame"]["observations"][1]["track_id"] = None
    out = convert_predictions(message, AXIS, path="", options=FULL_HD)
    assert out.annotations["objectDetections"][0]["confidence"] == 0.0
    assert out.metadata == {"tracking_ids": "1"}
    defaulted = ConvertOptions(image_width=1920, image_height=1080, default_confidence=1.0)
    assert (
        convert_predictions(message, AXIS, path="", options=defaulted).annotations["objectDetections"][0][
            "confidence"
        ]
        == 1.0
    )


def test_an_unclassified_object_is_an_unknown_box() -> None:
    message = _load("axis_scene_beta.json")
    del message["frame"]["observations"][1]["class"]
    out = convert_predictions(message, AXIS, path="", options=FULL_HD)
    assert out.annotations["objectDetections"][1]["class"] == "unknown"
    assert out.annotations["objectDetections"][1]["confidence"] == 0.0
    assert len(out.annotations["classifications"]) == 2


def _set(path: list[Any], value: Any) -> Any:
    def mutate(message: dict[str, Any]) -> None:
        target = message
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


OBS = ["frame", "observations", 0]


@pytest.mark.parametrize(
    ("mutate", "reason", "path"),
    [
        (
            lambda m: m["frame"]["observations"][0].pop("bounding_box"),
            Reason.INVALID_PREDICTIONS,
            "frame.observations[0].bounding_box",
        ),
        (
            _set([*OBS, "bounding_box", "top"], float("nan")),
            Reason.NON_FINITE_NUMBER,
            "frame.observations[0].bounding_box.top",
        ),
        (
            _set([*OBS, "bounding_box", "right"], "0.8"),
            Reason.INVALID_TYPE,
            "frame.observations[0].bounding_box.right",
        ),
        # The ONVIF stream's -1..1 convention is not this one: refused, never misread.
        (
            _set([*OBS, "bounding_box", "left"], -0.6),
            Reason.INVALID_VALUE,
            "frame.observations[0].bounding_box.left",
        ),
        (
            _set([*OBS, "bounding_box", "bottom"], 1.5),
            Reason.INVALID_VALUE,
            "frame.observations[0].bounding_box.bottom",
        ),
        (
            _set([*OBS, "bounding_box"], [0, 0, 1, 1]),
            Reason.INVALID_TYPE,
            "frame.observations[0].bounding_box",
        ),
        (_set([*OBS, "class"], "Human"), Reason.INVALID_TYPE, "frame.observations[0].class"),
        (_set([*OBS, "class", "score"], "high"), Reason.INVALID_TYPE, "frame.observations[0].class.score"),
        (
            _set([*OBS, "class", "upper_clothing_colors", 0, "name"], 3),
            Reason.INVALID_TYPE,
            "frame.observations[0].class.upper_clothing_colors[0].name",
        ),
        (_set([*OBS, "track_id"], ["1"]), Reason.INVALID_TYPE, "frame.observations[0].track_id"),
        (_set(["frame", "observations"], {"0": {}}), Reason.INVALID_TYPE, "frame.observations"),
        (_set(["frame", "timestamp"], "08/03/2023"), Reason.INVALID_VALUE, "frame.timestamp"),
        (_set(["frame"], None), Reason.MISSING_FIELD, "frame"),
    ],
)
def test_bad_frames_are_typed_errors_with_a_path(mutate: Any, reason: Reason, path: str) -> None:
    message = _load("axis_scene_beta.json")
    mutate(message)
    with pytest.raises(MessageError) as info:
        convert_predictions(message, AXIS, path="", options=FULL_HD)
    assert (info.value.reason, info.value.path) == (reason, path)


def test_other_formats_and_envelopes_are_not_taken_for_axis() -> None:
    for payload in sample_payloads(excluding=("axis/",)):
        assert detect_format(payload) is not AXIS
    for name in ("deepstream_full_test4_vehicle.json", "frigate_events_update.json"):
        assert detect_format(_load(name)) is not AXIS
    v1 = _load("axis_scene_frame_v1.json")
    assert detect_format({**v1, "stream_id": "cam"}) is None  # an envelope field besides timestamp
    assert detect_format({"channel_id": 1, "detections": {}}) is None
    assert detect_format({"frame": {"observations": {}}}) is None
    assert detect_format({"data": {"frame": []}}) is None
