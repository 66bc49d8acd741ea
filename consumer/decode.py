"""Bytes to JSON, exactly once per message, with the limits that keep hostile input harmless."""

from __future__ import annotations

from typing import Any

import orjson

from consumer.errors import DecodeError, Reason


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
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise DecodeError(Reason.TOO_DEEP, f"nesting deeper than {max_depth} levels")
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
