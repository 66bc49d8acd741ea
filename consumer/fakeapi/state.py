"""Everything the fake API remembers, behind one lock: uploads, events, use cases, counters.

With ``retain=False`` (the stand-in's fast mode, for benchmarks) event bodies and image bytes are
not kept: only event ids (so overwrites are still counted) and upload ids with their sizes (so an
event can still only name an uploaded image). Memory then stays small over millions of events.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from consumer.fakeapi.acceptance import AcceptanceLog

ACTIVE: Final = "active"
INACTIVE: Final = "inactive"
# Status 0 in the request log marks a connection dropped on purpose (no response sent).
DROPPED: Final = 0


@dataclass(frozen=True, slots=True)
class UseCase:
    """A use case: events must name an active one's ``id`` as their ``useCaseId``."""

    id: str
    name: str
    status: str = ACTIVE

    def as_json(self) -> dict[str, str]:
        """Render the list-endpoint shape ``{"id", "name", "status"}``."""
        return {"id": self.id, "name": self.name, "status": self.status}


class FakeState:
    """The fake's memory; every method is safe to call from any thread."""

    def __init__(
        self,
        use_cases: Sequence[str],
        inactive_use_cases: Sequence[str] = (),
        local_capacity: int | None = None,
        request_log_limit: int = 100_000,
        *,
        retain: bool = True,
    ) -> None:
        self._lock = threading.Lock()
        self.retain = retain
        self.acceptance = AcceptanceLog()
        self._initial_use_cases = [UseCase(id_, id_) for id_ in use_cases] + [
            UseCase(id_, id_, INACTIVE) for id_ in inactive_use_cases
        ]
        self._initial_capacity = local_capacity
        self._use_cases: dict[str, UseCase] = {}
        self._uploads: dict[str, bytes] = {}
        self._upload_sizes: dict[str, int] = {}
        self._events: dict[str, dict[str, Any]] = {}
        self._local_events: list[dict[str, Any]] = []
        # Bounded, so a long benchmark cannot grow memory without limit.
        self._log: deque[tuple[str, str, int]] = deque(maxlen=request_log_limit)
        self._counts: Counter[tuple[str, str, int]] = Counter()
        self._event_types: Counter[str] = Counter()
        self._local_event_types: Counter[str] = Counter()
        self._overwrites = 0
        self.local_capacity = local_capacity
        self.reset()

    def reset(self) -> None:
        """Forget everything received; restore the use cases and capacity given at start."""
        with self._lock:
            self._use_cases = {case.id: case for case in self._initial_use_cases}
            self._uploads.clear()
            self._upload_sizes.clear()
            self._events.clear()
            self._local_events.clear()
            self._log.clear()
            self._counts.clear()
            self._event_types.clear()
            self._local_event_types.clear()
            self._overwrites = 0
            self.local_capacity = self._initial_capacity
        self.acceptance.reset()

    # --- references (validation.References) ---------------------------------------------------

    def is_active_use_case(self, use_case_id: str) -> bool:
        """Whether ``use_case_id`` is the id of an active use case."""
        with self._lock:
            case = self._use_cases.get(use_case_id)
        return case is not None and case.status == ACTIVE

    def is_uploaded(self, source_id: str) -> bool:
        """Whether ``source_id`` came from an upload."""
        with self._lock:
            return source_id in self._upload_sizes

    # --- writes -------------------------------------------------------------------------------

    def add_upload(self, data: bytes) -> str:
        """Keep an uploaded image; return its new ``sourceId``."""
        source_id = f"ve-img-{secrets.token_hex(8)}"
        with self._lock:
            self._upload_sizes[source_id] = len(data)
            if self.retain:
                self._uploads[source_id] = data
        return source_id

    def store_events(self, events: Iterable[dict[str, Any]]) -> int:
        """Store validated cloud events by eventId; return how many replaced an earlier one."""
        replaced = 0
        batch = list(events)
        # Without retention the id maps to an empty body: still a set of ids, for the overwrites.
        empty: dict[str, Any] = {}
        with self._lock:
            stored = self._events
            for event in batch:
                event_id = event["eventId"]
                if event_id in stored:
                    replaced += 1
                stored[event_id] = event if self.retain else empty
                self._event_types[event["eventType"]] += 1
            self._overwrites += replaced
        self.acceptance.record(event.get("timestamp") for event in batch)
        return replaced

    def store_local_event(self, event: dict[str, Any]) -> str | None:
        """Store a validated v2 event; return its new id, or None when the store is full."""
        with self._lock:
            if self.local_capacity is not None and len(self._local_events) >= self.local_capacity:
                return None
            self._local_events.append(event)
            self._local_event_types[event["event_schema"]] += 1
        return str(uuid.uuid4())

    def create_use_case(self, name: str) -> UseCase | None:
        """Create an active use case named ``name``; None when the name is taken."""
        with self._lock:
            if any(case.name == name for case in self._use_cases.values()):
                return None
            case = UseCase(secrets.token_hex(4), name)
            while case.id in self._use_cases:
                case = UseCase(secrets.token_hex(4), name)
            self._use_cases[case.id] = case
            return case

    def record(self, method: str, path: str, endpoint: str, status: int) -> None:
        """Count one request: the log keeps its path, the counters its endpoint template."""
        with self._lock:
            self._log.append((method, path, status))
            self._counts[(method, endpoint, status)] += 1

    # --- reads --------------------------------------------------------------------------------

    def use_cases(self, status: str | None = None) -> list[UseCase]:
        """Use cases, optionally only those with ``status``."""
        with self._lock:
            return [case for case in self._use_cases.values() if status is None or case.status == status]

    def upload(self, source_id: str) -> bytes | None:
        """Return the bytes of an upload, or None (always None for a non-retaining state)."""
        with self._lock:
            return self._uploads.get(source_id)

    def uploads(self) -> dict[str, bytes]:
        """Return a copy of sourceId -> image bytes (empty for a non-retaining state)."""
        with self._lock:
            return dict(self._uploads)

    def upload_sizes(self) -> dict[str, int]:
        """Return sourceId -> size in bytes of every upload."""
        with self._lock:
            return dict(self._upload_sizes)

    def events(self) -> dict[str, dict[str, Any]]:
        """Return a copy of eventId -> the last stored cloud event body (bodies are shared).

        Without retention every body is ``{}``.
        """
        with self._lock:
            return dict(self._events)

    def local_events(self) -> list[dict[str, Any]]:
        """Return a copy of the list of stored v2 bodies, oldest first."""
        with self._lock:
            return list(self._local_events)

    def request_log(self) -> list[tuple[str, str, int]]:
        """Return (method, path, status) of the most recent requests, oldest first."""
        with self._lock:
            return list(self._log)

    def request_counts(self) -> dict[tuple[str, str, int], int]:
        """Return (method, endpoint, status) -> number of requests."""
        with self._lock:
            return dict(self._counts)

    @property
    def overwrites(self) -> int:
        """How many stored cloud events were replaced by a later one with the same eventId."""
        with self._lock:
            return self._overwrites

    def stats(self) -> dict[str, Any]:
        """Counters as JSON-ready data (``GET /_fake/stats``).

        ``requests`` maps ``"METHOD /endpoint"`` to counts by status ("0" = dropped connection);
        ``eventTypes`` counts accepted cloud event writes by type, overwrites included.
        """
        with self._lock:
            requests: dict[str, dict[str, int]] = {}
            for (method, endpoint, status), count in sorted(self._counts.items()):
                requests.setdefault(f"{method} {endpoint}", {})[str(status)] = count
            return {
                "requests": requests,
                "totalRequests": sum(self._counts.values()),
                "events": len(self._events),
                "overwrites": self._overwrites,
                "eventTypes": dict(self._event_types),
                "localEvents": len(self._local_events),
                "localEventTypes": dict(self._local_event_types),
                "localCapacity": self.local_capacity,
                "uploads": len(self._upload_sizes),
                "retain": self.retain,
            }
