"""The fake API's validators accept the contract's §8 bodies and refuse every rule's violation."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumer.fakeapi.validation import (
    BatchContractError,
    ContractError,
    StaticReferences,
    validate_batch,
    validate_cloud_event,
    validate_custom_metadata,
    validate_local_event,
    validate_upload_metadata,
    validate_use_case_body,
)
from tests.support.images import jpeg_bytes, png_bytes

NOW = datetime(2026, 8, 21, 18, 40, tzinfo=UTC)
USE_CASE = "a1b3c8e1"
REFS = StaticReferences(
    use_case_ids=frozenset({USE_CASE}),
    source_ids=frozenset(
        {"ve-img-output-0001", "ve-img-input-0001", "ve-img-output-0002", "ve-img-output-0003"}
    ),
)
JPEG_B64 = base64.b64encode(jpeg_bytes()).decode("ascii")
PNG_B64 = base64.b64encode(png_bytes()).decode("ascii")
DELETE = object()


def fresh(seconds_ago: float = 60.0) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).isoformat()


def quality_check_body() -> dict[str, Any]:
    """§8.1."""
    return {
        "eventId": "3f1c9a2e-7b4d-4e8a-9c1f-2d5e6a7b8c90",
        "eventType": "quality_check",
        "useCaseId": USE_CASE,
        "timestamp": fresh(),
        "images": [
            {
                "sourceId": "ve-img-output-0001",
                "inputSourceId": "ve-img-input-0001",
                "label": "workflow",
                "objectDetections": [
                    {
                        "class": "defect",
                        "x": 30.0,
                        "y": 40.0,
                        "width": 40.0,
                        "height": 40.0,
                        "confidence": 0.9,
                    },
                    {
                        "class": "scratch",
                        "x": 125.0,
                        "y": 230.0,
                        "width": 50.0,
                        "height": 60.0,
                        "confidence": 0.8,
                    },
                ],
            }
        ],
        "eventData": {"result": "fail", "externalId": "batch-2025-001"},
        "customMetadata": {"camera_id": "cam_01", "line": "A1", "temperature": 72.5},
        "displayImagePosition": 0,
    }


def safety_alert_body() -> dict[str, Any]:
    """§8.2."""
    return {
        "eventId": "9b2d7e44-1c3a-4f6b-8e2d-5a7c9f0b1d23",
        "eventType": "safety_alert",
        "useCaseId": USE_CASE,
        "timestamp": fresh(42),
        "images": [
            {
                "sourceId": "ve-img-output-0002",
                "label": "workflow",
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
            }
        ],
        "eventData": {
            "alertType": "no_hardhat",
            "severity": "high",
            "description": "Worker detected without hardhat in zone B",
            "externalId": "zone-b-cam-3",
        },
        "customMetadata": {"zone": "B"},
        "displayImagePosition": 0,
    }


def batch_body() -> dict[str, Any]:
    """§8.3."""
    return {
        "events": [
            {
                "eventId": "f47ac10b-58cc-4372-a567-0e02b2c3d479",
                "eventType": "inventory_count",
                "useCaseId": USE_CASE,
                "timestamp": fresh(300),
                "images": [],
                "eventData": {"location": "warehouse-A", "itemCount": 42, "itemType": "widget"},
            },
            {
                "eventId": "9c4d6a2e-81f3-4b7a-bc9e-3f1a2d4e5c6b",
                "eventType": "custom",
                "useCaseId": USE_CASE,
                "timestamp": fresh(299),
                "images": [
                    {
                        "sourceId": "ve-img-output-0003",
                        "label": "workflow",
                        "classifications": [
                            {"class": "cat", "confidence": 0.85},
                            {"class": "dog", "confidence": 0.15},
                        ],
                    }
                ],
                "eventData": {"value": "anomaly detected at 14:32"},
                "customMetadata": {"camera_id": "cam_02"},
                "displayImagePosition": 0,
            },
            {
                "eventId": "0d9e8f7a-6b5c-4d3e-a2f1-0e9d8c7b6a54",
                "eventType": "operator_feedback",
                "useCaseId": USE_CASE,
                "timestamp": fresh(240),
                "images": [],
                "eventData": {
                    "relatedEventId": "3f1c9a2e-7b4d-4e8a-9c1f-2d5e6a7b8c90",
                    "feedback": "incorrect",
                },
            },
        ]
    }


def local_body() -> dict[str, Any]:
    """§8.4, with real base64 images."""
    return {
        "inference_timestamp": fresh(),
        "solution": USE_CASE,
        "event_schema": "quality_check",
        "event_data": {"result": "pass"},
        "images": [
            {
                "base64Image": JPEG_B64,
                "inputBase64Image": PNG_B64,
                "label": "workflow",
                "objectDetections": [
                    {"class": "cat", "x": 30.0, "y": 40.0, "width": 40.0, "height": 40.0, "confidence": 0.9}
                ],
            }
        ],
        "custom_metadata": {"camera_id": "cam-01"},
        "displayImagePosition": 0,
    }


def apply(body: dict[str, Any], changes: list[tuple[tuple[str | int, ...], Any]]) -> dict[str, Any]:
    """Set (or, with DELETE, remove) the value at each path."""
    for path, value in changes:
        target: Any = body
        for step in path[:-1]:
            target = target[step]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return body


def error_of(call: Any) -> ContractError:
    with pytest.raises(ContractError) as info:
        call()
    return info.value


# --- accepted bodies --------------------------------------------------------------------------


@pytest.mark.parametrize("make", [quality_check_body, safety_alert_body], ids=["8.1", "8.2"])
def test_contract_examples_are_accepted(make: Any) -> None:
    body = make()
    assert validate_cloud_event(body, REFS, NOW) is body


def test_contract_batch_example_is_accepted() -> None:
    events = validate_batch(batch_body(), REFS, NOW)
    assert [event["eventType"] for event in events] == ["inventory_count", "custom", "operator_feedback"]


def test_contract_local_example_is_accepted() -> None:
    body = local_body()
    assert validate_local_event(body, NOW) is body


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param([(("timestamp",), "2026-08-21T18:39:00Z")], id="zulu-timestamp"),
        pytest.param([(("timestamp",), "2026-08-21T20:39:00.5+02:00")], id="offset-timestamp"),
        pytest.param([(("eventId",), str(uuid.uuid5(uuid.NAMESPACE_URL, "msg-1")))], id="uuid5"),
        pytest.param([(("eventId",), "3F1C9A2E-7B4D-4E8A-9C1F-2D5E6A7B8C90")], id="uppercase-uuid"),
        pytest.param([(("eventData",), DELETE), (("customMetadata",), DELETE)], id="no-optional-objects"),
        pytest.param([(("images",), []), (("displayImagePosition",), DELETE)], id="no-images"),
        pytest.param(
            [(("images", 0, "inputSourceId"), DELETE), (("images", 0, "label"), DELETE)], id="bare-image"
        ),
        pytest.param(
            [(("deviceId",), "edge-7"), (("streamId",), "rtsp-1"), (("workflowId",), "wf/abc")],
            id="context-ids",
        ),
        pytest.param(
            [
                (
                    ("images", 0, "keypoints"),
                    [
                        {
                            "class": "hand",
                            "x": 1,
                            "y": 2,
                            "width": 0,
                            "height": 0,
                            "confidence": 1,
                            "keypoints": [{"id": 0, "x": 1.5, "y": 2.5}],
                        }
                    ],
                )
            ],
            id="keypoints",
        ),
        pytest.param(
            [(("customMetadata",), {"Line 4_b-x": True, "count": 3, "empty": ""})], id="metadata-kinds"
        ),
        pytest.param([(("customMetadata",), {f"k{i}": i for i in range(100)})], id="metadata-100-keys"),
        pytest.param([(("timestamp",), (NOW - timedelta(days=364)).isoformat())], id="364-days-old"),
        pytest.param([(("timestamp",), (NOW + timedelta(hours=23)).isoformat())], id="23-hours-ahead"),
    ],
)
def test_cloud_variants_are_accepted(changes: list[tuple[tuple[str | int, ...], Any]]) -> None:
    validate_cloud_event(apply(quality_check_body(), changes), REFS, NOW)


@pytest.mark.parametrize(
    "changes",
    [
        # EW's shape: no solution, custom_metadata always sent (possibly empty), exactly one image.
        pytest.param([(("solution",), DELETE), (("custom_metadata",), {})], id="event-writer"),
        pytest.param([(("solution",), None), (("image_id",), None)], id="nullables"),
        pytest.param(
            [(("images",), []), (("displayImagePosition",), None), (("event_data",), {})],
            id="no-images-null-position",
        ),
        pytest.param(
            [
                (("event_schema",), "operator_feedback"),
                (("event_data",), {"relatedEventId": "e-1", "feedback": "correct"}),
            ],
            id="operator-feedback",
        ),
        pytest.param(
            [
                (("device_id",), "edge-1"),
                (("stream_id",), "cam-1"),
                (("workflow_id",), "wf"),
                (("workflow_version",), "v" * 64),
                (("image_id",), "img-1"),
                (("draft",), True),
            ],
            id="optional-fields",
        ),
    ],
)
def test_local_variants_are_accepted(changes: list[tuple[tuple[str | int, ...], Any]]) -> None:
    validate_local_event(apply(local_body(), changes), NOW)


# --- refused cloud events: one case per rule ---------------------------------------------------

_BOX = {"class": "a", "x": 1.0, "y": 1.0, "width": 2.0, "height": 2.0, "confidence": 0.5}
_SQUARE = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]

CLOUD_VIOLATIONS: list[Any] = [
    # identity and envelope
    pytest.param([(("eventId",), DELETE)], "eventId", id="event-id-missing"),
    pytest.param([(("eventId",), "evt-001")], "eventId", id="event-id-not-uuid"),
    pytest.param([(("eventId",), "00000000-0000-0000-0000-000000000000")], "eventId", id="event-id-nil-uuid"),
    pytest.param([(("eventId",), "{3f1c9a2e-7b4d-4e8a-9c1f-2d5e6a7b8c90}")], "eventId", id="event-id-braces"),
    pytest.param([(("eventId",), 7)], "eventId", id="event-id-not-string"),
    pytest.param([(("eventType",), "quality-check")], "eventType", id="event-type-unknown"),
    pytest.param([(("eventType",), DELETE)], "eventType", id="event-type-missing"),
    pytest.param([(("useCaseId",), "not-created")], "useCaseId", id="use-case-unknown"),
    pytest.param([(("useCaseId",), "u" * 257)], "useCaseId", id="use-case-too-long"),
    pytest.param([(("useCaseId",), DELETE)], "useCaseId", id="use-case-missing"),
    pytest.param([(("timestamp",), "2026-08-21T18:39:00")], "timestamp", id="timestamp-no-timezone"),
    pytest.param([(("timestamp",), "2026-08-21 18:39:00+00:00")], "timestamp", id="timestamp-space"),
    pytest.param(
        [(("timestamp",), "2026-02-30T18:39:00+00:00")], "timestamp", id="timestamp-impossible-date"
    ),
    pytest.param([(("timestamp",), 1787337540)], "timestamp", id="timestamp-number"),
    pytest.param(
        [(("timestamp",), (NOW - timedelta(days=366)).isoformat())], "timestamp", id="timestamp-too-old"
    ),
    pytest.param(
        [(("timestamp",), (NOW + timedelta(days=2)).isoformat())], "timestamp", id="timestamp-future"
    ),
    pytest.param([(("timestamp",), DELETE)], "timestamp", id="timestamp-missing"),
    pytest.param([(("event_id",), "x")], "event_id", id="unknown-top-level-key"),
    pytest.param([(("deviceId",), "d" * 257)], "deviceId", id="device-id-too-long"),
    pytest.param([(("streamId",), 5)], "streamId", id="stream-id-not-string"),
    pytest.param([(("workflowId",), "w" * 257)], "workflowId", id="workflow-id-too-long"),
    pytest.param([(("deviceId",), "")], "deviceId", id="device-id-empty"),
    # images
    pytest.param([(("images",), DELETE)], "images", id="images-missing"),
    pytest.param([(("images",), {"sourceId": "ve-img-output-0001"})], "images", id="images-not-list"),
    pytest.param(
        [(("images",), [{"sourceId": "ve-img-output-0001"}, {"sourceId": "ve-img-output-0002"}])],
        "images",
        id="two-images",
    ),
    pytest.param([(("images", 0, "sourceId"), DELETE)], "images[0].sourceId", id="source-id-missing"),
    pytest.param([(("images", 0, "sourceId"), "ve-img-nope")], "images[0].sourceId", id="source-id-unknown"),
    pytest.param(
        [(("images", 0, "inputSourceId"), "ve-img-nope")], "images[0].inputSourceId", id="input-unknown"
    ),
    pytest.param([(("images", 0, "file"), "images/a.jpg")], "images[0].file", id="image-unknown-key"),
    pytest.param([(("images", 0, "label"), 5)], "images[0].label", id="label-not-string"),
    pytest.param([(("images", 0), "ve-img-output-0001")], "images[0]", id="image-not-object"),
    # annotations
    pytest.param(
        [(("images", 0, "objectDetections"), {})], "images[0].objectDetections", id="detections-not-list"
    ),
    pytest.param(
        [(("images", 0, "objectDetections"), [_BOX] * 1001)],
        "images[0].objectDetections",
        id="detections-over-1000",
    ),
    pytest.param(
        [(("images", 0, "objectDetections", 0, "confidence"), DELETE)],
        "images[0].objectDetections[0].confidence",
        id="box-confidence-missing",
    ),
    pytest.param(
        [(("images", 0, "objectDetections", 0, "confidence"), 1.5)],
        "images[0].objectDetections[0].confidence",
        id="box-confidence-above-1",
    ),
    pytest.param(
        [(("images", 0, "objectDetections", 0, "confidence"), -0.1)],
        "images[0].objectDetections[0].confidence",
        id="box-confidence-negative",
    ),
    pytest.param(
        [(("images", 0, "objectDetections", 0, "width"), -1.0)],
        "images[0].objectDetections[0].width",
        id="box-negative-width",
    ),
    pytest.param(
        [(("images", 0, "objectDetections", 0, "height"), "40")],
        "images[0].objectDetections[0].height",
        id="box-height-string",
    ),
    pytest.param(
        [(("images", 0, "objectDetections", 0, "x"), True)],
        "images[0].objectDetections[0].x",
        id="box-x-bool",
    ),
    pytest.param(
        [(("images", 0, "objectDetections", 0, "y"), float("inf"))],
        "images[0].objectDetections[0].y",
        id="box-y-infinite",
    ),
    pytest.param(
        [(("images", 0, "objectDetections", 0, "class"), 3)],
        "images[0].objectDetections[0].class",
        id="box-class-not-string",
    ),
    pytest.param(
        [(("images", 0, "objectDetections", 0, "class_id"), 3)],
        "images[0].objectDetections[0].class_id",
        id="box-unknown-key",
    ),
    pytest.param(
        [(("images", 0, "classifications"), [{"class": "cat"}])],
        "images[0].classifications[0].confidence",
        id="classification-confidence-missing",
    ),
    pytest.param(
        [(("images", 0, "classifications"), [{"class": "cat", "confidence": float("nan")}])],
        "images[0].classifications[0].confidence",
        id="classification-confidence-nan",
    ),
    pytest.param(
        [(("images", 0, "classifications"), [{"class": "cat", "confidence": 0.5, "class_id": 1}])],
        "images[0].classifications[0].class_id",
        id="classification-unknown-key",
    ),
    pytest.param(
        [(("images", 0, "instanceSegmentations"), [{**_BOX, "points": _SQUARE[:2]}])],
        "images[0].instanceSegmentations[0].points",
        id="polygon-two-points",
    ),
    pytest.param(
        [(("images", 0, "instanceSegmentations"), [{**_BOX, "points": [[0, 0, 1], *_SQUARE[1:]]}])],
        "images[0].instanceSegmentations[0].points[0]",
        id="polygon-point-not-pair",
    ),
    pytest.param(
        [(("images", 0, "instanceSegmentations"), [_BOX])],
        "images[0].instanceSegmentations[0].points",
        id="polygon-missing",
    ),
    pytest.param(
        [(("images", 0, "keypoints"), [{**_BOX, "keypoints": [{"id": 1.0, "x": 1, "y": 1}]}])],
        "images[0].keypoints[0].keypoints[0].id",
        id="keypoint-id-float",
    ),
    pytest.param(
        [(("images", 0, "keypoints"), [{**_BOX, "keypoints": [{"id": 1, "x": 1, "y": 1, "name": "nose"}]}])],
        "images[0].keypoints[0].keypoints[0].name",
        id="keypoint-unknown-key",
    ),
    pytest.param(
        [(("images", 0, "keypoints"), [_BOX])], "images[0].keypoints[0].keypoints", id="keypoint-list-missing"
    ),
    # eventData per type
    pytest.param([(("eventData", "confidence"), 0.9)], "eventData.confidence", id="qc-unknown-key"),
    pytest.param([(("eventData", "result"), "maybe")], "eventData.result", id="qc-result-enum"),
    pytest.param([(("eventData", "result"), None)], "eventData.result", id="qc-result-null"),
    pytest.param(
        [(("eventData", "externalId"), "x" * 1001)], "eventData.externalId", id="external-id-too-long"
    ),
    pytest.param([(("eventData", "externalId"), "")], "eventData.externalId", id="external-id-empty"),
    pytest.param([(("eventData",), [])], "eventData", id="event-data-not-object"),
    pytest.param(
        [(("eventType",), "inventory_count"), (("eventData",), {"itemCount": -1})],
        "eventData.itemCount",
        id="item-count-negative",
    ),
    pytest.param(
        [(("eventType",), "inventory_count"), (("eventData",), {"itemCount": True})],
        "eventData.itemCount",
        id="item-count-bool",
    ),
    pytest.param(
        [(("eventType",), "inventory_count"), (("eventData",), {"itemCount": 1.5})],
        "eventData.itemCount",
        id="item-count-float",
    ),
    pytest.param(
        [(("eventType",), "inventory_count"), (("eventData",), {"result": "pass"})],
        "eventData.result",
        id="inventory-foreign-key",
    ),
    pytest.param(
        [(("eventType",), "safety_alert"), (("eventData",), {"severity": "critical"})],
        "eventData.severity",
        id="severity-enum",
    ),
    pytest.param(
        [(("eventType",), "safety_alert"), (("eventData",), {"alertType": "no hardhat"})],
        "eventData.alertType",
        id="alert-type-pattern",
    ),
    pytest.param(
        [(("eventType",), "safety_alert"), (("eventData",), {"description": "d" * 10_001})],
        "eventData.description",
        id="description-too-long",
    ),
    pytest.param(
        [(("eventType",), "custom"), (("eventData",), {"value": "v" * 10_001})],
        "eventData.value",
        id="custom-value-too-long",
    ),
    pytest.param(
        [(("eventType",), "custom"), (("eventData",), {"value": 5})],
        "eventData.value",
        id="custom-value-number",
    ),
    pytest.param(
        [(("eventType",), "operator_feedback"), (("eventData",), {"feedback": "wrong"})],
        "eventData.feedback",
        id="feedback-enum",
    ),
    pytest.param(
        [(("eventType",), "operator_feedback"), (("eventData",), {"externalId": "x"})],
        "eventData.externalId",
        id="feedback-has-no-external-id",
    ),
    pytest.param(
        [(("eventType",), "operator_feedback"), (("eventData",), {"relatedEventId": "r" * 257})],
        "eventData.relatedEventId",
        id="related-event-id-too-long",
    ),
    # customMetadata
    pytest.param(
        [(("customMetadata",), {f"k{i}": i for i in range(101)})], "customMetadata", id="metadata-101-keys"
    ),
    pytest.param([(("customMetadata",), {"a.b": 1})], "customMetadata.a.b", id="metadata-key-pattern"),
    pytest.param(
        [(("customMetadata",), {"k" * 101: 1})], "customMetadata." + "k" * 101, id="metadata-key-long"
    ),
    pytest.param([(("customMetadata",), {"k": "v" * 1001})], "customMetadata.k", id="metadata-string-long"),
    pytest.param([(("customMetadata",), {"k": {"nested": 1}})], "customMetadata.k", id="metadata-nested"),
    pytest.param([(("customMetadata",), {"k": [1, 2]})], "customMetadata.k", id="metadata-list"),
    pytest.param([(("customMetadata",), {"k": None})], "customMetadata.k", id="metadata-null"),
    pytest.param([(("customMetadata",), "camera=1")], "customMetadata", id="metadata-not-object"),
    # displayImagePosition
    pytest.param([(("displayImagePosition",), DELETE)], "displayImagePosition", id="position-missing"),
    pytest.param([(("displayImagePosition",), 1)], "displayImagePosition", id="position-out-of-range"),
    pytest.param([(("displayImagePosition",), True)], "displayImagePosition", id="position-bool"),
    pytest.param([(("displayImagePosition",), None)], "displayImagePosition", id="position-null"),
    pytest.param([(("images",), [])], "displayImagePosition", id="position-without-images"),
]


@pytest.mark.parametrize(("changes", "path"), CLOUD_VIOLATIONS)
def test_cloud_violations_are_refused(changes: list[tuple[tuple[str | int, ...], Any]], path: str) -> None:
    body = apply(quality_check_body(), changes)
    error = error_of(lambda: validate_cloud_event(body, REFS, NOW))
    assert error.path == path
    assert str(error).startswith(f"{path}: ")


def test_non_object_cloud_body_is_refused() -> None:
    assert error_of(lambda: validate_cloud_event([quality_check_body()], REFS, NOW)).path == "body"


# --- batches ----------------------------------------------------------------------------------


def test_batch_error_names_the_index_of_the_bad_event() -> None:
    body = apply(batch_body(), [(("events", 2, "eventData", "feedback"), "maybe")])
    error = error_of(lambda: validate_batch(body, REFS, NOW))
    assert isinstance(error, BatchContractError)
    assert error.index == 2
    assert error.path == "events[2].eventData.feedback"


def test_batch_refuses_a_repeated_event_id() -> None:
    body = batch_body()
    body["events"][1]["eventId"] = body["events"][0]["eventId"]
    error = error_of(lambda: validate_batch(body, REFS, NOW))
    assert isinstance(error, BatchContractError)
    assert (error.index, error.path) == (1, "events[1].eventId")


@pytest.mark.parametrize(
    ("body", "path"),
    [
        pytest.param({"events": []}, "events", id="empty"),
        pytest.param({"events": batch_body()["events"][:1] * 101}, "events", id="over-100"),
        pytest.param({"events": {}}, "events", id="not-list"),
        pytest.param({}, "events", id="missing"),
        pytest.param({"events": batch_body()["events"], "dryRun": True}, "dryRun", id="unknown-key"),
        pytest.param([], "body", id="not-object"),
    ],
)
def test_batch_shape_violations_are_refused(body: Any, path: str) -> None:
    error = error_of(lambda: validate_batch(body, REFS, NOW))
    assert not isinstance(error, BatchContractError)
    assert error.path == path


def test_batch_of_exactly_100_is_accepted() -> None:
    event = batch_body()["events"][0]
    events = [{**event, "eventId": str(uuid.uuid4())} for _ in range(100)]
    assert len(validate_batch({"events": events}, REFS, NOW)) == 100


# --- refused local events ---------------------------------------------------------------------

LOCAL_VIOLATIONS: list[Any] = [
    pytest.param([(("inference_timestamp",), DELETE)], "inference_timestamp", id="timestamp-missing"),
    pytest.param([(("inference_timestamp",), "yesterday")], "inference_timestamp", id="timestamp-format"),
    pytest.param([(("event_schema",), "alert")], "event_schema", id="schema-unknown"),
    pytest.param([(("event_schema",), DELETE)], "event_schema", id="schema-missing"),
    pytest.param([(("event_data",), DELETE)], "event_data", id="event-data-missing"),
    pytest.param([(("event_data", "extra"), 1)], "event_data.extra", id="event-data-extra"),
    pytest.param([(("eventType",), "quality_check")], "eventType", id="cloud-key"),
    pytest.param([(("customMetadata",), {})], "customMetadata", id="camel-custom-metadata"),
    pytest.param([(("solution",), "s" * 257)], "solution", id="solution-too-long"),
    pytest.param([(("workflow_version",), "v" * 65)], "workflow_version", id="workflow-version-too-long"),
    pytest.param([(("workflow_id",), "w" * 257)], "workflow_id", id="workflow-id-too-long"),
    pytest.param([(("device_id",), "d" * 257)], "device_id", id="device-id-too-long"),
    pytest.param([(("stream_id",), 9)], "stream_id", id="stream-id-number"),
    pytest.param([(("image_id",), 5)], "image_id", id="image-id-number"),
    pytest.param([(("draft",), "yes")], "draft", id="draft-not-bool"),
    pytest.param([(("images", 0, "base64Image"), "not base64!")], "images[0].base64Image", id="bad-base64"),
    pytest.param(
        [(("images", 0, "base64Image"), base64.b64encode(b"hello, world").decode())],
        "images[0].base64Image",
        id="base64-not-image",
    ),
    pytest.param(
        [(("images", 0, "base64Image"), "data:image/jpeg;base64," + JPEG_B64)],
        "images[0].base64Image",
        id="data-url",
    ),
    pytest.param(
        [(("images", 0, "inputBase64Image"), "@@@")], "images[0].inputBase64Image", id="bad-input-base64"
    ),
    pytest.param([(("images", 0, "base64Image"), DELETE)], "images[0].base64Image", id="base64-missing"),
    pytest.param([(("images", 0, "base64_image"), JPEG_B64)], "images[0].base64_image", id="snake-image-key"),
    pytest.param([(("images", 0, "sourceId"), "ve-img-1")], "images[0].sourceId", id="cloud-image-key"),
    pytest.param(
        [(("images", 0, "objectDetections", 0, "confidence"), 2)],
        "images[0].objectDetections[0].confidence",
        id="annotation-checked",
    ),
    pytest.param(
        [(("images",), [{"base64Image": JPEG_B64}, {"base64Image": JPEG_B64}])], "images", id="two-images"
    ),
    pytest.param([(("displayImagePosition",), None)], "displayImagePosition", id="null-position-with-image"),
    pytest.param([(("displayImagePosition",), DELETE)], "displayImagePosition", id="position-missing"),
    pytest.param([(("custom_metadata",), {"k": {"a": 1}})], "custom_metadata.k", id="metadata-nested"),
]


@pytest.mark.parametrize(("changes", "path"), LOCAL_VIOLATIONS)
def test_local_violations_are_refused(changes: list[tuple[tuple[str | int, ...], Any]], path: str) -> None:
    body = apply(local_body(), changes)
    error = error_of(lambda: validate_local_event(body, NOW))
    assert error.path == path


# --- custom metadata, upload parts, use cases --------------------------------------------------


def test_custom_metadata_error_names_the_offending_key() -> None:
    error = error_of(lambda: validate_custom_metadata({"ok": 1, "bad/key": 2}, "metadata"))
    assert error.path == "metadata.bad/key"


def test_upload_metadata_is_a_json_object_string() -> None:
    assert validate_upload_metadata('{"camera": "c1", "n": 2}') == {"camera": "c1", "n": 2}
    assert error_of(lambda: validate_upload_metadata("camera=c1")).path == "metadata"
    assert error_of(lambda: validate_upload_metadata("[1, 2]")).path == "metadata"
    assert error_of(lambda: validate_upload_metadata('{"k": {"a": 1}}')).path == "metadata.k"


def test_use_case_body_needs_exactly_a_name() -> None:
    assert validate_use_case_body({"name": "Line QC"}) == "Line QC"
    assert error_of(lambda: validate_use_case_body({})).path == "name"
    assert error_of(lambda: validate_use_case_body({"name": "x", "id": "y"})).path == "id"
    assert error_of(lambda: validate_use_case_body({"name": ""})).path == "name"
