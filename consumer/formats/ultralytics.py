"""Ultralytics ``Results.to_json()`` (the rows of ``Results.summary()``).

Rows (``ultralytics/engine/results.py``, ``Results.summary``):

* detection: ``{"name", "class", "confidence", "box": {"x1", "y1", "x2", "y2"}, "track_id"?}`` with
  corners in absolute pixels (``normalize=False``, the default); an OBB model gives the four corners
  ``x1..x4`` / ``y1..y4``; a segmentation model adds ``"segments": {"x": [...], "y": [...]}``; a pose
  model adds ``"keypoints": {"x": [...], "y": [...], "visible"?: [...]}``;
* classification: ``{"name", "class", "confidence"}`` rows, no ``box`` (top-5 in current releases,
  top-1 in older ones).

``"class"`` is the class *id* here; the name is ``"name"``. Current releases build the JSON through a
Polars DataFrame, so a key missing from some rows comes back as ``null`` in those rows.
"""

from __future__ import annotations

from math import isfinite
from typing import Any

from consumer.contract import MAX_ANNOTATIONS_PER_LIST
from consumer.errors import FormatError, Reason, ValidationError
from consumer.formats.common import (
    Collected,
    ModelOutput,
    PredictionFormat,
    as_float,
    class_confidence,
    class_name,
    detection_confidence,
    finite,
    item,
    join,
    number_error,
    type_error,
)
from consumer.model import Annotation

_MAX_ROWS = 3 * MAX_ANNOTATIONS_PER_LIST
_CORNERS = (("x1", "y1"), ("x2", "y2"), ("x3", "y3"), ("x4", "y4"))
# Ultralytics before 8.3 overwrote the coordinates of keypoints whose visibility was below 0.5 with
# (0, 0) in Keypoints.__init__; such a point has no position left, so it is not sent.
_HIDDEN_BELOW = 0.5


def convert_ultralytics(value: Any, path: str) -> ModelOutput:
    """Convert the rows of one ``Results.to_json()`` / ``Results.summary()``."""
    if not isinstance(value, list):
        raise type_error("an array of Results.summary() rows", value, path)
    if len(value) > _MAX_ROWS:
        raise ValidationError(
            Reason.TOO_MANY, f"{len(value)} rows; at most {MAX_ANNOTATIONS_PER_LIST} per list", path
        )
    sink = Collected()
    detections = sink.detections
    largest = 0.0
    boxes = 0
    for index, row in enumerate(value):
        if not isinstance(row, dict):
            raise type_error("a result row object", row, item(path, index))
        box = row.get("box")
        if box is None:
            _classification(row, item(path, index), sink)
            continue
        x1, y1, x2, y2 = _xyxy(box, f"{path}[{index}].box")
        boxes += 1
        largest = max(largest, x1, y1, x2, y2)
        width = finite(abs(x2 - x1), f"{path}[{index}].box")
        height = finite(abs(y2 - y1), f"{path}[{index}].box")
        confidence = row.get("confidence")
        if not (isinstance(confidence, float) and 0.0 <= confidence <= 1.0):
            confidence = detection_confidence(confidence, f"{path}[{index}].confidence")
        name = row.get("name")
        if not isinstance(name, str):
            name = class_name(name, f"{path}[{index}].name")
        annotation: Annotation = {
            "class": name,
            "x": x1 + width / 2,
            "y": y1 + height / 2,
            "width": width,
            "height": height,
            "confidence": confidence,
        }
        if row.get("keypoints") is not None or row.get("segments") is not None:
            _add_shaped(annotation, row, item(path, index), sink)
        else:
            detections.append(annotation)
    if boxes and largest <= 1.0:
        raise FormatError(
            Reason.INVALID_PREDICTIONS,
            "every box coordinate is within [0, 1]: these look like to_json(normalize=True) output, which "
            "cannot be converted without the image size; publish to_json() with normalize=False",
            path,
        )
    sink.check_caps(path)
    return ModelOutput(sink.annotations(), PredictionFormat.ULTRALYTICS)


def _add_shaped(annotation: Annotation, row: dict[str, Any], path: str, sink: Collected) -> None:
    """File a pose or segmentation row under keypoints, instance segmentations or detections."""
    raw_keypoints = row.get("keypoints")
    if raw_keypoints is not None:
        points = _keypoints(raw_keypoints, join(path, "keypoints"))
        if points:
            annotation["keypoints"] = points
            sink.keypoints.append(annotation)
        else:
            # No keypoint left: a keypoints item must carry some (see roboflow.py), so send a box.
            sink.detections.append(annotation)
        return
    polygon = _segments(row.get("segments"), join(path, "segments"))
    if len(polygon) >= 3:
        annotation["points"] = polygon
        sink.segmentations.append(annotation)
    else:
        # An empty mask, or fewer than three points: the box is still a detection (contract §4.3).
        sink.detections.append(annotation)


def _xyxy(box: Any, path: str) -> tuple[float, float, float, float]:
    """Return a box's ``x1, y1, x2, y2``; fast for the usual four finite floats."""
    if type(box) is dict and "x3" not in box:
        x1, y1, x2, y2 = box.get("x1"), box.get("y1"), box.get("x2"), box.get("y2")
        if (
            type(x1) is float
            and type(y1) is float
            and type(x2) is float
            and type(y2) is float
            and isfinite(x1 + y1 + x2 + y2)
        ):
            return x1, y1, x2, y2
    return _corners(box, path)


def _corners(box: Any, path: str) -> tuple[float, float, float, float]:
    """Return ``x1, y1, x2, y2`` of a box; of an oriented box (four corners), its axis-aligned bounds."""
    if not isinstance(box, dict):
        raise type_error("an object {x1, y1, x2, y2}", box, path)
    corners = _CORNERS if "x3" in box else _CORNERS[:2]
    xs: list[float] = []
    ys: list[float] = []
    for x_key, y_key in corners:
        raw_x = box.get(x_key)
        raw_y = box.get(y_key)
        x = as_float(raw_x)
        if x is None:
            raise number_error(raw_x, join(path, x_key))
        y = as_float(raw_y)
        if y is None:
            raise number_error(raw_y, join(path, y_key))
        xs.append(x)
        ys.append(y)
    if len(xs) == 2:
        return xs[0], ys[0], xs[1], ys[1]
    return min(xs), min(ys), max(xs), max(ys)


def _classification(row: dict[str, Any], path: str, sink: Collected) -> None:
    name = row.get("name")
    confidence = row.get("confidence")
    if name is None and confidence is None:
        raise ValidationError(
            Reason.MISSING_FIELD,
            "a detection row needs a box; a classification row needs name and confidence",
            join(path, "box"),
        )
    sink.classifications.append(
        {
            "class": class_name(name, join(path, "name")),
            "confidence": class_confidence(confidence, join(path, "confidence")),
        }
    )


def _array(raw: dict[str, Any], key: str, path: str) -> list[Any]:
    array = raw.get(key)
    if array is None:
        raise ValidationError(Reason.MISSING_FIELD, "an array is required", join(path, key))
    if not isinstance(array, list):
        raise type_error("an array", array, join(path, key))
    return array


def _same_length(array: list[Any], expected: int, path: str) -> None:
    if len(array) != expected:
        raise FormatError(Reason.INVALID_PREDICTIONS, f"{len(array)} values where x has {expected}", path)


def _coordinates(raw: Any, path: str) -> tuple[list[Any], list[Any]]:
    """Return the parallel ``x`` / ``y`` arrays of a segment or keypoint set."""
    if not isinstance(raw, dict):
        raise type_error("an object {x: [...], y: [...]}", raw, path)
    xs = _array(raw, "x", path)
    ys = _array(raw, "y", path)
    _same_length(ys, len(xs), join(path, "y"))
    return xs, ys


def _segments(raw: Any, path: str) -> list[list[float]]:
    xs, ys = _coordinates(raw, path)
    polygon: list[list[float]] = []
    append = polygon.append
    for index in range(len(xs)):
        x = xs[index]
        y = ys[index]
        if not (type(x) is float and type(y) is float and isfinite(x + y)):
            x, y = _point(xs, ys, path, index)
        append([x, y])
    return polygon


def _point(xs: list[Any], ys: list[Any], path: str, index: int) -> tuple[float, float]:
    """Check one point's coordinates (integers, errors); the loops' fast path skipped it."""
    raw_x, raw_y = xs[index], ys[index]
    x = as_float(raw_x)
    if x is None:
        raise number_error(raw_x, f"{path}.x[{index}]")
    y = as_float(raw_y)
    if y is None:
        raise number_error(raw_y, f"{path}.y[{index}]")
    return x, y


def _keypoints(raw: Any, path: str) -> list[Annotation]:
    """Keypoints with their index as id; points whose position was erased (old releases) are left out."""
    xs, ys = _coordinates(raw, path)
    # Without a visibility column (a 2-D keypoint model) every point is sent.
    visible = raw.get("visible")
    if visible is not None:
        if not isinstance(visible, list):
            raise type_error("an array", visible, join(path, "visible"))
        _same_length(visible, len(xs), join(path, "visible"))
    points: list[Annotation] = []
    for index in range(len(xs)):
        x = xs[index]
        y = ys[index]
        if not (type(x) is float and type(y) is float and isfinite(x + y)):
            x, y = _point(xs, ys, path, index)
        if visible is not None:
            raw_visible = visible[index]
            seen = as_float(raw_visible)
            if seen is None:
                raise number_error(raw_visible, f"{path}.visible[{index}]")
            if seen < _HIDDEN_BELOW and x == 0.0 and y == 0.0:
                continue
        points.append({"id": index, "x": x, "y": y})
    return points
