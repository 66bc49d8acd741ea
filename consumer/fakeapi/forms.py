"""``multipart/form-data`` bodies (RFC 7578) parsed by aiohttp's multipart reader, strictly.

The server has read the whole body already (it enforces the size limits on the raw bytes), so the
reader is fed those bytes in one piece. On top of what aiohttp checks (boundary, part headers,
termination), the stand-in refuses what a real form upload never sends: another media type, a
part that is not ``form-data`` with a ``name``, a nested multipart, a field name twice.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import BodyPartReader, MultipartReader, StreamReader
from aiohttp.base_protocol import BaseProtocol
from aiohttp.hdrs import CONTENT_DISPOSITION, CONTENT_TYPE
from aiohttp.helpers import parse_mimetype
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import parse_content_disposition

from consumer.fakeapi.messages import Form, FormPart

FORM_DATA: Final = "multipart/form-data"
_MAX_BOUNDARY_CHARS: Final = 70  # RFC 2046 §5.1.1
_STREAM_LIMIT: Final = 64 * 1024


def is_form_data(content_type: str | None) -> bool:
    """Whether the Content-Type declares ``multipart/form-data`` (its boundary is checked later)."""
    return content_type is not None and content_type.partition(";")[0].strip().lower() == FORM_DATA


class _NotFormDataError(ValueError):
    """The body breaks one of the stand-in's own rules for form data."""


async def parse_form(content_type: str, body: bytes) -> Form:
    """Parse ``body`` into its parts by name; a malformed body gives a :class:`Form` with ``error``."""
    try:
        return Form(await _parts(content_type, body))
    except _NotFormDataError as exc:
        return Form(error=str(exc))
    except HttpProcessingError as exc:  # a malformed part header
        return Form(error=f"not well-formed multipart/form-data ({exc.message})")
    except (ValueError, AssertionError, RuntimeError) as exc:
        # aiohttp reports a malformed body as ValueError (e.g. "Invalid boundary"), a body cut
        # short as reading after its end, or asserts on what it expected to read.
        return Form(error=f"not well-formed multipart/form-data ({exc or type(exc).__name__})")


async def _parts(content_type: str, body: bytes) -> dict[str, FormPart]:
    boundary = parse_mimetype(content_type).parameters.get("boundary", "")
    if not 1 <= len(boundary) <= _MAX_BOUNDARY_CHARS or not boundary.isascii():
        raise _NotFormDataError("Content-Type needs a boundary of 1 to 70 ASCII characters")
    # aiohttp skips anything before the first line that is exactly the delimiter, so a body whose
    # first delimiter is glued to other bytes would lose its first part: refuse it instead.
    delimiter = b"--" + boundary.encode("ascii")
    start = body.find(delimiter)
    if start < 0 or (start > 0 and body[start - 2 : start] != b"\r\n"):
        raise _NotFormDataError("body does not start with the boundary")
    # The high-water mark above the body's size: the reader is never asked to pause a transport
    # (this stream has none; the bytes are all there).
    stream = StreamReader(BaseProtocol(asyncio.get_running_loop()), max(_STREAM_LIMIT, len(body)))
    stream.feed_data(body)
    stream.feed_eof()
    parts: dict[str, FormPart] = {}
    async for part in MultipartReader({CONTENT_TYPE: content_type}, stream):
        if not isinstance(part, BodyPartReader):
            raise _NotFormDataError("a nested multipart body is not a form field")
        disposition, params = parse_content_disposition(part.headers.get(CONTENT_DISPOSITION))
        name = params.get("name")
        if disposition != "form-data" or not name:
            raise _NotFormDataError('each part needs "Content-Disposition: form-data; name=..."')
        if name in parts:
            raise _NotFormDataError(f"field {name!r} appears more than once")
        data = await part.read(decode=False)
        parts[name] = FormPart(name, bytes(data), part.filename, part.headers.get(CONTENT_TYPE))
    return parts
