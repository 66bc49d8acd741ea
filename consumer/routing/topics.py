"""Topic patterns: MQTT filters with named captures, or Kafka-style regular expressions.

``factory/{site}/{camera}/qc`` matches ``factory/berlin/cam-7/qc`` and captures
``site=berlin, camera=cam-7``. ``+`` is an anonymous single level and a trailing ``#`` any number
of levels, as in MQTT. A regex pattern must match the whole topic; its named groups are captures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from consumer.errors import ConfigError

_CAPTURE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


@dataclass(frozen=True, slots=True)
class TopicPattern:
    """A compiled topic pattern; ``captures`` are the names it binds."""

    text: str
    regex: re.Pattern[str]
    captures: tuple[str, ...]
    mqtt_filter: str | None

    def match(self, topic: str) -> dict[str, str] | None:
        """The captures when ``topic`` matches, else None."""
        found = self.regex.fullmatch(topic)
        return None if found is None else found.groupdict()


def compile_filter(pattern: str) -> TopicPattern:
    """Compile an MQTT filter with optional ``{name}`` single-level captures."""
    if not pattern:
        raise ConfigError("a topic filter cannot be empty")
    levels = pattern.split("/")
    parts: list[str] = []
    captures: list[str] = []
    mqtt_levels: list[str] = []
    for index, level in enumerate(levels):
        named = _CAPTURE.match(level)
        if level == "#":
            if index != len(levels) - 1:
                raise ConfigError(f"topic filter {pattern!r}: '#' must be the last level")
            # MQTT: 'a/#' also matches 'a' itself.
            if parts:
                parts[-1] = parts[-1] + "(?:/.*)?"
            else:
                parts.append(".*")
            mqtt_levels.append("#")
            continue
        if level == "+":
            parts.append("[^/]*")
            mqtt_levels.append("+")
        elif named is not None:
            name = named.group(1)
            if name in captures:
                raise ConfigError(f"topic filter {pattern!r}: capture {{{name}}} appears twice")
            captures.append(name)
            parts.append(f"(?P<{name}>[^/]*)")
            mqtt_levels.append("+")
        elif any(ch in level for ch in "+#{}"):
            raise ConfigError(f"topic filter {pattern!r}: level {level!r} mixes wildcards and text")
        else:
            parts.append(re.escape(level))
            mqtt_levels.append(level)
    regex = _join_levels(parts)
    return TopicPattern(pattern, re.compile(regex), tuple(captures), "/".join(mqtt_levels))


def _join_levels(parts: list[str]) -> str:
    out = ""
    for index, part in enumerate(parts):
        if index == 0:
            out = part
        elif part == ".*":
            out += part
        else:
            out += "/" + part
    return out


def compile_regex(pattern: str) -> TopicPattern:
    """Compile a full-match regular expression whose named groups are captures."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"topic regex {pattern!r}: {exc}") from exc
    return TopicPattern(pattern, regex, tuple(regex.groupindex), None)
