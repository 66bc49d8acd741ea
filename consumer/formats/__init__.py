"""Model outputs -> Vision Events annotations (contract §4; shapes and decisions in docs/formats.md).

Supported: Roboflow inference server responses, Roboflow Workflows outputs, Ultralytics
``Results.to_json()``. ``convert_predictions`` never lets a malformed input escape as anything but a
:class:`~consumer.errors.MessageError` carrying a reason and the field path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consumer.errors import FormatError, Reason
from consumer.formats.axis import convert_axis
from consumer.formats.common import DEFAULT_OPTIONS, ConvertOptions, ModelOutput, PredictionFormat
from consumer.formats.deepstream import convert_deepstream
from consumer.formats.deepstream_minimal import convert_deepstream_minimal
from consumer.formats.detect import detect_format
from consumer.formats.dlstreamer import convert_dlstreamer
from consumer.formats.frigate import convert_frigate
from consumer.formats.roboflow import convert_roboflow
from consumer.formats.ultralytics import convert_ultralytics
from consumer.formats.workflows import convert_workflow

# The edge stacks' converters take the route's options (image size, default confidence...).
_EDGE_CONVERTERS: dict[PredictionFormat, Callable[[Any, str, ConvertOptions], ModelOutput]] = {
    PredictionFormat.DEEPSTREAM: convert_deepstream,
    PredictionFormat.DEEPSTREAM_MINIMAL: convert_deepstream_minimal,
    PredictionFormat.DLSTREAMER: convert_dlstreamer,
    PredictionFormat.FRIGATE: convert_frigate,
    PredictionFormat.AXIS: convert_axis,
}

__all__ = ["ConvertOptions", "ModelOutput", "PredictionFormat", "convert_predictions", "detect_format"]


def convert_predictions(
    value: Any,
    fmt: PredictionFormat = PredictionFormat.AUTO,
    *,
    path: str = "predictions",
    options: ConvertOptions = DEFAULT_OPTIONS,
) -> ModelOutput:
    """Convert ``value`` (parsed JSON) to annotations; AUTO detects the shape first.

    ``path`` is where ``value`` sits in the message: error paths start with it (pass ``""`` when
    ``value`` is the whole message). An unrecognized shape raises
    ``FormatError(Reason.UNKNOWN_FORMAT)``; a malformed one a ``FormatError`` or ``ValidationError``
    naming the field.
    """
    if type(fmt) is not PredictionFormat:  # a member is used as it is; text is looked up
        fmt = PredictionFormat(fmt)
    try:
        return _convert(value, fmt, path, options)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        # Not expected: every check above raises typed errors. Kept so that no input, however odd,
        # can take the process down; the message is dead-lettered with the cause instead.
        raise FormatError(
            Reason.INVALID_PREDICTIONS, f"unreadable model output ({type(exc).__name__}: {exc})", path
        ) from exc


def _convert(
    value: Any, fmt: PredictionFormat, path: str, options: ConvertOptions = DEFAULT_OPTIONS
) -> ModelOutput:
    if fmt is PredictionFormat.AUTO:
        detected = detect_format(value)
        if detected is None:
            raise FormatError(
                Reason.UNKNOWN_FORMAT,
                "not a Roboflow response, a Workflows output or Ultralytics Results.to_json() "
                "(see docs/formats.md)",
                path,
            )
        fmt = detected
    if fmt is PredictionFormat.ROBOFLOW:
        return convert_roboflow(value, path)
    if fmt is PredictionFormat.WORKFLOW:
        return convert_workflow(value, path)
    edge_converter = _EDGE_CONVERTERS.get(fmt)
    if edge_converter is not None:
        return edge_converter(value, path, options)
    return convert_ultralytics(value, path)
