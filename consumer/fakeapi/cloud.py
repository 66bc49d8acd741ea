"""The cloud Vision Events endpoints: upload, create, batch, use cases (contract §1.2, §2, §3)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qs

import orjson

from consumer.contract import IMAGE_CONTENT_TYPES, sniff_image_format
from consumer.fakeapi.messages import HttpError, Request, Response, cloud_error, is_json, json_response
from consumer.fakeapi.state import ACTIVE, INACTIVE, FakeState
from consumer.fakeapi.validation import (
    BatchContractError,
    ContractError,
    validate_batch,
    validate_cloud_event,
    validate_upload_metadata,
    validate_upload_name,
    validate_use_case_body,
)

IMAGES_PREFIX: Final = "/images/"
_UPLOAD_FIELDS: Final = frozenset({"file", "name", "metadata"})
LOOKBACK_DAYS: Final = 14


def _json_body(request: Request) -> Any:
    # The blocks and the SDK always send application/json; a server framework that keys its
    # body parser on the Content-Type would not see another body, so it is required.
    if not is_json(request.content_type):
        raise HttpError(cloud_error(415, "Content-Type must be application/json"))
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise HttpError(cloud_error(400, f"body: not valid JSON: {exc}")) from exc


def _text_part(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HttpError(cloud_error(400, f"{name}: not UTF-8 text")) from exc


class CloudEndpoints:
    """Handlers for ``/vision-events/...``; authentication is checked before they run."""

    def __init__(
        self,
        state: FakeState,
        clock: Callable[[], datetime],
        max_upload_bytes: int,
        default_host: Callable[[], str],
    ) -> None:
        self._state = state
        self._clock = clock
        self._max_upload_bytes = max_upload_bytes
        self._default_host = default_host

    def upload(self, request: Request) -> Response:
        """``POST /vision-events/upload``: multipart ``file`` (+ optional ``name``, ``metadata``)."""
        form = request.form
        if form is None:
            raise HttpError(cloud_error(400, "body: Content-Type must be multipart/form-data"))
        if form.error is not None:
            raise HttpError(cloud_error(400, f"body: {form.error}"))
        parts = form.parts
        for name in parts:
            # Other form fields: NOT FOUND; the documented three only.
            if name not in _UPLOAD_FIELDS:
                raise HttpError(cloud_error(400, f"{name}: unknown form field"))
        file = parts.get("file")
        if file is None:
            raise HttpError(cloud_error(400, "file: field required"))
        if len(file.data) > self._max_upload_bytes:
            raise HttpError(cloud_error(413, f"file: larger than {self._max_upload_bytes} bytes"))
        if sniff_image_format(file.data) is None:
            raise HttpError(
                cloud_error(400, "file: not a supported image (JPEG, PNG, WebP, GIF, TIFF, BMP, HEIC, AVIF)")
            )
        try:
            if "name" in parts:
                validate_upload_name(_text_part(parts["name"].data, "name"))
            if "metadata" in parts:
                validate_upload_metadata(_text_part(parts["metadata"].data, "metadata"))
        except ContractError as exc:
            raise HttpError(cloud_error(400, str(exc))) from exc
        source_id = self._state.add_upload(file.data)
        host = request.host or self._default_host()
        return json_response(
            201,
            {"success": True, "sourceId": source_id, "url": f"http://{host}{IMAGES_PREFIX}{source_id}.jpg"},
        )

    def create_event(self, request: Request) -> Response:
        """``POST /vision-events``: one event -> 201 ``{"eventId", "created": true}``."""
        body = _json_body(request)
        try:
            event = validate_cloud_event(body, self._state, self._clock())
        except ContractError as exc:
            raise HttpError(cloud_error(400, str(exc))) from exc
        self._state.store_events([event])
        return json_response(201, {"eventId": event["eventId"], "created": True})

    def create_batch(self, request: Request) -> Response:
        """``POST /vision-events/batch``: 1..100 events, all or nothing."""
        body = _json_body(request)
        try:
            events = validate_batch(body, self._state, self._clock())
        except BatchContractError as exc:
            raise HttpError(cloud_error(400, str(exc), index=exc.index)) from exc
        except ContractError as exc:
            raise HttpError(cloud_error(400, str(exc))) from exc
        self._state.store_events(events)
        return json_response(
            201, {"created": len(events), "eventIds": [event["eventId"] for event in events]}
        )

    def list_use_cases(self, request: Request) -> Response:
        """``GET /vision-events/use-cases[?status=active|inactive]``."""
        statuses = parse_qs(request.query).get("status")
        status = statuses[-1] if statuses else None
        if status is not None and status not in (ACTIVE, INACTIVE):
            raise HttpError(cloud_error(400, "status: must be active or inactive"))
        cases = [case.as_json() for case in self._state.use_cases(status)]
        return json_response(200, {"useCases": cases, "lookbackDays": LOOKBACK_DAYS})

    def create_use_case(self, request: Request) -> Response:
        """``POST /vision-events/use-cases`` ``{"name"}`` -> 201 ``{"id", "name"}``; 409 if taken."""
        try:
            name = validate_use_case_body(_json_body(request))
        except ContractError as exc:
            raise HttpError(cloud_error(400, str(exc))) from exc
        case = self._state.create_use_case(name)
        if case is None:
            raise HttpError(cloud_error(409, f"a use case named {name!r} already exists"))
        return json_response(201, {"id": case.id, "name": case.name})

    def image(self, request: Request) -> Response:
        """``GET /images/<sourceId>.jpg``: the bytes behind an upload's ``url`` (no auth)."""
        source_id = request.path[len(IMAGES_PREFIX) :].removesuffix(".jpg")
        data = self._state.upload(source_id)
        if data is None:
            raise HttpError(cloud_error(404, "no such image"))
        image_format = sniff_image_format(data) or "jpeg"
        return Response(200, data, IMAGE_CONTENT_TYPES[image_format])
