"""Roboflow Workflows outputs: serialized predictions, a workflow's outputs dict, the HTTP response.

Workflows serialize ``sv.Detections`` with ``serialise_sv_detections`` into the same
``{"image", "predictions"}`` dict a Roboflow response has, and classification outputs into the
response dicts of the classification models. A workflow run yields one dict of named outputs per
image; ``/workflows/run`` wraps those in ``{"outputs": [...]}``. Every output holding predictions is
converted and the annotations are merged; other outputs (images, counts, text) are not predictions
and are left alone. An output that is a list of predictions (one per crop) is merged element by
element; detections made on a crop carry ``root_parent_origin`` and are moved into the root image.
"""

from __future__ import annotations

from typing import Any

from consumer.errors import FormatError, Reason
from consumer.formats.common import Collected, ModelOutput, PredictionFormat, item, join, type_error
from consumer.formats.roboflow import convert_prediction_dict


def is_serialized(value: Any) -> bool:
    """Whether ``value`` is one serialized prediction output (``{"predictions": [...] | {...}, ...}``).

    A dict whose ``predictions`` itself holds serialized predictions is an outputs dict with an
    output named ``predictions``, not a serialized output.
    """
    if not isinstance(value, dict):
        return False
    predictions = value.get("predictions")
    if isinstance(predictions, list):
        return not (predictions and isinstance(predictions[0], dict) and "predictions" in predictions[0])
    if isinstance(predictions, dict):
        return "predictions" not in predictions
    return False


def first_present(values: list[Any]) -> Any:
    """Return the first element of ``values`` that is not null (Workflows fill batch gaps with null)."""
    for value in values:
        if value is not None:
            return value
    return None


def is_response_outputs(outputs: list[Any]) -> bool:
    """Whether ``outputs`` is the ``outputs`` list of a ``/workflows/run`` response (one dict per image)."""
    return not is_serialized(first_present(outputs))


def convert_workflow(value: Any, path: str) -> ModelOutput:
    """Convert serialized predictions, an outputs dict, a run response, or a list of serialized outputs."""
    sink = Collected()
    width: int | None = None
    height: int | None = None
    if isinstance(value, dict):
        outputs = value.get("outputs")
        if isinstance(outputs, list) and is_response_outputs(outputs):
            width, height = _response(outputs, join(path, "outputs"), sink)
        elif is_serialized(value):
            width, height = convert_prediction_dict(value, path, sink)
        else:
            width, height = _outputs(value, path, sink)
    elif isinstance(value, list):
        _elements(value, path, sink)
    else:
        raise type_error("a workflow outputs object", value, path)
    return ModelOutput(sink.annotations(), PredictionFormat.WORKFLOW, image_width=width, image_height=height)


def _response(outputs: list[Any], path: str, sink: Collected) -> tuple[int | None, int | None]:
    if len(outputs) > 1:
        raise FormatError(
            Reason.INVALID_PREDICTIONS,
            f"the response holds the outputs of {len(outputs)} images; an event has one image, "
            "publish one image's outputs per message",
            path,
        )
    if not outputs or outputs[0] is None:
        return None, None
    return _outputs(outputs[0], item(path, 0), sink)


def _outputs(outputs: Any, path: str, sink: Collected) -> tuple[int | None, int | None]:
    """Merge every prediction-bearing output; the image size comes from the first that states one."""
    if not isinstance(outputs, dict):
        raise type_error("a workflow outputs object", outputs, path)
    width: int | None = None
    height: int | None = None
    for name, output in outputs.items():
        output_path = join(path, name)
        if is_serialized(output):
            found = convert_prediction_dict(output, output_path, sink)
            if width is None and height is None:
                width, height = found
        elif isinstance(output, list) and is_serialized(first_present(output)):
            # One serialized output per crop (or per element of a nested batch).
            _elements(output, output_path, sink)
    return width, height


def _elements(values: list[Any], path: str, sink: Collected) -> None:
    for index, value in enumerate(values):
        if value is None:
            continue
        if not is_serialized(value):
            raise type_error("serialized predictions {image, predictions}", value, item(path, index))
        convert_prediction_dict(value, item(path, index), sink)
