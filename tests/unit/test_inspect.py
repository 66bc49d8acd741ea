"""``vision-events-consumer inspect``: through the real command line, for several formats."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumer.cli import main
from consumer.formats import ConvertOptions, convert_predictions

FIXTURES = Path(__file__).parent / "fixtures"
DEEPSTREAM = FIXTURES / "edge" / "deepstream_full_test4_vehicle.json"
FORMATS = FIXTURES / "formats"


def _inspect(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any] | None, str]:
    code = main(["inspect", *args])
    captured = capsys.readouterr()
    return code, (orjson.loads(captured.out) if captured.out else None), captured.err


def _write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else orjson.dumps(data))
    return str(path)


def test_deepstream_full_schema_shows_annotations_and_fields_without_the_time_window(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _inspect(capsys, str(DEEPSTREAM))
    assert (code, err) == (0, "")
    assert out == {
        "format": "deepstream",
        "annotations": {
            "objectDetections": [
                {
                    "class": "vehicle",
                    "x": 1118.0,
                    "y": 559.5,
                    "width": 144.0,
                    "height": 93.0,
                    "confidence": 0.6904296875,
                }
            ],
            "classifications": [
                {"class": "sedan", "confidence": 0.0},
                {"class": "Bugatti", "confidence": 0.0},
                {"class": "M", "confidence": 0.0},
                {"class": "blue", "confidence": 0.0},
            ],
        },
        "fields": {
            # A capture over a year old: the API would refuse it, inspect shows it.
            "timestamp": "2025-11-20T09:15:42.337000+00:00",
            "streamId": "CAMERA_ID",
            "externalId": "8f6c3c6e-1111-4222-8333-444455556666",
            "customMetadata": {"license_state": "CA", "license": "XX1234", "ds_event_type": "moving"},
        },
    }


@pytest.mark.parametrize(
    ("fixture", "fmt", "lists"),
    [
        ("roboflow_object_detection.json", "roboflow", ["objectDetections"]),
        ("roboflow_instance_segmentation.json", "roboflow", ["objectDetections", "instanceSegmentations"]),
        ("roboflow_classification.json", "roboflow", ["classifications"]),
        ("ultralytics_detect.json", "ultralytics", ["objectDetections"]),
        ("ultralytics_pose.json", "ultralytics", ["keypoints"]),
        ("workflow_run_response.json", "workflow", None),
    ],
)
def test_existing_formats_show_only_their_non_empty_lists_in_wire_form(
    capsys: pytest.CaptureFixture[str], fixture: str, fmt: str, lists: list[str] | None
) -> None:
    code, out, err = _inspect(capsys, str(FORMATS / fixture))
    assert (code, err) == (0, "")
    assert out is not None and out["format"] == fmt
    expected = convert_predictions(json.loads((FORMATS / fixture).read_text()), path="").annotations
    assert out["annotations"] == expected and all(out["annotations"].values())
    if lists is not None:
        assert list(out["annotations"]) == lists
    assert out["fields"] == {"timestamp": None, "streamId": None, "externalId": None, "customMetadata": {}}


def test_an_envelope_shows_its_own_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    envelope = {
        "event_type": "custom",
        "use_case": "u",
        "timestamp": "2019-01-02T03:04:05Z",
        "stream_id": "dock-3",
        "external_id": "ext-9",
        "custom_metadata": {"line": "a"},
        "predictions": json.loads((FORMATS / "roboflow_object_detection.json").read_text()),
    }
    code, out, _ = _inspect(capsys, _write(tmp_path, "m.json", envelope))
    assert code == 0 and out is not None
    assert out["format"] == "envelope"
    assert list(out["annotations"]) == ["objectDetections"]
    assert out["fields"] == {
        "timestamp": "2019-01-02T03:04:05+00:00",
        "streamId": "dock-3",
        "externalId": "ext-9",
        "customMetadata": {"line": "a"},
    }


def test_the_route_of_the_topic_gives_format_class_map_confidence_and_metadata(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = json.loads(DEEPSTREAM.read_text())
    del message["object"]["vehicle"]["confidence"]
    message["object"]["id"] = "7"
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "routes:\n"
        "  - name: ds\n"
        "    match: 'ds/{site}'\n"
        "    format: deepstream\n"
        "    class_map: {vehicle: car}\n"
        "    default_confidence: 0.9\n"
        "    custom_metadata: {where: '{site}/{tracking_id}'}\n"
    )
    code, out, err = _inspect(
        capsys, _write(tmp_path, "m.json", message), "--routes", str(routes), "--topic", "ds/north"
    )
    assert (code, err) == (0, "")
    assert out is not None
    assert out["annotations"]["objectDetections"][0]["class"] == "car"
    assert out["annotations"]["objectDetections"][0]["confidence"] == 0.9
    assert out["fields"]["customMetadata"]["where"] == "north/7"
    assert out["fields"]["customMetadata"]["tracking_id"] == "7"


def test_format_and_image_size_options_reach_the_converter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[Any, ConvertOptions]] = []

    def spy(value: Any, fmt: Any, *, path: str, options: ConvertOptions) -> Any:
        seen.append((fmt, options))
        return convert_predictions(value, fmt, path=path, options=options)

    monkeypatch.setattr("consumer.normalize.convert_predictions", spy)
    code, out, _ = _inspect(capsys, str(DEEPSTREAM), "--format", "deepstream", "--image-size", "1920x1080")
    assert code == 0 and out is not None and out["format"] == "deepstream"
    assert [(str(f), o.image_width, o.image_height) for f, o in seen] == [("deepstream", 1920, 1080)]


def test_a_named_format_that_does_not_fit_is_refused_with_reason_and_path(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _inspect(
        capsys, str(FORMATS / "roboflow_object_detection.json"), "--format", "deepstream"
    )
    assert code == 1 and out is None
    assert err.startswith("invalid: missing_field at object:")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            b'{"messageid": "m", "mdsversion": "1.0", "object": {"bbox": {"topleftx": NaN}}}',
            "non_finite_number",
        ),
        (
            b'{"messageid": "m", "mdsversion": "1.0", "object": {"vehicle": {}, "bbox": {"topleftx": 1}}}',
            "missing_field at object.bbox.toplefty",
        ),
        (b"not json", "invalid_json"),
        (b'{"hello": "world"}', "unknown_format"),
    ],
)
def test_bad_input_gives_the_reason_and_path_on_stderr_and_a_non_zero_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], payload: bytes, expected: str
) -> None:
    code, out, err = _inspect(capsys, _write(tmp_path, "bad.json", payload))
    assert code == 1 and out is None
    assert err.startswith(f"invalid: {expected}")


def test_a_topic_no_route_matches_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes: [{name: r, match: 'a/#'}]")
    code, _, err = _inspect(capsys, str(DEEPSTREAM), "--routes", str(routes), "--topic", "b")
    assert code == 1 and err.startswith("invalid: no_route")


@pytest.mark.parametrize(
    "args",
    [
        ["--image-size", "1920"],
        ["--image-size", "0x10"],
        ["--image-size", "axb"],
        ["--format", "nope"],
    ],
)
def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["inspect", str(DEEPSTREAM), *args])
    assert caught.value.code == 2
    assert "inspect" in capsys.readouterr().err


def test_routes_without_a_topic_and_a_missing_file_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes: [{name: r, match: 'a/#'}]")
    assert main(["inspect", str(DEEPSTREAM), "--routes", str(routes)]) == 2
    assert "--topic" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "absent.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_the_message_can_come_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(DEEPSTREAM.read_bytes())))
    code, out, _ = _inspect(capsys, "-")
    assert code == 0 and out is not None and out["format"] == "deepstream"


def test_a_frigate_count_is_read_where_the_format_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A count topic's bare number: refused when detected, read with ``--format frigate``."""
    count = _write(tmp_path, "count", b"3")
    code, _, err = _inspect(capsys, count, "--topic", "frigate/front_door/person")
    assert code != 0 and "not_an_object" in err
    code, out, err = _inspect(capsys, count, "--topic", "frigate/front_door/person", "--format", "frigate")
    assert code == 0, err
    assert out is not None and out["format"] == "frigate" and out["annotations"] == {}
