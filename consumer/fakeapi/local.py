"""The on-device Event Store endpoints: ``POST /v2/events`` and ``GET /health`` (§2.2, §5.1)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

import orjson

from consumer.fakeapi.messages import HttpError, Request, Response, is_json, json_response, local_error
from consumer.fakeapi.state import FakeState
from consumer.fakeapi.validation import ContractError, validate_local_event

# The body the blocks' tests mock for a full device (T-VE:883-900).
CAPACITY_BODY: Final = {
    "detail": "Device storage full. Waiting for cloud uploads to complete.",
    "error": "capacity_blocked",
}


def capacity_response() -> Response:
    """529: the device store is full until cloud uploads drain."""
    return json_response(529, CAPACITY_BODY)


class LocalEndpoints:
    """Handlers for the Event Store; the X-API-Key check runs before them."""

    def __init__(self, state: FakeState, clock: Callable[[], datetime]) -> None:
        self._state = state
        self._clock = clock

    def create_event(self, request: Request) -> Response:
        """``POST /v2/events``: exactly 201 ``{"id": "<uuid>"}``, or 529 when full."""
        # The blocks always send application/json (VE:821-824); required, as on the cloud.
        if not is_json(request.content_type):
            raise HttpError(local_error(415, "Content-Type must be application/json"))
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError as exc:
            raise HttpError(local_error(400, f"body: not valid JSON: {exc}")) from exc
        try:
            event = validate_local_event(body, self._clock())
        except ContractError as exc:
            raise HttpError(local_error(400, str(exc))) from exc
        event_id = self._state.store_local_event(event)
        if event_id is None:
            return capacity_response()
        return json_response(201, {"id": event_id})

    @staticmethod
    def health(request: Request) -> Response:
        """``GET /health``: always 200, no auth (DOCS event-store/rest-api)."""
        return json_response(200, {"status": "ok"})
