"""In-memory stand-ins for a sink and a dead-letter writer, for tests that drive a real pipeline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from consumer.deadletter import DeadLetterRecord
from consumer.errors import DeadLetterError, Reason
from consumer.model import VisionEvent
from consumer.sinks.base import DeliveryReport, Rejection


def _never(_event: VisionEvent) -> bool:
    return False


def _always(_event: VisionEvent) -> bool:
    return True


class MemorySink:
    """A sink that answers at once and remembers everything it was given.

    Every knob is off by default, and then ``deliver`` never yields to the event loop: tests that
    count batches right after ``submit`` rely on that.

    - ``refuse``: events it picks come back rejected as ``api_rejected`` with ``refusal_detail`` and
      ``refusal_status``, the way the API refuses an event for good.
    - ``gate``: while it is an unset :class:`asyncio.Event`, batches holding an event that ``hold``
      picks (by default every event) wait for it; a gate never set holds them until cancelled.
    - ``delay``: each batch first sleeps for the longest delay of its events, so batches can finish
      out of order or slowly.

    ``batches`` is every batch as it was handed over, refused events included; ``events`` only the
    delivered ones, in the order their batches finished.
    """

    name = "memory"

    def __init__(
        self,
        *,
        refuse: Callable[[VisionEvent], bool] = _never,
        refusal_detail: str = "refused by the API",
        refusal_status: int = 422,
        hold: Callable[[VisionEvent], bool] = _always,
        delay: Callable[[VisionEvent], float] | None = None,
    ) -> None:
        self.batches: list[list[VisionEvent]] = []
        self.events: list[VisionEvent] = []
        self.refuse = refuse
        self.refusal_detail = refusal_detail
        self.refusal_status = refusal_status
        self.hold = hold
        self.gate: asyncio.Event | None = None
        self.delay = delay

    @property
    def auth_failing(self) -> bool:
        """Credentials are never refused."""
        return False

    @property
    def answers_unexpected(self) -> bool:
        """Every answer is the contract's."""
        return False

    async def deliver(self, events: Sequence[VisionEvent]) -> DeliveryReport:
        """Wait at the gate and sleep the delay if told to, then deliver all but the refused events."""
        if self.gate is not None and any(self.hold(event) for event in events):
            await self.gate.wait()
        if self.delay is not None:
            await asyncio.sleep(max(self.delay(event) for event in events))
        self.batches.append(list(events))
        report = DeliveryReport()
        for event in events:
            if self.refuse(event):
                rejection = Rejection(
                    event, Reason.API_REJECTED, self.refusal_detail, status=self.refusal_status
                )
                report.rejected.append(rejection)
            else:
                report.delivered.append(event)
        self.events.extend(report.delivered)
        return report

    async def aclose(self) -> None:
        """Nothing to release."""

    def ids(self) -> list[str]:
        """The eventIds of the delivered events, in delivery order."""
        return [event.event_id for event in self.events]

    def payloads(self) -> list[bytes]:
        """The original message bytes of the delivered events, in delivery order."""
        return [event.message.payload for event in self.events]

    def values(self) -> list[str]:
        """The ``value`` field of the delivered events' data, in delivery order."""
        return [str(event.event_data.get("value")) for event in self.events]


class MemoryDeadLetters:
    """A dead-letter writer that keeps the records in ``records``.

    Its first ``failures`` writes (``failures_left`` counts them down) raise
    :class:`DeadLetterError` and keep nothing, as an unreachable destination does.
    """

    def __init__(self, *, failures: int = 0) -> None:
        self.records: list[DeadLetterRecord] = []
        self.failures_left = failures

    async def write(self, records: Sequence[DeadLetterRecord]) -> None:
        """Keep ``records``, unless a failure is still due."""
        if self.failures_left:
            self.failures_left -= 1
            raise DeadLetterError("the dead-letter destination is down")
        self.records.extend(records)

    async def aclose(self) -> None:
        """Nothing to release."""
