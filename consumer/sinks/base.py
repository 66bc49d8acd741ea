"""The seam between the pipeline and a destination API."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from consumer.errors import Reason
from consumer.model import VisionEvent


@dataclass(slots=True, frozen=True)
class Rejection:
    """An event the destination refused for good, with the reason to dead-letter it under."""

    event: VisionEvent
    reason: Reason
    detail: str
    status: int | None = None
    attempts: int = 1


@dataclass(slots=True)
class DeliveryReport:
    """The final fate of every event of one batch: each is either delivered or rejected."""

    delivered: list[VisionEvent] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


class Sink(Protocol):
    """A destination. ``deliver`` retries transient failures itself and returns only final fates.

    It never raises for an HTTP outcome: retryable failures are retried (forever, or until the
    configured give-up time, after which the events come back as rejected with
    ``Reason.DELIVERY_TIMEOUT``); authentication failures are retried slowly and flip
    ``auth_failing``; refused events are isolated by splitting and come back as rejected.
    Cancellation (shutdown) propagates as ``asyncio.CancelledError``.
    """

    name: str

    @property
    def auth_failing(self) -> bool:
        """True while the destination refuses the credentials."""
        ...

    @property
    def answers_unexpected(self) -> bool:
        """True while the destination answers 2xx without the contract's answer (not ready)."""
        ...

    async def deliver(self, events: Sequence[VisionEvent]) -> DeliveryReport:
        """Deliver ``events`` (at most one batch) and report each one's fate."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
