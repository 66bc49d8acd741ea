"""The routes file: its YAML shape, validated strictly, and compiled into :class:`Route` objects."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from consumer.contract import SEVERITIES, EventType
from consumer.errors import ConfigError
from consumer.formats.common import DEFAULT_OPTIONS, MAX_IMAGE_SIDE, ConvertOptions
from consumer.routing.route import (
    CONTEXT_NAMES,
    EVENT_FIELDS,
    ImageUnavailablePolicy,
    MessageFormat,
    NoImagePolicy,
    Route,
)
from consumer.routing.rules import AlertClass, AlertRule, Cooldown, CountRule, QualityRule
from consumer.routing.topics import compile_filter, compile_regex
from consumer.routing.values import compile_condition, parse_template, parse_value


class UnroutedPolicy(StrEnum):
    """What happens to a message no route matches."""

    DEAD_LETTER = "dead_letter"
    DROP = "drop"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class QualityRuleSpec(_Strict):
    """``quality_check:`` in a route."""

    fail_classes: list[str] = Field(min_length=1)
    min_confidence: float = Field(0.5, ge=0, le=1)


class CountRuleSpec(_Strict):
    """``inventory_count:`` in a route."""

    item_classes: list[str] = Field(default_factory=list)
    min_confidence: float = Field(0.5, ge=0, le=1)
    item_type: str | None = None


class AlertClassSpec(_Strict):
    """One class of ``safety_alert.classes``."""

    alert_type: str
    severity: str = "medium"
    description: str | None = None

    @model_validator(mode="after")
    def _check(self) -> AlertClassSpec:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {sorted(SEVERITIES)}")
        return self


class AlertRuleSpec(_Strict):
    """``safety_alert:`` in a route."""

    classes: dict[str, AlertClassSpec] = Field(min_length=1)
    min_confidence: float = Field(0.5, ge=0, le=1)


class CooldownSpec(_Strict):
    """``cooldown:`` in a route."""

    seconds: float = Field(gt=0)
    key: str = "{topic}"


class ImageSizeSpec(_Strict):
    """``image_size:`` in a route: the size of the publisher's frames, in pixels."""

    width: int = Field(gt=0, le=MAX_IMAGE_SIDE)
    height: int = Field(gt=0, le=MAX_IMAGE_SIDE)


class RouteSpec(_Strict):
    """One route as written in the file."""

    name: str | None = None
    when: str | None = Field(None, description="JMESPath condition over the message; false -> filtered.")
    match: str | None = Field(None, description="MQTT filter with {name} captures.")
    match_regex: str | None = Field(None, description="Full-match regex; named groups are captures.")
    format: MessageFormat = Field(MessageFormat.AUTO, description="auto, envelope, or a model-output format.")
    event_type: EventType | None = None
    use_case: Any = None
    fields: dict[str, Any] = Field(default_factory=dict)
    custom_metadata: dict[str, Any] = Field(default_factory=dict)
    quality_check: QualityRuleSpec | None = None
    inventory_count: CountRuleSpec | None = None
    safety_alert: AlertRuleSpec | None = None
    cooldown: CooldownSpec | None = None
    predictions_without_image: NoImagePolicy = NoImagePolicy.DELIVER_WITHOUT_ANNOTATIONS
    class_map: dict[str, str] = Field(default_factory=dict, description="Class renames, before the rules.")
    default_confidence: float | None = Field(
        None, ge=0, le=1, description="Confidence of a detection the publisher gave none."
    )
    image_url: str | None = Field(
        None, description="Input image URL template, for messages without an image of their own."
    )
    image_size: ImageSizeSpec | None = Field(
        None, description="Frame size for normalized coordinates when the message states none."
    )
    image_unavailable: ImageUnavailablePolicy = Field(
        ImageUnavailablePolicy.DEAD_LETTER,
        description="An image URL not fetched within its bound: dead_letter or deliver_without_image.",
    )

    @model_validator(mode="after")
    def _one_matcher(self) -> RouteSpec:
        if (self.match is None) == (self.match_regex is None):
            raise ValueError("a route needs exactly one of match (MQTT filter) or match_regex")
        return self


class RoutesFileSpec(_Strict):
    """The whole routes file."""

    routes: list[RouteSpec] = Field(min_length=1)
    unrouted: UnroutedPolicy = UnroutedPolicy.DEAD_LETTER


class RoutingTable:
    """The compiled routes, in file order, and the policy for unrouted messages."""

    def __init__(self, routes: list[Route], unrouted: UnroutedPolicy) -> None:
        self.routes = routes
        self.unrouted = unrouted


def compile_route(spec: RouteSpec, index: int) -> Route:
    """Turn one validated route into its runtime form; every template is checked here."""
    name = spec.name or f"route-{index + 1}"
    where = f"routes[{index}] ({name})"
    pattern = compile_filter(spec.match) if spec.match is not None else compile_regex(spec.match_regex or "")
    known = frozenset(pattern.captures) | {"topic"} | CONTEXT_NAMES
    unknown = set(spec.fields) - EVENT_FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown fields {sorted(unknown)}; allowed: {sorted(EVENT_FIELDS)}")
    fields = {k: parse_value(v, known, f"{where}.fields.{k}") for k, v in spec.fields.items()}
    metadata = {
        k: parse_value(v, known, f"{where}.custom_metadata.{k}") for k, v in spec.custom_metadata.items()
    }
    use_case = None if spec.use_case is None else parse_value(spec.use_case, known, f"{where}.use_case")
    cooldown = None
    if spec.cooldown is not None:
        cooldown_names = known | EVENT_FIELDS | {"event_type", "use_case"}
        cooldown = Cooldown(
            spec.cooldown.seconds, parse_template(spec.cooldown.key, cooldown_names, f"{where}.cooldown.key")
        )
    quality = None
    if spec.quality_check is not None:
        quality = QualityRule(frozenset(spec.quality_check.fail_classes), spec.quality_check.min_confidence)
    count = None
    if spec.inventory_count is not None:
        c = spec.inventory_count
        item_type = c.item_type or (c.item_classes[0] if len(c.item_classes) == 1 else None)
        count = CountRule(frozenset(c.item_classes), c.min_confidence, item_type)
    alert = None
    if spec.safety_alert is not None:
        classes = {
            k: AlertClass(v.alert_type, v.severity, v.description)
            for k, v in spec.safety_alert.classes.items()
        }
        alert = AlertRule(classes, spec.safety_alert.min_confidence)
    when = None if spec.when is None else compile_condition(spec.when, f"{where}.when")
    image_url = None
    if spec.image_url is not None:
        if not spec.image_url.lower().startswith(("http://", "https://")):
            raise ConfigError(f"{where}.image_url: an http:// or https:// URL template is required")
        image_url = parse_template(spec.image_url, known, f"{where}.image_url")
    empty = sorted(source for source, target in spec.class_map.items() if not target)
    if empty:
        raise ConfigError(f"{where}.class_map: {empty} map to an empty class name")
    options = DEFAULT_OPTIONS
    if spec.image_size is not None or spec.default_confidence is not None:
        size = spec.image_size
        options = ConvertOptions(
            image_width=None if size is None else size.width,
            image_height=None if size is None else size.height,
            default_confidence=spec.default_confidence,
        )
    return Route(
        name=name,
        pattern=pattern,
        format=spec.format,
        event_type=spec.event_type,
        use_case=use_case,
        fields=fields,
        custom_metadata=metadata,
        quality=quality,
        count=count,
        alert=alert,
        cooldown=cooldown,
        no_image_policy=spec.predictions_without_image,
        when=when,
        class_map=spec.class_map or None,
        options=options,
        image_url=image_url,
        image_unavailable=spec.image_unavailable,
    )


def parse_routes(data: Any, origin: str = "routes") -> RoutingTable:
    """Validate and compile routes from already-parsed YAML."""
    try:
        spec = RoutesFileSpec.model_validate(data)
    except PydanticValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{origin}: {problems}") from None
    names: set[str] = set()
    routes = []
    for index, route_spec in enumerate(spec.routes):
        route = compile_route(route_spec, index)
        if route.name in names:
            raise ConfigError(f"{origin}: route name {route.name!r} is used twice")
        names.add(route.name)
        routes.append(route)
    return RoutingTable(routes, spec.unrouted)


def load_routes(path: Path) -> RoutingTable:
    """Read, validate and compile a routes file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read routes file {path}: {exc}") from exc
    return parse_routes(data, str(path))
