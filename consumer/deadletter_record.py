"""The dead-letter record and the writer interface every destination implements.

Its own small module, below the pipeline (which builds records and writes them through a
:class:`DeadLetterWriter`) and below :mod:`consumer.deadletter` (the writers, which re-exports both).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from consumer.model import InboundMessage


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A message that will not become a delivered event, with everything needed to replay it.

    ``payload`` is the original bytes, unchanged. ``reason`` is a :class:`consumer.errors.Reason`
    value; ``detail`` the human explanation (the API's own words when it refused the event).

    A *cut* record (``payload_truncated``) carries only a prefix of the payload: its destination
    refused the whole one as too large. ``original_size`` and ``original_sha256`` then describe
    the bytes that were lost, so the loss is explicit and the original can be matched elsewhere.
    """

    payload: bytes
    reason: str
    detail: str
    coordinates: dict[str, Any]
    received_at: float
    dead_lettered_at: float
    attempts: int = 1
    path: str = ""
    event_id: str | None = None
    status: int | None = None
    headers: tuple[tuple[str, bytes], ...] = field(default=())
    payload_truncated: bool = False
    original_size: int | None = None
    original_sha256: str | None = None

    @classmethod
    def for_message(
        cls,
        message: InboundMessage,
        *,
        reason: str,
        detail: str,
        now: float,
        path: str = "",
        attempts: int = 1,
        event_id: str | None = None,
        status: int | None = None,
    ) -> DeadLetterRecord:
        """The record for ``message``, keeping its bytes, coordinates and headers."""
        return cls(
            payload=message.payload,
            reason=reason,
            detail=detail,
            coordinates=message.coordinates(),
            received_at=message.received_at,
            dead_lettered_at=now,
            attempts=attempts,
            path=path,
            event_id=event_id,
            status=status,
            headers=message.headers,
        )

    def cut(self, keep: int) -> DeadLetterRecord:
        """A copy with only the first ``keep`` bytes of its payload, marked as cut.

        The size and SHA-256 are those of the whole original payload, also when cutting an
        already cut record again.
        """
        if self.payload_truncated:
            return dataclasses.replace(self, payload=self.payload[: max(0, keep)])
        return dataclasses.replace(
            self,
            payload=self.payload[: max(0, keep)],
            payload_truncated=True,
            original_size=len(self.payload),
            original_sha256=hashlib.sha256(self.payload).hexdigest(),
        )

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-safe form: the payload is base64, and also text when it is valid UTF-8 (for humans)."""
        out: dict[str, Any] = {
            "reason": self.reason,
            "detail": self.detail,
            "path": self.path,
            "coordinates": self.coordinates,
            "received_at": self.received_at,
            "dead_lettered_at": self.dead_lettered_at,
            "attempts": self.attempts,
            "event_id": self.event_id,
            "status": self.status,
            "payload_base64": base64.b64encode(self.payload).decode("ascii"),
        }
        if self.headers:
            out["headers"] = [[k, base64.b64encode(v).decode("ascii")] for k, v in self.headers]
        if self.payload_truncated:
            out["payload_truncated"] = True
            out["original_size"] = self.original_size
            out["original_sha256"] = self.original_sha256
        return out

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> DeadLetterRecord:
        """Inverse of :meth:`to_json_dict`."""
        headers = tuple((str(k), base64.b64decode(v)) for k, v in data.get("headers", ()))
        return cls(
            payload=base64.b64decode(data["payload_base64"]),
            reason=str(data["reason"]),
            detail=str(data.get("detail", "")),
            coordinates=dict(data.get("coordinates", {})),
            received_at=float(data.get("received_at", 0.0)),
            dead_lettered_at=float(data.get("dead_lettered_at", 0.0)),
            attempts=int(data.get("attempts", 1)),
            path=str(data.get("path", "")),
            event_id=data.get("event_id"),
            status=data.get("status"),
            headers=headers,
            payload_truncated=data.get("payload_truncated") is True,
            original_size=None if data.get("original_size") is None else int(data["original_size"]),
            original_sha256=None if data.get("original_sha256") is None else str(data["original_sha256"]),
        )


class DeadLetterWriter(Protocol):
    """A destination for dead letters. ``write`` returns only once the records are durable.

    It raises :class:`consumer.errors.DeadLetterError` when it cannot confirm the write; the
    caller then acknowledges nothing and reports not-ready.
    """

    async def write(self, records: Sequence[DeadLetterRecord]) -> None:
        """Persist ``records``."""
        ...

    async def aclose(self) -> None:
        """Flush and release the destination."""
        ...
