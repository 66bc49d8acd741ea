"""Bytes to JSON, exactly once per message, with the limits that keep hostile input harmless."""

from __future__ import annotations

from typing import Any, Final

import orjson

from consumer.errors import DecodeError, Reason

# Payloads up to this size have their brackets counted before any walk (see decode_message).
_COUNT_BRACKETS_UP_TO: Final = 16 * 1024
_LEAVES: Final = frozenset({str, int, float, bool, type(None)})


def decode_message(payload: bytes, *, max_bytes: int, max_depth: int) -> dict[str, Any] | list[Any]:
    """Parse ``payload`` as a JSON object or array.

    Raises DecodeError for oversized payloads, invalid JSON (NaN and Infinity included, which
    orjson refuses), scalars at the top level, and nesting deeper than ``max_depth``.
    """
    if len(payload) > max_bytes:
        raise DecodeError(Reason.MESSAGE_TOO_LARGE, f"{len(payload)} bytes exceeds the limit of {max_bytes}")
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        text = str(exc)
        if "depth limit" in text:
            raise DecodeError(Reason.TOO_DEEP, f"nesting deeper than {max_depth} levels") from exc
        if "infinity" in text.lower() or payload_has_non_finite_literal(payload):
            raise DecodeError(
                Reason.NON_FINITE_NUMBER, "NaN and Infinity are not valid JSON numbers"
            ) from exc
        raise DecodeError(Reason.INVALID_JSON, text) from exc
    if not isinstance(value, dict | list):
        raise DecodeError(Reason.NOT_AN_OBJECT, f"top-level JSON {type(value).__name__} is not an object")
    # Nesting can be no deeper than the number of opening brackets: when even that is within the
    # limit (a typical message), walking the parsed value is not needed. Counting is only cheaper
    # than walking for small payloads; large ones are mostly long strings, cheap to walk.
    if len(payload) > _COUNT_BRACKETS_UP_TO or payload.count(b"{") + payload.count(b"[") > max_depth:
        check_depth(value, max_depth)
    return value


def payload_has_non_finite_literal(payload: bytes) -> bool:
    """Whether the bytes contain a NaN/Infinity literal, to give that common mistake its own reason."""
    return b"NaN" in payload or b"Infinity" in payload


def check_depth(value: dict[str, Any] | list[Any], max_depth: int) -> None:
    """Raise DecodeError when containers nest deeper than ``max_depth``.

    Iterative, and it visits containers only, so long strings (base64 images) cost nothing.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > max_depth:
            raise DecodeError(Reason.TOO_DEEP, f"nesting deeper than {max_depth} levels")
        children = node.values() if isinstance(node, dict) else node
        deeper = depth + 1
        for child in children:
            kind = type(child)
            # Exact types first (all orjson makes); subclasses still count as containers.
            if kind is dict or kind is list or (kind not in _LEAVES and isinstance(child, dict | list)):
                push((child, deeper))
