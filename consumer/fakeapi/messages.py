"""The request and response values the endpoint functions work on, free of sockets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

JSON: Final = "application/json"


@dataclass(frozen=True, slots=True)
class FormPart:
    """One ``multipart/form-data`` field: its name, raw bytes and, for files, filename and type."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class Form:
    """A ``multipart/form-data`` body as the server parsed it: its parts by name, or why it is not one.

    ``error`` is set (and ``parts`` empty) when the body or its Content-Type is not well-formed
    form data; the endpoint decides what that means (the upload answers 400).
    """

    parts: Mapping[str, FormPart] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, with the few headers the fake reads.

    ``too_large`` marks a body over the endpoint's limit; it was discarded and ``body`` is empty.
    ``form`` is the body parsed as form data, for requests that declare ``multipart/form-data``
    (None otherwise): the server parses it with its HTTP library, the endpoints only read it.
    """

    method: str
    path: str
    query: str = ""
    body: bytes = b""
    authorization: str | None = None
    api_key: str | None = None
    content_type: str | None = None
    host: str | None = None
    too_large: bool = False
    form: Form | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP response; ``close`` asks the server to close the connection after it."""

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False


class HttpError(Exception):
    """Raised by endpoint code to answer with ``response`` right away."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def json_response(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """Build a JSON response."""
    return Response(status, orjson.dumps(payload), JSON, headers)


def cloud_error(status: int, message: str, **extra: Any) -> Response:
    """Build a cloud error ``{"error": ...}`` (the SDK mocks' shape; the real one is NOT FOUND)."""
    return json_response(status, {"error": message, **extra})


def local_error(status: int, detail: str) -> Response:
    """Build an Event Store error ``{"detail": ...}`` (FastAPI's shape, read by the blocks)."""
    return json_response(status, {"detail": detail})


def is_json(content_type: str | None) -> bool:
    """Whether the Content-Type is ``application/json`` (parameters such as charset allowed)."""
    if content_type is None:
        return False
    return content_type.partition(";")[0].strip().lower() == JSON
