"""``/_fake/...``: drive and inspect the fake from another process (demo, benchmark).

No authentication: these routes exist only in the fake and are namespaced away from the API.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qs

import orjson

from consumer.fakeapi.faults import FaultPlan, rule_from_json
from consumer.fakeapi.messages import HttpError, Request, Response, json_response
from consumer.fakeapi.state import FakeState

CONTROL_PREFIX: Final = "/_fake/"
_CONFIG_FIELDS: Final = frozenset({"latency_s", "auth_broken", "local_capacity"})


def _error(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


def _json(request: Request) -> Any:
    if not request.body:
        return {}
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise HttpError(_error(400, f"not valid JSON: {exc}")) from exc


class ControlEndpoints:
    """The control routes, by (method, path)."""

    def __init__(self, state: FakeState, faults: FaultPlan) -> None:
        self._state = state
        self._faults = faults
        self._routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", "/_fake/faults"): self._list_faults,
            ("POST", "/_fake/faults"): self._add_fault,
            ("DELETE", "/_fake/faults"): self._clear_faults,
            ("GET", "/_fake/events"): self._events,
            ("GET", "/_fake/local-events"): self._local_events,
            ("GET", "/_fake/uploads"): self._uploads,
            ("GET", "/_fake/stats"): self._stats,
            ("GET", "/_fake/acceptance"): self._acceptance,
            ("DELETE", "/_fake/acceptance"): self._clear_acceptance,
            ("POST", "/_fake/reset"): self._reset,
            ("GET", "/_fake/config"): self._config,
            ("POST", "/_fake/config"): self._set_config,
        }

    def handle(self, request: Request) -> Response:
        """Answer a control request (404/405 for unknown routes)."""
        handler = self._routes.get((request.method, request.path))
        if handler is None:
            known = any(path == request.path for _, path in self._routes)
            return _error(405 if known else 404, "unknown control route")
        try:
            return handler(request)
        except HttpError as exc:
            return exc.response

    def _list_faults(self, request: Request) -> Response:
        return json_response(200, {"rules": self._faults.rules()})

    def _add_fault(self, request: Request) -> Response:
        try:
            rule = rule_from_json(_json(request))
        except (TypeError, ValueError) as exc:
            return _error(400, str(exc))
        self._faults.add(rule)
        return json_response(201, {"rule": rule.describe()})

    def _clear_faults(self, request: Request) -> Response:
        return json_response(200, {"cleared": self._faults.clear()})

    def _events(self, request: Request) -> Response:
        events = list(self._state.events().values())
        return json_response(200, {"count": len(events), "events": events})

    def _local_events(self, request: Request) -> Response:
        events = self._state.local_events()
        return json_response(200, {"count": len(events), "events": events})

    def _uploads(self, request: Request) -> Response:
        sizes = self._state.upload_sizes()
        return json_response(200, {"count": len(sizes), "uploads": sizes})

    def _stats(self, request: Request) -> Response:
        return json_response(200, self._state.stats())

    def _acceptance(self, request: Request) -> Response:
        # ?summary=count: only count/first/last (cheap enough to poll many times a second);
        # else latency percentiles too, and the timeline unless ?timeline=0.
        query = parse_qs(request.query)
        if query.get("summary") == ["count"]:
            return json_response(200, self._state.acceptance.count())
        timeline = query.get("timeline") != ["0"]
        return json_response(200, self._state.acceptance.summary(timeline=timeline))

    def _clear_acceptance(self, request: Request) -> Response:
        self._state.acceptance.reset()
        return json_response(200, {"cleared": True})

    def _reset(self, request: Request) -> Response:
        self._state.reset()
        self._faults.reset()
        return json_response(200, {"reset": True})

    def _config(self, request: Request) -> Response:
        return json_response(
            200,
            {
                "latency_s": self._faults.latency_s,
                "auth_broken": self._faults.auth_broken,
                "local_capacity": self._state.local_capacity,
            },
        )

    def _set_config(self, request: Request) -> Response:
        data = _json(request)
        if not isinstance(data, dict) or not set(data) <= _CONFIG_FIELDS:
            return _error(400, f"expected an object with keys among {sorted(_CONFIG_FIELDS)}")
        latency = data.get("latency_s", self._faults.latency_s)
        capacity = data.get("local_capacity", self._state.local_capacity)
        auth_broken = data.get("auth_broken", self._faults.auth_broken)
        if isinstance(latency, bool) or not isinstance(latency, int | float) or not math.isfinite(latency):
            return _error(400, "latency_s must be a number")
        if latency < 0 or not isinstance(auth_broken, bool):
            return _error(400, "latency_s must be >= 0 and auth_broken a boolean")
        if capacity is not None and (
            isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0
        ):
            return _error(400, "local_capacity must be null or an integer >= 0")
        self._faults.latency_s = float(latency)
        self._faults.auth_broken = auth_broken
        self._state.local_capacity = capacity
        return self._config(request)
