"""The behaviour every sink owes the pipeline, written once and run against each sink.

Like source_contract.py: :class:`SinkContract` holds the tests and is not collected;
``test_sinks.py`` subclasses it per sink and gives the ``harness`` fixture (a sink plus, where
there is one, the destination's fault switches). A sink whose destination cannot misbehave (the
in-memory double) says so in :class:`SinkCapabilities`, and the test asserts what it does
instead: nothing is skipped.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from consumer.contract import EventType
from consumer.errors import Reason
from consumer.model import InboundMessage, VisionEvent
from consumer.sinks.base import DeliveryReport, Sink

# Every wait has a bound; generous for a shared 2-core machine, never a speed claim.
BOUND = 30.0
USE_CASE = "contract-use-case"


class Fault(enum.Enum):
    """What a destination can be made to do to every request until the fault is cleared."""

    AUTH = "401 to every request"
    UNEXPECTED = "a 2xx that is not the contract's answer (a portal's HTML page)"
    SERVER_ERROR = "500 to every request"


@dataclass(frozen=True, slots=True)
class SinkCapabilities:
    """What a sink's destination can do in a test.

    - ``faults``: the destination can be made to fail (:class:`Fault`); the in-memory double
      cannot, so its ``auth_failing`` and ``answers_unexpected`` are checked to stay False.
    """

    faults: bool


class SinkHarness(abc.ABC):
    """A sink under test and its destination."""

    capabilities: SinkCapabilities
    sink: Sink

    @abc.abstractmethod
    def stored(self) -> int:
        """How many events the destination holds."""

    def requests(self) -> int:
        """How many requests the destination was sent (only with ``faults``)."""
        raise NotImplementedError

    def inject(self, fault: Fault) -> None:
        """Make every request fail with ``fault`` until :meth:`clear` (only with ``faults``)."""
        raise NotImplementedError

    def clear(self) -> None:
        """Remove the injected faults."""
        raise NotImplementedError


def event(n: int, *, refused: bool = False) -> VisionEvent:
    """A valid custom event (value ``v<n>``, a fresh eventId).

    ``refused``: one the contract refuses for good (a timestamp two years old, outside the window).
    """
    now = datetime.now(UTC)
    message = InboundMessage(source="test", topic="contract/cam", payload=b"{}", received_at=time.time())
    return VisionEvent(
        event_id=str(uuid.uuid4()),
        event_type=EventType.CUSTOM,
        use_case_id=USE_CASE,
        timestamp=now - timedelta(days=730) if refused else now,
        message=message,
        event_data={"value": f"v{n}"},
    )


def is_refused(candidate: VisionEvent) -> bool:
    """Whether the contract refuses ``candidate`` (for the in-memory double's ``refuse``)."""
    return candidate.timestamp < datetime.now(UTC) - timedelta(days=365)


def _accounted(sent: Sequence[VisionEvent], report: DeliveryReport) -> None:
    """Every event sent is in the report exactly once, delivered or rejected with a Reason."""
    delivered = [e.event_id for e in report.delivered]
    rejected = [r.event.event_id for r in report.rejected]
    assert sorted(delivered + rejected) == sorted(e.event_id for e in sent), "each event exactly once"
    assert all(isinstance(r.reason, Reason) and r.detail for r in report.rejected)


class SinkContract:
    """The contract of :class:`consumer.sinks.base.Sink`; subclasses give ``harness``."""

    @pytest.fixture
    def harness(self) -> SinkHarness:
        """One sink under test (overridden by every subclass)."""
        raise NotImplementedError

    def test_a_delivered_batch_accounts_for_every_event(self, harness: SinkHarness) -> None:
        async def scenario() -> None:
            sent = [event(n) for n in range(12)]
            report = await asyncio.wait_for(harness.sink.deliver(sent), BOUND)
            _accounted(sent, report)
            assert report.rejected == []
            assert harness.stored() == len(sent)
            await harness.sink.aclose()

        asyncio.run(scenario())

    def test_an_event_the_contract_refuses_is_rejected_not_accepted(self, harness: SinkHarness) -> None:
        async def scenario() -> None:
            sent = [event(n, refused=n in {2, 5}) for n in range(8)]
            report = await asyncio.wait_for(harness.sink.deliver(sent), BOUND)
            _accounted(sent, report)
            refused = {e.event_id for e in sent if is_refused(e)}
            assert {r.event.event_id for r in report.rejected} == refused
            assert {e.event_id for e in report.delivered} == {e.event_id for e in sent} - refused
            assert harness.stored() == len(sent) - len(refused)
            await harness.sink.aclose()

        asyncio.run(scenario())

    def test_an_auth_failure_sets_auth_failing_until_it_recovers(self, harness: SinkHarness) -> None:
        self._fault_then_recover(harness, Fault.AUTH)

    def test_an_unexpected_answer_sets_answers_unexpected_until_it_recovers(
        self, harness: SinkHarness
    ) -> None:
        self._fault_then_recover(harness, Fault.UNEXPECTED)

    def test_deliver_after_server_errors_recovers(self, harness: SinkHarness) -> None:
        self._fault_then_recover(harness, Fault.SERVER_ERROR)

    def test_aclose_is_idempotent(self, harness: SinkHarness) -> None:
        async def scenario() -> None:
            report = await asyncio.wait_for(harness.sink.deliver([event(1)]), BOUND)
            assert len(report.delivered) == 1
            await harness.sink.aclose()
            await harness.sink.aclose()

        asyncio.run(scenario())

    def _fault_then_recover(self, harness: SinkHarness, fault: Fault) -> None:
        """While ``fault`` lasts nothing is reported delivered; once cleared, everything is."""

        async def scenario() -> None:
            sink = harness.sink
            sent = [event(n) for n in range(5)]
            if harness.capabilities.faults:
                harness.inject(fault)
                try:
                    delivering = asyncio.get_running_loop().create_task(sink.deliver(sent))
                    # Two faulted answers: the sink has seen the fault and retried it.
                    await _until(lambda: harness.requests() >= 2 or delivering.done(), "two attempts")
                    await _until(
                        lambda: _flagged(sink, fault) or delivering.done(), f"the sink to flag {fault}"
                    )
                    assert not delivering.done(), "a batch was reported while the destination failed"
                    assert harness.stored() == 0
                finally:
                    harness.clear()
                report = await asyncio.wait_for(delivering, BOUND)
            else:
                report = await asyncio.wait_for(sink.deliver(sent), BOUND)
            _accounted(sent, report)
            assert report.rejected == []
            assert harness.stored() == len(sent)
            assert not sink.auth_failing and not sink.answers_unexpected, "the flags clear on success"
            # And the next batch goes through as if nothing had happened.
            again = [event(n) for n in range(5, 8)]
            _accounted(again, await asyncio.wait_for(sink.deliver(again), BOUND))
            assert harness.stored() == len(sent) + len(again)
            await sink.aclose()

        asyncio.run(scenario())


def _flagged(sink: Sink, fault: Fault) -> bool:
    """Whether ``sink`` shows ``fault`` on its flags (server errors show on neither: retried quietly)."""
    if fault is Fault.AUTH:
        return sink.auth_failing
    if fault is Fault.UNEXPECTED:
        return sink.answers_unexpected
    return True


async def _until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {BOUND}s waiting for {what}")
        await asyncio.sleep(0.02)
