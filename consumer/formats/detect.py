"""Tell the supported model-output shapes apart by their keys (never by reading every element)."""

from __future__ import annotations

from typing import Any

from consumer.envelope import ENVELOPE_MARKERS
from consumer.formats.axis import is_axis
from consumer.formats.common import PredictionFormat
from consumer.formats.deepstream import is_deepstream
from consumer.formats.deepstream_minimal import is_deepstream_minimal
from consumer.formats.dlstreamer import is_dlstreamer
from consumer.formats.frigate import is_frigate
from consumer.formats.workflows import first_present, is_response_outputs, is_serialized


def detect_format(value: Any) -> PredictionFormat | None:
    """Which model-output shape ``value`` (parsed JSON) is, or None if none.

    Looks at keys and at the first element of lists only. An empty list counts as an empty
    Roboflow ``predictions`` list.
    """
    if isinstance(value, list):
        return _detect_list(value)
    if isinstance(value, dict):
        return _detect_dict(value)
    return None


def _detect_list(value: list[Any]) -> PredictionFormat | None:
    if not value:
        return PredictionFormat.ROBOFLOW
    first = value[0]
    if not isinstance(first, dict) or "predictions" in first:
        # A list of responses is a batch of images, which cannot become one event.
        return None
    return _row_format(first)


def _row_format(row: dict[str, Any]) -> PredictionFormat | None:
    if "box" in row:
        return PredictionFormat.ULTRALYTICS
    if "x" in row and "width" in row:
        return PredictionFormat.ROBOFLOW
    if "confidence" in row and "name" in row:
        return PredictionFormat.ULTRALYTICS  # a classification row: its "class" is an id
    if "confidence" in row and ("class" in row or "class_name" in row):
        return PredictionFormat.ROBOFLOW  # one class of a single-label distribution
    return None


def marked_edge_format(value: dict[str, Any]) -> PredictionFormat | None:
    """The edge-stack format of a message that has an envelope field name among its keys, or None.

    Frigate tracked-object updates, Axis v1 frames and DL Streamer frames carry a top-level
    ``timestamp``, which alone would make them read as an envelope. Their shape is specific enough to
    tell; a document with any other envelope field, or without the shape, stays an envelope.
    """
    if "timestamp" not in value:
        return None  # the usual envelope, decided in a few lookups
    if not ("type" in value or "channel_id" in value or "objects" in value or "streams" in value):
        return None
    if len(ENVELOPE_MARKERS.intersection(value)) != 1:
        return None
    return _edge_format(value)


def _detect_dict(value: dict[str, Any]) -> PredictionFormat | None:
    if not ENVELOPE_MARKERS.isdisjoint(value):
        return marked_edge_format(value)
    edge = _edge_format(value)
    if edge is not None:
        return edge
    outputs = value.get("outputs")
    if isinstance(outputs, list) and is_response_outputs(outputs):
        return PredictionFormat.WORKFLOW
    predictions = value.get("predictions")
    if _holds_outputs(predictions):
        return PredictionFormat.WORKFLOW  # a workflow output named "predictions"
    if isinstance(predictions, list) or (
        isinstance(predictions, dict) and ("predicted_classes" in value or _looks_multi_label(predictions))
    ):
        return _roboflow_or_workflow(value)
    return PredictionFormat.WORKFLOW if _has_serialized_output(value) else None


def _edge_format(value: dict[str, Any]) -> PredictionFormat | None:
    """Which edge-stack message ``value`` is (DeepStream, Frigate...), or None; each has its own keys."""
    if is_deepstream(value):
        return PredictionFormat.DEEPSTREAM
    if is_deepstream_minimal(value):
        return PredictionFormat.DEEPSTREAM_MINIMAL
    if is_dlstreamer(value):
        return PredictionFormat.DLSTREAMER
    if is_frigate(value):
        return PredictionFormat.FRIGATE
    if is_axis(value):
        return PredictionFormat.AXIS
    return None


def _holds_outputs(predictions: Any) -> bool:
    """Whether ``predictions`` is itself serialized output(s), i.e. a workflow output of that name."""
    if isinstance(predictions, dict):
        return "predictions" in predictions
    return (
        isinstance(predictions, list)
        and bool(predictions)
        and isinstance(predictions[0], dict)
        and "predictions" in predictions[0]
    )


def _has_serialized_output(value: dict[str, Any]) -> bool:
    return any(
        is_serialized(output) or (isinstance(output, list) and is_serialized(first_present(output)))
        for output in value.values()
    )


def _looks_multi_label(predictions: dict[str, Any]) -> bool:
    if not predictions:
        return True  # no class scored at all
    details = next(iter(predictions.values()))
    return (isinstance(details, dict) and "confidence" in details) or type(details) in (int, float)


def _roboflow_or_workflow(value: dict[str, Any]) -> PredictionFormat:
    """Name a ``{"predictions", "image"}`` dict, the same shape either way, by Workflows-only marks."""
    if "prediction_type" in value or "root_parent_id" in value:
        return PredictionFormat.WORKFLOW
    image = value.get("image")
    if isinstance(image, dict) and "width" in image and image["width"] is None:
        return PredictionFormat.WORKFLOW  # serialise_sv_detections with no image dimensions
    return PredictionFormat.ROBOFLOW
