"""Routing, fault injection, authentication and size limits in front of the endpoint handlers.

Order for an API request: global delay, fault rules (they model failures in front of the
service, so they win over everything), 404/405, 413 (a proxy refuses oversized bodies before the
service sees them), authentication, then the endpoint. Control routes skip all of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Final

import orjson

from consumer.fakeapi.cloud import IMAGES_PREFIX, CloudEndpoints
from consumer.fakeapi.control import CONTROL_PREFIX, ControlEndpoints
from consumer.fakeapi.faults import FaultAction, FaultPlan
from consumer.fakeapi.local import LocalEndpoints, capacity_response
from consumer.fakeapi.messages import HttpError, Request, Response, cloud_error, json_response, local_error
from consumer.fakeapi.state import DROPPED, FakeState

MIB: Final = 1024 * 1024
# Room for the multipart framing and the name/metadata parts (up to ~110 KB of metadata).
MULTIPART_OVERHEAD_BYTES: Final = MIB
CONTROL_BODY_LIMIT: Final = MIB
UNMATCHED: Final = "<unmatched>"
_BEARER: Final = "Bearer "


class Family(Enum):
    """Which API a route belongs to: it decides auth and the error body shape."""

    CLOUD = "cloud"  # Authorization: Bearer, {"error": ...}
    LOCAL = "local"  # optional X-API-Key, {"detail": ...}
    OPEN = "open"  # no auth, {"error": ...}


Handler = Callable[[Request], Response]


@dataclass(frozen=True, slots=True)
class Route:
    """A path's handlers by method; ``writes`` are the methods a read-only key may not use."""

    endpoint: str
    family: Family
    handlers: Mapping[str, Handler]
    writes: frozenset[str] = field(default_factory=lambda: frozenset({"POST", "PUT", "DELETE"}))


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits. The real ones are NOT FOUND (§7); these defaults are the fake's choice."""

    max_upload_bytes: int = 20 * MIB
    max_body_bytes: int = 10 * MIB
    max_local_body_bytes: int = 32 * MIB


def _error(family: Family, status: int, message: str) -> Response:
    if family is Family.LOCAL:
        return local_error(status, message)
    return cloud_error(status, message)


def _family_of(path: str) -> Family:
    return Family.LOCAL if path.startswith("/v2/") else Family.CLOUD


class FakeApp:
    """The whole fake API as a function from :class:`Request` to :class:`Response` (or a drop)."""

    def __init__(
        self,
        *,
        state: FakeState,
        faults: FaultPlan,
        api_keys: frozenset[str],
        read_only_keys: frozenset[str],
        local_api_key: str | None,
        limits: Limits,
        clock: Callable[[], datetime],
        default_host: Callable[[], str],
    ) -> None:
        self.state = state
        self.faults = faults
        self.limits = limits
        self._api_keys = api_keys
        self._read_only_keys = read_only_keys
        self._local_api_key = local_api_key
        cloud = CloudEndpoints(state, clock, limits.max_upload_bytes, default_host)
        local = LocalEndpoints(state, clock)
        self._control = ControlEndpoints(state, faults)
        self._image_route = Route(IMAGES_PREFIX + "{sourceId}", Family.OPEN, {"GET": cloud.image})
        self._routes: dict[str, Route] = {
            route.endpoint: route
            for route in (
                Route("/vision-events/upload", Family.CLOUD, {"POST": cloud.upload}),
                Route("/vision-events", Family.CLOUD, {"POST": cloud.create_event}),
                Route("/vision-events/batch", Family.CLOUD, {"POST": cloud.create_batch}),
                Route(
                    "/vision-events/use-cases",
                    Family.CLOUD,
                    {"GET": cloud.list_use_cases, "POST": cloud.create_use_case},
                ),
                Route("/v2/events", Family.LOCAL, {"POST": local.create_event}),
                Route("/health", Family.OPEN, {"GET": local.health}),
            )
        }

    def body_limit(self, path: str) -> int:
        """Return the largest request body accepted on ``path``; larger ones get 413."""
        if path == "/vision-events/upload":
            return self.limits.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
        if path.startswith("/v2/"):
            return self.limits.max_local_body_bytes
        if path.startswith(CONTROL_PREFIX):
            return CONTROL_BODY_LIMIT
        return self.limits.max_body_bytes

    def handle(self, request: Request) -> Response | None:
        """Answer ``request``; None means: close the connection without any response."""
        if request.path.startswith(CONTROL_PREFIX):
            if request.too_large:
                return cloud_error(413, "control request too large")
            return self._control.handle(request)
        route = self._routes.get(request.path)
        if route is None and request.path.startswith(IMAGES_PREFIX):
            route = self._image_route
        response = self._serve(request, route)
        status = DROPPED if response is None else response.status
        self.state.record(request.method, request.path, route.endpoint if route else UNMATCHED, status)
        return response

    def _serve(self, request: Request, route: Route | None) -> Response | None:
        family = route.family if route is not None else _family_of(request.path)
        if self.faults.latency_s > 0:
            time.sleep(self.faults.latency_s)
        action = self.faults.take(request.path)
        if action is not None:
            if action.latency_s > 0:
                time.sleep(action.latency_s)
            if action.drop_connection:
                return None
            if action.status is not None and action.answer is not None:
                return wrong_answer(action.answer, action.status, request.body)
            if action.status is not None:
                return self._fault_response(family, action.status, action)
        return self._route(request, route, family)

    def _route(self, request: Request, route: Route | None, family: Family) -> Response:
        if route is None:
            return _error(family, 404, f"no route for {request.path}")
        handler = route.handlers.get(request.method)
        if handler is None:
            response = _error(family, 405, f"{request.method} is not allowed on {route.endpoint}")
            return Response(response.status, response.body, headers=(("Allow", ", ".join(route.handlers)),))
        if request.too_large:
            return _error(family, 413, f"body larger than {self.body_limit(request.path)} bytes")
        try:
            self._authorize(request, route)
            return handler(request)
        except HttpError as exc:
            return exc.response

    def _authorize(self, request: Request, route: Route) -> None:
        if route.family is Family.LOCAL:
            if self._local_api_key is not None and request.api_key != self._local_api_key:
                raise HttpError(local_error(401, "Invalid or missing API key"))
            return
        if route.family is not Family.CLOUD:
            return
        if self.faults.auth_broken:
            raise HttpError(cloud_error(401, "API key rejected"))
        header = request.authorization or ""
        key = header[len(_BEARER) :] if header.startswith(_BEARER) else None
        if key in self._api_keys:
            return
        if key is not None and key in self._read_only_keys:
            if request.method in route.writes:
                raise HttpError(cloud_error(403, "API key lacks the vision-events:write scope"))
            return
        raise HttpError(cloud_error(401, "missing or invalid API key (Authorization: Bearer <key>)"))

    @staticmethod
    def _fault_response(family: Family, status: int, action: FaultAction) -> Response:
        if family is Family.LOCAL and status == 529:
            response = capacity_response()
        else:
            response = _error(family, status, f"injected fault (HTTP {status})")
        if action.retry_after is None:
            return response
        return Response(status, response.body, headers=(("Retry-After", str(action.retry_after)),))


_PORTAL_PAGE: Final = (
    b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Wi-Fi login</body></html>"
)


def wrong_answer(kind: str, status: int, body: bytes) -> Response:
    """A success status whose body is not the contract's answer (see ``faults.WRONG_ANSWERS``)."""
    if kind == "html":
        return Response(status, _PORTAL_PAGE, "text/html; charset=utf-8")
    if kind == "ok_true":
        return json_response(status, {"ok": True})
    if kind == "empty":
        return Response(status, b"")
    try:
        events = orjson.loads(body).get("events", [])
        sent = [event["eventId"] for event in events if isinstance(event, dict) and "eventId" in event]
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        sent = []
    count = max(len(sent), 1)
    if kind == "duplicate_ids":
        ids = [sent[0] if sent else "evt"] * max(count, 2)
    else:
        ids = [f"not-sent-{n}" for n in range(count)]
    return json_response(status, {"created": len(ids), "eventIds": ids})
