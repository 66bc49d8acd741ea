"""Values a route computes: constants, ``{capture}`` templates, and selectors into the message.

In the routes file a value is written as:

- a number or boolean: a constant;
- a string: a template; ``{name}`` is replaced by a topic capture (or, where documented, an event
  field); ``{{`` and ``}}`` are literal braces; a string without braces is a constant;
- ``{select: "<JMESPath>", default: <value>}``: a field of the decoded message.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jmespath
import jmespath.exceptions
from jmespath.parser import ParsedResult

from consumer.errors import ConfigError

_FORMATTER = string.Formatter()


@dataclass(frozen=True, slots=True)
class Template:
    """A string with ``{name}`` placeholders, checked against the known names when loaded."""

    text: str
    names: tuple[str, ...]

    def render(self, context: Mapping[str, object]) -> str:
        """Fill the placeholders; a value missing at run time renders as an empty string."""
        if not self.names:
            return self.text
        return self.text.format_map(_Defaulting(context))


class _Defaulting(dict[str, object]):
    def __init__(self, context: Mapping[str, object]) -> None:
        super().__init__(context)

    def __missing__(self, key: str) -> str:
        return ""


def parse_template(text: str, known: frozenset[str], where: str) -> Template:
    """Parse ``text``; every placeholder must be in ``known`` (a typo fails at start, not at 3 a.m.)."""
    names: list[str] = []
    try:
        for _literal, field_name, format_spec, conversion in _FORMATTER.parse(text):
            if field_name is None:
                continue
            if not field_name.isidentifier() or format_spec or conversion:
                raise ConfigError(f"{where}: placeholder {{{field_name}}} must be a plain name")
            if field_name not in known:
                options = ", ".join(sorted(known)) or "none"
                raise ConfigError(f"{where}: unknown placeholder {{{field_name}}} (known: {options})")
            names.append(field_name)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc} in template {text!r}") from exc
    if not names:
        # No placeholders: store the text with its escaped braces already resolved.
        return Template(text.replace("{{", "{").replace("}}", "}"), ())
    return Template(text, tuple(names))


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """How one value is computed: exactly one of constant, template or selector."""

    constant: Any = None
    template: Template | None = None
    selector: ParsedResult | None = None
    default: Any = None

    def evaluate(self, document: Any, context: Mapping[str, object]) -> Any:
        """The value for one message; None means 'not set'."""
        if self.template is not None:
            return self.template.render(context)
        if self.selector is not None:
            found = self.selector.search(document)
            return self.default if found is None else found
        return self.constant


def compile_condition(expression: str, where: str) -> ParsedResult:
    """Compile a route's ``when`` condition once, at load; a syntax error names the route."""
    try:
        return jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as exc:
        raise ConfigError(f"{where}: invalid JMESPath {expression!r}: {exc}") from exc


def condition_holds(condition: ParsedResult, document: Any) -> bool:
    """JMESPath truth: false, null, ``""``, ``[]`` and ``{}`` are false; anything else (``0`` too) is true."""
    found = condition.search(document)
    return not (found is None or found is False or (type(found) in (str, list, dict) and not found))


def parse_value(raw: Any, known: frozenset[str], where: str) -> ValueSpec:
    """Parse one value as written in the routes file."""
    if isinstance(raw, bool | int | float):
        return ValueSpec(constant=raw)
    if isinstance(raw, str):
        template = parse_template(raw, known, where)
        if not template.names:
            return ValueSpec(constant=template.text)
        return ValueSpec(template=template)
    if isinstance(raw, dict) and "select" in raw:
        extra = set(raw) - {"select", "default"}
        if extra:
            raise ConfigError(f"{where}: unknown keys {sorted(extra)} (a selector takes select and default)")
        expression = raw["select"]
        if not isinstance(expression, str):
            raise ConfigError(f"{where}: select must be a JMESPath string")
        try:
            compiled = jmespath.compile(expression)
        except jmespath.exceptions.ParseError as exc:
            raise ConfigError(f"{where}: invalid JMESPath {expression!r}: {exc}") from exc
        return ValueSpec(selector=compiled, default=raw.get("default"))
    raise ConfigError(f"{where}: a value is a constant, a template string or {{select: ...}}, not {raw!r}")
