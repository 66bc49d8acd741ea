"""Roboflow inference server responses, and the ``predictions`` dicts Workflows serialize the same way.

Shapes (``inference/core/entities/responses/inference.py``; Workflows' ``serialise_sv_detections``):

* detections: ``{"image": {"width", "height"}, "predictions": [{"x", "y", "width", "height",
  "confidence", "class", "class_id", "detection_id", ...}], "visualization"?}``, boxes center-based in
  absolute pixels; instance segmentation adds ``"points": [{"x", "y"}, ...]``, keypoint detection adds
  ``"keypoints": [{"x", "y", "confidence", "class_id", "class"}, ...]``;
* single-label classification: ``{"predictions": [{"class", "class_id", "confidence"}], "top",
  "confidence"}``;
* multi-label classification: ``{"predictions": {class: {"confidence", "class_id"}},
  "predicted_classes": [class, ...]}``.

A bare ``predictions`` list (detections, or a classification distribution) is accepted too.
"""

from __future__ import annotations

from math import isfinite
from typing import Any

from consumer.contract import MAX_ANNOTATIONS_PER_LIST
from consumer.errors import Reason, ValidationError
from consumer.formats.common import (
    MAX_IMAGE_SIDE,
    MAX_KEYPOINT_ID,
    Collected,
    ModelOutput,
    PredictionFormat,
    as_float,
    class_confidence,
    class_name,
    detection_confidence,
    finite,
    image_side,
    item,
    join,
    keypoint_id,
    number_error,
    type_error,
)
from consumer.model import Annotation

# Workflows pad every detection's keypoints to the batch maximum with slots whose class name is ""
# (``core_steps/common/keypoints.py``); older serializers sent those slots, always at the end.
_PADDING_CLASS = ""
# One detection list fills at most three annotation lists; past this it cannot fit whatever it holds.
_MAX_DETECTION_INPUT = 3 * MAX_ANNOTATIONS_PER_LIST


def convert_roboflow(value: Any, path: str) -> ModelOutput:
    """Convert a Roboflow response, or a bare Roboflow ``predictions`` list."""
    sink = Collected()
    if isinstance(value, list):
        convert_prediction_list(value, path, sink)
        return ModelOutput(sink.annotations(), PredictionFormat.ROBOFLOW)
    if not isinstance(value, dict):
        raise type_error("a Roboflow response object or a predictions array", value, path)
    width, height = convert_prediction_dict(value, path, sink)
    return ModelOutput(
        sink.annotations(),
        PredictionFormat.ROBOFLOW,
        visualization_base64=_visualization(value.get("visualization"), path),
        image_width=width,
        image_height=height,
    )


def convert_prediction_dict(
    response: dict[str, Any], path: str, sink: Collected
) -> tuple[int | None, int | None]:
    """Add the annotations of one ``{"predictions": ..., "image": ...}`` dict; return its image size."""
    predictions_path = join(path, "predictions")
    predictions = response.get("predictions")
    if predictions is None:
        raise ValidationError(Reason.MISSING_FIELD, "a model output needs predictions", predictions_path)
    if response.get("predicted_classes") is not None or isinstance(predictions, dict):
        _multi_label(response, predictions, path, sink)
    elif isinstance(predictions, list):
        if "top" in response or is_classification_list(predictions):
            _single_label(response, predictions, path, sink)
        else:
            convert_detections(predictions, predictions_path, sink)
    else:
        raise type_error("an array or an object", predictions, predictions_path)
    sink.check_caps(predictions_path)
    return _image_size(response.get("image"), path)


def convert_prediction_list(predictions: list[Any], path: str, sink: Collected) -> None:
    """Add the annotations of a bare ``predictions`` list: detections, or a classification distribution."""
    if is_classification_list(predictions):
        _classification_list(predictions, path, sink)
    else:
        convert_detections(predictions, path, sink)
    sink.check_caps(path)


def is_classification_list(predictions: list[Any]) -> bool:
    """Whether a ``predictions`` list holds classes (``{"class", "confidence"}``) rather than boxes."""
    if not predictions:
        return False
    first = predictions[0]
    return (
        isinstance(first, dict)
        and "x" not in first
        and "width" not in first
        and "box" not in first
        and "name" not in first
        and "confidence" in first
        and ("class" in first or "class_name" in first)
    )


def convert_detections(predictions: list[Any], path: str, sink: Collected) -> None:
    """Add center-based detections: boxes, polygons (``points``) and keypoints, in list order."""
    if len(predictions) > _MAX_DETECTION_INPUT:
        raise ValidationError(
            Reason.TOO_MANY,
            f"{len(predictions)} predictions; at most {MAX_ANNOTATIONS_PER_LIST} per list",
            path,
        )
    detections = sink.detections
    append = detections.append
    for index, prediction in enumerate(predictions):
        if type(prediction) is not dict:
            raise type_error("a prediction object", prediction, item(path, index))
        # Fast path, what inference servers send: a plain box, four finite floats, a non-negative
        # size, a float confidence in [0, 1] and a class name; no crop offset, outline or keypoints.
        # The result is exactly what the general path below makes of it.
        try:
            x = prediction["x"]
            y = prediction["y"]
            width = prediction["width"]
            height = prediction["height"]
            confidence = prediction["confidence"]
            name = prediction["class"]
        except KeyError:
            pass
        else:
            if (
                type(x) is float
                and type(y) is float
                and type(width) is float
                and type(height) is float
                and type(confidence) is float
                and type(name) is str
                and isfinite(x + y + width + height)
                and width >= 0.0
                and height >= 0.0
                and 0.0 <= confidence <= 1.0
                and "root_parent_origin" not in prediction
                and "keypoints" not in prediction
                and "points" not in prediction
                and "polygon" not in prediction
            ):
                append(
                    {
                        "class": name,
                        "x": x,
                        "y": y,
                        "width": width,
                        "height": height,
                        "confidence": confidence,
                    }
                )
                continue
        get = prediction.get
        x = get("x")
        y = get("y")
        width = get("width")
        height = get("height")
        # Fast path: four finite floats and a non-negative size (what servers send); else check each.
        if not (
            type(x) is float
            and type(y) is float
            and type(width) is float
            and type(height) is float
            and isfinite(x + y + width + height)
            and width >= 0.0
            and height >= 0.0
        ):
            x, y, width, height = _box(prediction, item(path, index))
        confidence = get("confidence")
        if not (type(confidence) is float and 0.0 <= confidence <= 1.0):
            confidence = detection_confidence(confidence, f"{path}[{index}].confidence")
        name = get("class")
        if type(name) is not str:
            name = class_name(name if name is not None else get("class_name"), f"{path}[{index}].class")

        dx = dy = 0.0
        origin = get("root_parent_origin")
        if origin is not None:
            # A detection made on a crop: move it into the root image, as Workflows'
            # sv_detections_to_root_coordinates would.
            dx, dy = _offset(origin, f"{path}[{index}].root_parent_origin")
            x = finite(x + dx, f"{path}[{index}].x")
            y = finite(y + dy, f"{path}[{index}].y")

        annotation: Annotation = {
            "class": name,
            "x": x,
            "y": y,
            "width": width,
            "height": height,
            "confidence": confidence,
        }
        if "keypoints" in prediction or "points" in prediction or "polygon" in prediction:
            _add_shaped(annotation, prediction, item(path, index), sink, dx=dx, dy=dy)
        else:
            detections.append(annotation)


def _add_shaped(
    annotation: Annotation, prediction: dict[str, Any], path: str, sink: Collected, *, dx: float, dy: float
) -> None:
    """File a detection that may carry keypoints or an outline under the list its shape calls for."""
    raw_keypoints = prediction.get("keypoints")
    if raw_keypoints is not None:
        points = _keypoints(raw_keypoints, join(path, "keypoints"), dx, dy)
        if points:
            annotation["keypoints"] = points
            sink.keypoints.append(annotation)
        else:
            # The block would send a keypoints item without "keypoints" (contract 4.4); whether the
            # API accepts that is not documented, so the safe reading files it as a plain box.
            sink.detections.append(annotation)
        return
    key = "points"
    raw_polygon = prediction.get("points")
    if raw_polygon is None:
        # Workflows: a detection whose outline is kept in data["polygon"] rather than a mask.
        key = "polygon"
        raw_polygon = prediction.get("polygon")
    if raw_polygon is not None:
        polygon = _polygon(raw_polygon, join(path, key), dx, dy)
        if len(polygon) >= 3:
            annotation["points"] = polygon
            sink.segmentations.append(annotation)
            return
    # No outline, or fewer than three points: the box is still a detection (contract §4.3).
    sink.detections.append(annotation)


def _box(prediction: dict[str, Any], path: str) -> tuple[float, float, float, float]:
    """Check the center box field by field (integers, errors); the loop's fast path skipped it."""
    values: list[float] = []
    for key in ("x", "y", "width", "height"):
        raw = prediction.get(key)
        value = as_float(raw)
        if value is None:
            raise number_error(raw, join(path, key))
        if value < 0.0 and key in ("width", "height"):
            raise ValidationError(Reason.INVALID_VALUE, "a box size cannot be negative", join(path, key))
        values.append(value)
    return values[0], values[1], values[2], values[3]


def _offset(origin: Any, path: str) -> tuple[float, float]:
    if not isinstance(origin, dict):
        raise type_error("an object", origin, path)
    raw_x = origin.get("offset_x")
    raw_y = origin.get("offset_y")
    dx = as_float(raw_x)
    if dx is None:
        raise number_error(raw_x, join(path, "offset_x"))
    dy = as_float(raw_y)
    if dy is None:
        raise number_error(raw_y, join(path, "offset_y"))
    return dx, dy


def _polygon(raw: Any, path: str, dx: float, dy: float) -> list[list[float]]:
    if type(raw) is not list:
        raise type_error("an array of points", raw, path)
    polygon: list[list[float]] = []
    append = polygon.append
    for index, point in enumerate(raw):
        if type(point) is dict:
            x = point.get("x")
            y = point.get("y")
        elif type(point) is list and len(point) == 2:
            x, y = point
        else:
            raise type_error("an {x, y} object or an [x, y] pair", point, item(path, index))
        if not (type(x) is float and type(y) is float and isfinite(x + y)):
            x, y = _point(point, path, index)
        if dx or dy:
            x = finite(x + dx, item(path, index))
            y = finite(y + dy, item(path, index))
        append([x, y])
    return polygon


def _point(point: dict[str, Any] | list[Any], path: str, index: int) -> tuple[float, float]:
    """Check a point's coordinates one by one (integers, errors); the loop's fast path skipped it."""
    if isinstance(point, dict):
        raw_x, raw_y = point.get("x"), point.get("y")
        x_path, y_path = f"{path}[{index}].x", f"{path}[{index}].y"
    else:
        raw_x, raw_y = point
        x_path, y_path = f"{path}[{index}][0]", f"{path}[{index}][1]"
    x = as_float(raw_x)
    if x is None:
        raise number_error(raw_x, x_path)
    y = as_float(raw_y)
    if y is None:
        raise number_error(raw_y, y_path)
    return x, y


def _is_padding(keypoint: Any) -> bool:
    if not isinstance(keypoint, dict):
        return False
    name = keypoint.get("class")
    if name is None:
        # Old responses named the field class_name.
        name = keypoint.get("class_name")
    return name == _PADDING_CLASS


def _keypoints(raw: Any, path: str, dx: float, dy: float) -> list[Annotation]:
    if not isinstance(raw, list):
        raise type_error("an array of keypoints", raw, path)
    count = len(raw)
    while count and _is_padding(raw[count - 1]):
        count -= 1
    points: list[Annotation] = []
    for index in range(count):
        keypoint = raw[index]
        if type(keypoint) is not dict:
            raise type_error("a keypoint object", keypoint, item(path, index))
        x = keypoint.get("x")
        y = keypoint.get("y")
        if not (type(x) is float and type(y) is float and isfinite(x + y)):
            x, y = _point(keypoint, path, index)
        if dx or dy:
            x = finite(x + dx, f"{path}[{index}].x")
            y = finite(y + dy, f"{path}[{index}].y")
        class_id = keypoint.get("class_id")
        if class_id is None:
            point_id = index
        elif type(class_id) is int and 0 <= class_id <= MAX_KEYPOINT_ID:
            point_id = class_id
        else:
            point_id = keypoint_id(class_id, f"{path}[{index}].class_id")
        points.append({"id": point_id, "x": x, "y": y})
    return points


def _classification_list(predictions: list[Any], path: str, sink: Collected) -> None:
    if len(predictions) > MAX_ANNOTATIONS_PER_LIST:
        raise ValidationError(
            Reason.TOO_MANY, f"{len(predictions)} classes; at most {MAX_ANNOTATIONS_PER_LIST} per list", path
        )
    out = sink.classifications
    for index, prediction in enumerate(predictions):
        if not isinstance(prediction, dict):
            raise type_error("a class object", prediction, item(path, index))
        name = prediction.get("class")
        confidence = prediction.get("confidence")
        # Fast path, what servers send: a class name and a finite float confidence, kept as they
        # are; exactly what class_name and class_confidence below make of them.
        if type(name) is str and type(confidence) is float and isfinite(confidence):
            out.append({"class": name, "confidence": confidence})
            continue
        if not isinstance(name, str):
            if name is None:
                name = prediction.get("class_name")
            name = class_name(name, f"{path}[{index}].class")
        confidence = class_confidence(confidence, f"{path}[{index}].confidence")
        out.append({"class": name, "confidence": confidence})


def _single_label(response: dict[str, Any], predictions: list[Any], path: str, sink: Collected) -> None:
    """Send the whole distribution; an empty one falls back to ``top`` (contract §4.5 item 4)."""
    _classification_list(predictions, join(path, "predictions"), sink)
    if predictions:
        return
    top = response.get("top")
    if top is None or top == "":
        return
    sink.classifications.append(
        {
            "class": class_name(top, join(path, "top")),
            "confidence": class_confidence(response.get("confidence"), join(path, "confidence")),
        }
    )


def _multi_label(response: dict[str, Any], predictions: Any, path: str, sink: Collected) -> None:
    """One item per predicted class; without ``predicted_classes``, every class (contract §4.5 item 3)."""
    predictions_path = join(path, "predictions")
    if not isinstance(predictions, dict):
        raise type_error("an object of class -> {confidence}", predictions, predictions_path)
    out = sink.classifications
    predicted = response.get("predicted_classes")
    if predicted is None:
        if len(predictions) > MAX_ANNOTATIONS_PER_LIST:
            raise ValidationError(
                Reason.TOO_MANY,
                f"{len(predictions)} classes; at most {MAX_ANNOTATIONS_PER_LIST} per list",
                predictions_path,
            )
        for name, details in predictions.items():
            confidence = _label_confidence(details, join(predictions_path, name))
            out.append({"class": name, "confidence": confidence})
        return
    predicted_path = join(path, "predicted_classes")
    if not isinstance(predicted, list):
        raise type_error("an array of class names", predicted, predicted_path)
    if len(predicted) > MAX_ANNOTATIONS_PER_LIST:
        raise ValidationError(
            Reason.TOO_MANY,
            f"{len(predicted)} predicted classes; at most {MAX_ANNOTATIONS_PER_LIST} per list",
            predicted_path,
        )
    for index, raw_name in enumerate(predicted):
        if raw_name is None:
            raise type_error("a class name", raw_name, item(predicted_path, index))
        name = class_name(raw_name, item(predicted_path, index))
        details = predictions.get(name)
        # A predicted class missing from the scores gets 0.0, as the Vision Events block does.
        confidence = 0.0 if details is None else _label_confidence(details, join(predictions_path, name))
        out.append({"class": name, "confidence": confidence})


def _label_confidence(details: Any, path: str) -> float:
    if isinstance(details, dict):
        return class_confidence(details.get("confidence"), join(path, "confidence"))
    if type(details) in (int, float):
        return class_confidence(details, path)
    raise type_error("an object {confidence}", details, path)


def _image_size(image: Any, parent: str) -> tuple[int | None, int | None]:
    """The ``image`` of the response at ``parent``: its width and height (paths are built on error)."""
    if image is None:
        return None, None
    if type(image) is dict:
        width, height = image.get("width"), image.get("height")
        # Fast path, what servers send: two integer sides in range, as image_side returns them.
        if (
            type(width) is int
            and type(height) is int
            and 0 <= width <= MAX_IMAGE_SIDE
            and 0 <= height <= MAX_IMAGE_SIDE
        ):
            return width, height
    path = join(parent, "image")
    if isinstance(image, list):
        # A batch response lists one size per image; only a single image has one size.
        if len(image) != 1:
            return None, None
        image = image[0]
        path = item(path, 0)
    if not isinstance(image, dict):
        raise type_error("an object {width, height}", image, path)
    return (
        image_side(image.get("width"), join(path, "width")),
        image_side(image.get("height"), join(path, "height")),
    )


def _visualization(value: Any, parent: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    raise type_error("a base64 string", value, join(parent, "visualization"))
