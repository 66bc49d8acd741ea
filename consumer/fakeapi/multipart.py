"""A small, strict ``multipart/form-data`` parser (RFC 7578) for the upload endpoint.

The standard library's ``cgi`` module is gone in 3.13 and ``email`` copies the payload several
times; this parser slices the body once per part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# A header parameter: token "=" (token | quoted-string), per RFC 9110 §5.6.6.
_PARAM: Final = re.compile(r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')
_QUOTED_PAIR: Final = re.compile(r"\\(.)")
_MAX_BOUNDARY_CHARS: Final = 70  # RFC 2046 §5.1.1


class MultipartError(ValueError):
    """The body is not well-formed ``multipart/form-data``."""


@dataclass(frozen=True, slots=True)
class FormPart:
    """One form field: its name, raw bytes and, for files, the filename and declared type."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None


def split_header_value(value: str) -> tuple[str, dict[str, str]]:
    """Split ``type/subtype; a=1; b="x"`` into the lowercased main value and its parameters."""
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(";" + rest):
        raw = match.group(2)
        if raw.startswith('"'):
            raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1])
        params[match.group(1).lower()] = raw
    return main.strip().lower(), params


def boundary_of(content_type: str | None) -> bytes:
    """Return the boundary of a ``multipart/form-data`` Content-Type, or raise :class:`MultipartError`."""
    if content_type is None:
        raise MultipartError("Content-Type must be multipart/form-data")
    media_type, params = split_header_value(content_type)
    if media_type != "multipart/form-data":
        raise MultipartError(f"Content-Type must be multipart/form-data, got {media_type!r}")
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= _MAX_BOUNDARY_CHARS or not boundary.isascii():
        raise MultipartError("Content-Type needs a boundary of 1 to 70 ASCII characters")
    return boundary.encode("ascii")


def _part(header_block: bytes, data: bytes) -> FormPart:
    headers: dict[str, str] = {}
    for line in header_block.split(b"\r\n") if header_block else ():
        name, colon, value = line.partition(b":")
        if not colon:
            raise MultipartError(f"malformed part header {line[:80]!r}")
        # RFC 7578 §5.1: field and file names may be UTF-8.
        headers[name.strip().lower().decode("ascii", "replace")] = value.strip().decode("utf-8", "replace")
    disposition, params = split_header_value(headers.get("content-disposition", ""))
    if disposition != "form-data" or not params.get("name"):
        raise MultipartError('each part needs "Content-Disposition: form-data; name=..."')
    return FormPart(
        name=params["name"],
        data=data,
        filename=params.get("filename"),
        content_type=headers.get("content-type"),
    )


def parse_form_data(content_type: str | None, body: bytes) -> dict[str, FormPart]:
    """Parse ``body`` into its parts by name; a repeated field name is an error."""
    delimiter = b"--" + boundary_of(content_type)
    start = body.find(delimiter)
    if start < 0 or (start > 0 and body[start - 2 : start] != b"\r\n"):
        raise MultipartError("body does not start with the boundary")
    next_delimiter = b"\r\n" + delimiter
    position = start + len(delimiter)
    parts: dict[str, FormPart] = {}
    while not body.startswith(b"--", position):  # "--" after a delimiter closes the body
        if not body.startswith(b"\r\n", position):
            raise MultipartError("boundary line is not followed by CRLF")
        # Search from the CRLF just consumed so a part without headers is found too.
        header_end = body.find(b"\r\n\r\n", position)
        if header_end < 0:
            raise MultipartError("part headers are not terminated")
        content_start = header_end + 4
        content_end = body.find(next_delimiter, content_start)
        if content_end < 0:
            raise MultipartError("part is not terminated by the boundary")
        part = _part(body[position + 2 : header_end], body[content_start:content_end])
        if part.name in parts:
            raise MultipartError(f"field {part.name!r} appears more than once")
        parts[part.name] = part
        position = content_end + len(next_delimiter)
    return parts
