"""Turn one received message into a Vision Event, or a typed reason why not.

Order of work, cheapest refusal first: route by topic, decode once, read the envelope or the raw
model output, apply the route's values and rules, validate every limit, then the cooldown (so an
invalid message never uses up a cooldown window).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, cast
from urllib.parse import quote

import jmespath.exceptions
from jmespath.parser import ParsedResult
from pydantic import ValidationError as PydanticValidationError

from consumer import contract
from consumer.config import ImagesConfig, LimitsConfig
from consumer.decode import decode_message
from consumer.envelope import ENVELOPE_MARKERS, ImageInput, envelope_fields
from consumer.errors import FormatError, MessageError, Reason, RouteError, ValidationError
from consumer.formats import ModelOutput, PredictionFormat, convert_predictions, detect_format
from consumer.formats.common import ConvertOptions
from consumer.formats.detect import marked_edge_format
from consumer.formats.frigate import count_payload
from consumer.identity import event_id_for
from consumer.model import Annotations, ImageSource, InboundMessage, VisionEvent
from consumer.routing import (
    ImageUnavailablePolicy,
    MessageFormat,
    NoImagePolicy,
    Route,
    Router,
    RoutingTable,
    UnroutedPolicy,
)
from consumer.routing.values import Template, ValueSpec, condition_holds
from consumer.urls import host_allowed
from consumer.validation import (
    build_event_data,
    check_custom_metadata,
    parse_timestamp,
    require_event_type,
    require_non_empty_str,
    require_str,
)

_RAW_FORMATS = {
    MessageFormat.ROBOFLOW: PredictionFormat.ROBOFLOW,
    MessageFormat.WORKFLOW: PredictionFormat.WORKFLOW,
    MessageFormat.ULTRALYTICS: PredictionFormat.ULTRALYTICS,
    MessageFormat.DEEPSTREAM: PredictionFormat.DEEPSTREAM,
    MessageFormat.FRIGATE: PredictionFormat.FRIGATE,
    MessageFormat.AXIS: PredictionFormat.AXIS,
    MessageFormat.DEEPSTREAM_MINIMAL: PredictionFormat.DEEPSTREAM_MINIMAL,
    MessageFormat.DLSTREAMER: PredictionFormat.DLSTREAMER,
}


class SkipReason(StrEnum):
    """Why a valid message on purpose produced no event."""

    COOLDOWN = "suppressed"
    NO_ALERT = "filtered"
    # The route's ``when`` condition was false: filtered too, under its own label so it can be told apart.
    WHEN = "filtered_when"
    UNROUTED = "unrouted"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A message that is settled without an event (a route said so); it is counted and acknowledged."""

    reason: SkipReason
    route: str


@dataclass(slots=True)
class _Draft:
    """Field values collected for one message, before they are checked."""

    event_type: Any
    use_case: Any
    values: dict[str, Any]
    metadata: dict[str, Any]
    output: ModelOutput | None
    message_set: frozenset[str]


Getter = Callable[[Any, Mapping[str, Any]], Any]
# What a message states itself: predictions, fields, custom metadata, event type, use case.
_Read = tuple[ModelOutput | None, dict[str, Any], dict[str, Any] | None, Any, Any]


def compile_value(spec: ValueSpec) -> Getter:
    """A function equal to ``spec.evaluate`` that is cheaper for the common shapes.

    A selector that is a plain field path (``published_at``, ``meta.camera``) becomes dictionary
    lookups (what JMESPath does for them: a field of a non-object is null); a template that is one
    placeholder (``"{camera}"``) a lookup of a text value. Anything else is ``spec.evaluate``.
    """
    if spec.template is None and spec.selector is None:
        constant = spec.constant
        return lambda _document, _context: constant
    if spec.template is not None:
        names = spec.template.names
        render = spec.evaluate
        if len(names) == 1 and spec.template.text == "{" + names[0] + "}":
            name = names[0]

            def placeholder(document: Any, context: Mapping[str, Any]) -> Any:
                value = context.get(name)
                return value if type(value) is str else render(document, context)

            return placeholder
        return render
    if spec.selector is None:
        return spec.evaluate
    keys = _field_path(spec.selector.parsed)
    if keys is None:
        return spec.evaluate
    default = spec.default

    def lookup(document: Any, _context: Mapping[str, Any]) -> Any:
        value = document
        for key in keys:
            if not isinstance(value, dict):
                return default
            value = value.get(key)
            if value is None:
                return default
        return value

    return lookup


def _field_path(node: Any) -> tuple[str, ...] | None:
    """The keys of a JMESPath AST that is only fields and dots, else None."""
    if not isinstance(node, dict):
        return None
    kind = node.get("type")
    if kind == "field" and isinstance(node.get("value"), str):
        return (node["value"],)
    if kind == "subexpression":
        keys: list[str] = []
        for child in node.get("children", ()):
            part = _field_path(child)
            if part is None:
                return None
            keys.extend(part)
        return tuple(keys) if keys else None
    return None


@dataclass(frozen=True, slots=True)
class _Plan:
    """A route's values as compiled getters, in the route's order."""

    fields: tuple[tuple[str, Getter], ...]
    metadata: tuple[tuple[str, Getter], ...]
    use_case: Getter | None


def _plan(route: Route) -> _Plan:
    return _Plan(
        fields=tuple((name, compile_value(spec)) for name, spec in route.fields.items()),
        metadata=tuple((key, compile_value(spec)) for key, spec in route.custom_metadata.items()),
        use_case=None if route.use_case is None else compile_value(route.use_case),
    )


_IMAGE_KEYS: Final = frozenset({"base64", "url", "source_id"})


class Normalizer:
    """Routes, decodes and validates messages. Single-threaded: the pipeline owns it."""

    def __init__(
        self,
        table: RoutingTable,
        limits: LimitsConfig,
        images: ImagesConfig,
        *,
        on_annotations_dropped: Callable[[str], None] = lambda _reason: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._router = Router(table.routes)
        self._drop_unrouted = table.unrouted is UnroutedPolicy.DROP
        self._limits = limits
        self._allowed_hosts = tuple(images.url_allowed_hosts)
        self._on_annotations_dropped = on_annotations_dropped
        self._clock = clock
        self._plans: dict[int, _Plan] = {id(route): _plan(route) for route in table.routes}

    def route_name(self, topic: str) -> str:
        """The name of the route for ``topic``, or ``unrouted``; for metric labels."""
        found = self._router.match(topic)
        return "unrouted" if found is None else found[0].name

    def normalize(self, message: InboundMessage) -> VisionEvent | Skipped:
        """The event for ``message``, or Skipped. Raises MessageError when it can never be delivered."""
        found = self._router.match(message.topic)
        if found is None:
            if self._drop_unrouted:
                return Skipped(SkipReason.UNROUTED, "unrouted")
            raise RouteError(Reason.NO_ROUTE, f"no route matches topic {message.topic!r}")
        route, captures = found
        document = self.decode(route, message.payload)
        if route.when is not None and not _condition_holds(route.when, route.name, document):
            return Skipped(SkipReason.WHEN, route.name)
        context: dict[str, Any] = {"topic": message.topic, **captures}
        draft = self._collect(route, document, context)
        return self._build(route, message, draft, context)

    def decode(self, route: Route, payload: bytes) -> Any:
        """The message as ``route`` reads it: parsed JSON within the limits, or a Frigate count.

        A Frigate count topic's payload is a bare number, which only a route naming the format reads.
        """
        count = count_payload(payload) if route.format is MessageFormat.FRIGATE else None
        if count is not None:
            return count
        return decode_message(
            payload, max_bytes=self._limits.max_message_bytes, max_depth=self._limits.max_json_depth
        )

    def preview(
        self, route: Route, document: dict[str, Any] | list[Any], context: dict[str, Any]
    ) -> tuple[ModelOutput | None, dict[str, Any], dict[str, Any]]:
        """What a decoded message converts to on ``route``, before any rule, check or image decision.

        The predictions (the route's class_map applied), the field values and the custom metadata,
        the message's own over the route's; for ``inspect``. ``context`` is the topic and captures.
        """
        draft = self._collect(route, document, context)
        return draft.output, draft.values, draft.metadata

    # -- collecting values ---------------------------------------------------------------------------

    def _collect(self, route: Route, document: Any, context: dict[str, Any]) -> _Draft:
        output, given, given_metadata, event_type, use_case = self._read(route, document, context)
        if output is not None and output.context:
            # Names the message states (tracking id, camera, count...) for the route's templates;
            # a topic capture of the same name wins: the route spelled it out.
            for name, value in output.context.items():
                context.setdefault(name, value)
        plan = self._plan_of(route)
        values: dict[str, Any] = {}
        for name, get in plan.fields:
            value = get(document, context)
            if value is not None:
                values[name] = value
        metadata: dict[str, Any] = {}
        for key, get in plan.metadata:
            value = get(document, context)
            if value is not None:
                metadata[key] = value
        # The message's own values win over the route's (see docs/routing.md).
        if given:
            values.update(given)
        if given_metadata:
            metadata.update(given_metadata)
        if event_type is None:
            event_type = route.event_type
        if use_case is None and plan.use_case is not None:
            use_case = plan.use_case(document, context)
        if route.class_map is not None and output is not None:
            # Renamed once here, before the rules and the checks read the classes.
            _rename_classes(output.annotations, route.class_map)
        return _Draft(event_type, use_case, values, metadata, output, frozenset(given))

    def _read(self, route: Route, document: Any, context: dict[str, Any]) -> _Read:
        """The message's predictions and the fields it states itself, in the route's format."""
        fmt = route.format
        if fmt is MessageFormat.AUTO:
            fmt = self.detect(document)
        if fmt is not MessageFormat.ENVELOPE:
            converted = convert_predictions(
                document, _RAW_FORMATS[fmt], path="", options=_options_for(route, fmt, context)
            )
            return converted, converted.values, converted.metadata, None, None
        if not isinstance(document, dict):
            raise FormatError(Reason.NOT_AN_OBJECT, "an envelope message must be a JSON object")
        # The envelope's own non-null fields; what is left after these four are its EVENT_FIELDS.
        given = envelope_fields(document)
        predictions = given.pop("predictions", None)
        event_type = given.pop("event_type", None)
        use_case = given.pop("use_case", None)
        metadata = given.pop("custom_metadata", None)
        output: ModelOutput | None = None
        if predictions is not None:
            output = convert_predictions(
                predictions, PredictionFormat.AUTO, path="predictions", options=route.options
            )
        return output, given, metadata, event_type, use_case

    def _plan_of(self, route: Route) -> _Plan:
        plan = self._plans.get(id(route))
        if plan is None:  # a route this normalizer was not built with
            plan = self._plans[id(route)] = _plan(route)
        return plan

    @staticmethod
    def detect(document: dict[str, Any] | list[Any]) -> MessageFormat:
        """Which format a message of an ``auto`` route is: our envelope, or a model output's shape."""
        if isinstance(document, dict) and not ENVELOPE_MARKERS.isdisjoint(document):
            edge = marked_edge_format(document)
            return MessageFormat.ENVELOPE if edge is None else MessageFormat(edge.value)
        detected = detect_format(document)
        if detected is None:
            raise FormatError(
                Reason.UNKNOWN_FORMAT,
                "neither an envelope nor a supported model output (see docs/message-format.md)",
            )
        return MessageFormat(detected.value)

    # -- building the event --------------------------------------------------------------------------

    def _build(
        self, route: Route, message: InboundMessage, draft: _Draft, context: dict[str, Any]
    ) -> VisionEvent | Skipped:
        if draft.event_type is None:
            raise ValidationError(
                Reason.MISSING_FIELD, "no event type from the message or the route", "event_type"
            )
        event_type = require_event_type(draft.event_type, "event_type")
        if draft.use_case is None:
            raise ValidationError(
                Reason.MISSING_FIELD, "no use case from the message or the route", "use_case"
            )
        use_case = require_non_empty_str(draft.use_case, "use_case", contract.MAX_USE_CASE_CHARS)
        values = draft.values
        annotations: Annotations = draft.output.annotations if draft.output is not None else {}

        skipped = self._apply_rules(route, event_type, values, draft, annotations)
        if skipped is not None:
            return skipped

        if "timestamp" in values:
            now = datetime.fromtimestamp(self._clock(), UTC)
            timestamp = parse_timestamp(values["timestamp"], "timestamp", now)
        else:
            timestamp = datetime.fromtimestamp(message.received_at, UTC)
        event_data = build_event_data(event_type, values)
        metadata = check_custom_metadata(draft.metadata, "custom_metadata")
        device_id = _optional_str(values, "device_id", contract.MAX_DEVICE_ID_CHARS)
        stream_id = _optional_str(values, "stream_id", contract.MAX_STREAM_ID_CHARS)
        workflow_id = _optional_str(values, "workflow_id", contract.MAX_WORKFLOW_ID_CHARS)
        publisher_id = _optional_str(values, "event_id", 1000)

        image = values.get("input_image")
        if image is None and route.image_url is not None:
            input_image: ImageSource | None = self._image_of(
                "url", _image_url(route.image_url, context), "input_image"
            )
        else:
            input_image = self._image(image, "input_image")
        output_image = self._image(values.get("output_image"), "output_image")
        if output_image is None and draft.output is not None and draft.output.visualization_base64:
            output_image = self._image(draft.output.visualization_base64, "visualization")
        if annotations and input_image is None and output_image is None:
            if route.no_image_policy is NoImagePolicy.DEAD_LETTER:
                raise ValidationError(
                    Reason.MISSING_FIELD,
                    "predictions need an image to be attached to (route policy)",
                    "input_image",
                )
            self._on_annotations_dropped("no_image")
            annotations = {}

        if route.cooldown is not None:
            cooldown_context = {**context, **values, "event_type": event_type.value, "use_case": use_case}
            if not route.cooldown.admit(cooldown_context):
                return Skipped(SkipReason.COOLDOWN, route.name)

        return VisionEvent(
            event_id=event_id_for(publisher_id=publisher_id, topic=message.topic, payload=message.payload),
            event_type=event_type,
            use_case_id=use_case,
            timestamp=timestamp,
            message=message,
            route=route.name,
            event_data=event_data,
            custom_metadata=metadata,
            device_id=device_id,
            stream_id=stream_id,
            workflow_id=workflow_id,
            input_image=input_image,
            output_image=output_image,
            annotations=annotations,
            approx_bytes=len(message.payload),
            deliver_without_image=route.image_unavailable is ImageUnavailablePolicy.DELIVER_WITHOUT_IMAGE,
        )

    @staticmethod
    def _apply_rules(
        route: Route, event_type: Any, values: dict[str, Any], draft: _Draft, annotations: Annotations
    ) -> Skipped | None:
        """Fill fields the message did not set from the route's rules (message > rule > route)."""
        given = draft.message_set
        have_predictions = draft.output is not None
        if route.quality is not None and have_predictions and "qc_result" not in given:
            values["qc_result"] = route.quality.result(annotations)
        if route.count is not None:
            if have_predictions and "item_count" not in given:
                values["item_count"] = route.count.count(annotations)
            if route.count.item_type is not None and "item_type" not in given:
                values["item_type"] = route.count.item_type
        if (
            route.alert is not None
            and event_type == contract.EventType.SAFETY_ALERT
            and "alert_type" not in given
        ):
            alert = route.alert.alert(annotations)
            if alert is None:
                return Skipped(SkipReason.NO_ALERT, route.name)
            values["alert_type"] = alert.alert_type
            if "severity" not in given:
                values["severity"] = alert.severity
            if "alert_description" not in given:
                values["alert_description"] = alert.description
        return None

    def _image(self, value: Any, path: str) -> ImageSource | None:
        if value is None:
            return None
        if isinstance(value, ImageInput):
            spec = value
        elif isinstance(value, str):
            spec = (
                ImageInput(url=value)
                if value.startswith(("http://", "https://"))
                else ImageInput(base64=value)
            )
        elif isinstance(value, dict):
            if len(value) == 1:
                # {"source_id": "..."} and friends: what ImageInput accepts, without building it.
                ((key, text),) = value.items()
                if key in _IMAGE_KEYS and type(text) is str:
                    return self._image_of(key, text, path)
            try:
                spec = ImageInput.model_validate(value)
            except PydanticValidationError as exc:
                raise ValidationError(Reason.INVALID_IMAGE, exc.errors()[0]["msg"], path) from None
        else:
            raise ValidationError(
                Reason.INVALID_TYPE, "an image is {base64|url|source_id: ...} or a string", path
            )
        if spec.base64 is not None:
            return self._image_of("base64", spec.base64, path)
        if spec.url is not None:
            return self._image_of("url", spec.url, path)
        return self._image_of("source_id", cast("str", spec.source_id), path)

    def _image_of(self, key: str, text: str, path: str) -> ImageSource:
        """The image for one of ImageInput's three fields, checked."""
        if key == "base64":
            image = ImageSource(base64=text)
            try:
                data = image.data()
            except MessageError as exc:
                exc.path = path
                raise
            if contract.sniff_image_format(data) is None:
                raise ValidationError(
                    Reason.INVALID_IMAGE, "not a JPEG, PNG, WebP, GIF, TIFF, BMP, HEIC or AVIF", path
                )
            return image
        if key == "url":
            self._check_url(text, path)
            return ImageSource(url=text)
        return ImageSource(source_id=require_non_empty_str(text, path, 256))

    def _check_url(self, url: str, path: str) -> None:
        if not host_allowed(url, self._allowed_hosts):
            raise ValidationError(
                Reason.IMAGE_URL_NOT_ALLOWED,
                "only http(s) URLs on a host in images.url_allowed_hosts are fetched",
                path,
            )


def _condition_holds(condition: ParsedResult, route: str, document: Any) -> bool:
    """Evaluate a route's ``when`` once; a condition that cannot apply to this message refuses it."""
    try:
        return condition_holds(condition, document)
    except jmespath.exceptions.JMESPathError as exc:
        # e.g. a function given the wrong type; dead-lettered rather than guessed true or false.
        raise ValidationError(
            Reason.INVALID_VALUE, f"route {route!r}: condition 'when' cannot be evaluated: {exc}"
        ) from None


def _image_url(template: Template, context: Mapping[str, Any]) -> str:
    """Build a route's ``image_url`` for this message; each value is one URL-escaped path segment.

    Escaping keeps a value from adding path levels, a query or another host; a name the message
    does not state refuses it, as a URL with a hole in it would fetch the wrong image or none.
    """
    if not template.names:
        return template.text
    parts: dict[str, str] = {}
    for name in template.names:
        value = context.get(name)
        if value is None or value == "":
            detail = f"the route's image_url needs {{{name}}}, which this message does not state"
            raise ValidationError(Reason.MISSING_FIELD, detail, "input_image")
        parts[name] = quote(str(value), safe="")
    return template.text.format_map(parts)


def _rename_classes(annotations: Annotations, class_map: Mapping[str, str]) -> None:
    """Apply a route's ``class_map`` in place: the converters built these lists for this message alone."""
    for items in annotations.values():
        for annotation in items:
            renamed = class_map.get(annotation["class"])
            if renamed is not None:
                annotation["class"] = renamed


def _options_for(route: Route, fmt: MessageFormat, context: dict[str, Any]) -> ConvertOptions:
    """The route's converter options, with what Frigate messages need from the topic and the route.

    Frigate count topics name their camera and object only in the topic. A route attaching Frigate's
    event snapshot (``image_url`` ending in ``/snapshot.jpg``) wants the box of that frame
    (``after.snapshot.box``), not the live one (decision Q4 in docs/formats.md).
    """
    if fmt is not MessageFormat.FRIGATE:
        return route.options
    snapshot = route.image_url is not None and "/snapshot." in route.image_url.text
    return replace(route.options, topic=context["topic"], frigate_snapshot=snapshot)


def _optional_str(values: dict[str, Any], name: str, max_chars: int) -> str | None:
    value = values.get(name)
    return None if value is None else require_str(value, name, max_chars)
