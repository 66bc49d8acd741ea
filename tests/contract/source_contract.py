"""The behaviour every source owes the pipeline, written once and run against each source.

As in faststream's ``tests/brokers/base``, the tests live in :class:`SourceContract`, which
pytest does not collect (its name does not start with ``Test``); ``test_sources.py`` subclasses
it once per source and gives the ``harness`` fixture: a publisher plus a factory of sources of
one identity (file, MQTT client id, Kafka group). A source that cannot honour a behaviour says so
in its :class:`SourceCapabilities`, and the test then asserts what that source does instead:
nothing is skipped.
"""

from __future__ import annotations

import abc
import asyncio
import enum
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from consumer.sources.base import Source
from tests.support.intake import RecordingIntake

# Every wait has a bound; these are generous for a shared 2-core machine, never a speed claim.
BOUND = 30.0
# How long a source pointed at no broker is watched for claiming to be connected.
UNREACHABLE_WATCH = 1.0

# Bytes a source must pass on untouched: JSON, text that is not JSON, bytes that are not UTF-8.
PAYLOADS: tuple[bytes, ...] = (
    *(b'{"event_type": "custom", "use_case": "u", "custom_value": "v%d"}' % i for i in range(16)),
    b"not json at all",
    b"\xff\xfe\x00binary\x01",
    b'{"unterminated": ',
)


class Restart(enum.Enum):
    """What a restarted source sees again, besides every message that was not acknowledged."""

    # Nothing acknowledged: Kafka commits the settled offsets synchronously in ``aclose``.
    # MQTT: ``aclose`` waits until the broker confirmed it processed the last PUBACKs.
    SKIPS_ACKED = "skips acknowledged"
    # Everything: a file has no acknowledgements and is read again from its start.
    READS_ALL = "reads all"


@dataclass(frozen=True, slots=True)
class SourceCapabilities:
    """What a source guarantees beyond the common contract.

    - ``restart``: what a restarted source of the same identity sees of the acknowledged
      messages (every one sees the unacknowledged ones again): see :class:`Restart`.
    - ``asks_before_submitting``: with no room it does not call ``submit`` at all (Kafka's thread
      asks ``has_room`` and pauses its partitions); the others call ``submit``, one batch at a time,
      and wait inside it.
    - ``stop_ends_a_waiting_hand_off``: ``stop`` ends ``run`` while the intake has no room. The
      others end ``run`` as soon as the one waiting ``submit`` returns.
    - ``has_broker``: ``connected`` can be False because the broker is unreachable.
    """

    restart: Restart
    asks_before_submitting: bool
    stop_ends_a_waiting_hand_off: bool
    has_broker: bool


class SourceHarness(abc.ABC):
    """A publisher and a factory of sources of one identity, for one test."""

    capabilities: SourceCapabilities
    # What every message's origin says: the source's name and the topic published to.
    source_name: str
    topic: str

    @abc.abstractmethod
    def publish(self, payloads: Sequence[bytes]) -> None:
        """Publish ``payloads`` in order to ``topic`` and wait until the broker has them (blocking)."""

    @abc.abstractmethod
    def new_source(self) -> Source:
        """A new source of the same identity: a restart of the previous one."""

    def unreachable_source(self) -> Source:
        """A source pointed at a closed port (only with ``has_broker``)."""
        raise NotImplementedError


class Running:
    """One source running against one intake, stopped the app's way."""

    def __init__(self, source: Source, intake: RecordingIntake) -> None:
        self.source = source
        self.intake = intake
        self.stop = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(source.run(intake, self.stop))

    async def ended(self) -> None:
        """Set ``stop``; ``run`` must end within the bound."""
        self.stop.set()
        await asyncio.wait_for(self.task, BOUND)

    async def close(self) -> None:
        """Stop, then ``aclose`` (after the pipeline drained, in the app)."""
        try:
            if not self.task.done():
                await self.ended()
        finally:
            await self.source.aclose()


class SourceContract:
    """The contract of :class:`consumer.sources.base.Source`; subclasses give ``harness``.

    Messages are published before the source starts (a file cannot be appended to while it is
    read to its end; the brokers keep them: Kafka from the earliest offset, MQTT in the
    persistent session the harness created), so every source is driven the same way.
    """

    @pytest.fixture
    def harness(self) -> SourceHarness:
        """One source under test (overridden by every subclass)."""
        raise NotImplementedError

    def test_every_message_reaches_submit_with_its_bytes_and_origin(self, harness: SourceHarness) -> None:
        async def scenario() -> None:
            intake = RecordingIntake()
            await asyncio.to_thread(harness.publish, PAYLOADS)
            running = Running(harness.new_source(), intake)
            try:
                await intake.until(lambda: len(intake.messages) >= len(PAYLOADS), "every message")
            finally:
                await running.close()
            assert Counter(intake.payloads()) == Counter(PAYLOADS)
            for message in intake.messages:
                origin = message.coordinates()
                assert origin["source"] == harness.source_name == running.source.name
                assert origin["topic"] == harness.topic
                assert message.received_at > 0

        asyncio.run(scenario())

    def test_nothing_is_acknowledged_before_its_ack_runs(self, harness: SourceHarness) -> None:
        """A restarted source sees every message whose ``ack`` did not run; acked ones where it remembers."""

        async def scenario() -> None:
            await asyncio.to_thread(harness.publish, PAYLOADS)
            first = RecordingIntake()
            running = Running(harness.new_source(), first)
            try:
                await first.until(lambda: len(first.messages) >= len(PAYLOADS), "the first run")
                # The acknowledged ones are the oldest (a prefix per partition, per connection),
                # the only ones an in-order acknowledgement can release.
                half = len(first.messages) // 2
                for message in first.messages[:half]:
                    message.ack()
            finally:
                await running.close()
            acked = set(first.payloads()[:half])
            unacked = set(first.payloads()[half:])

            again = RecordingIntake()
            restarted = Running(harness.new_source(), again)
            try:
                await again.until(lambda: unacked <= set(again.payloads()), "the unacknowledged messages")
            finally:
                await restarted.close()
            seen = set(again.payloads())
            restart = harness.capabilities.restart
            if restart is Restart.SKIPS_ACKED:
                # Redelivery keeps each partition's order, so an acknowledged message that came
                # again would have come before the unacknowledged ones just awaited.
                assert not seen & acked, f"acknowledged messages delivered again: {sorted(seen & acked)}"
            else:
                assert seen == acked | unacked, "a source without acknowledgements reads everything again"

        asyncio.run(scenario())

    def test_no_room_holds_messages_back_and_room_lets_them_all_through(self, harness: SourceHarness) -> None:
        async def scenario() -> None:
            await asyncio.to_thread(harness.publish, PAYLOADS)
            intake = RecordingIntake(room=False)
            running = Running(harness.new_source(), intake)
            try:
                await intake.until(_met_the_full(intake), "the source to meet the full intake")
                await intake.until(lambda: running.source.connected, "a held-back source to be connected")
                assert intake.most_waiting == 1 or (
                    harness.capabilities.asks_before_submitting and intake.submits == 0
                ), "one hand-off at a time, never a pile of waiting submits"
                if harness.capabilities.asks_before_submitting:
                    assert intake.submits == 0, "it asked has_room, and was told no"
                assert intake.messages == []
                intake.open()
                await intake.until(lambda: len(intake.messages) >= len(PAYLOADS), "every message")
            finally:
                await running.close()
            assert Counter(intake.payloads()) == Counter(PAYLOADS)
            assert intake.most_waiting <= 1

        asyncio.run(scenario())

    def test_stop_ends_run_within_a_bound(self, harness: SourceHarness) -> None:
        async def scenario() -> None:
            await asyncio.to_thread(harness.publish, PAYLOADS)
            intake = RecordingIntake()
            running = Running(harness.new_source(), intake)
            try:
                await intake.until(lambda: len(intake.messages) >= len(PAYLOADS), "every message")
                await running.ended()
            finally:
                await running.source.aclose()
            assert not running.source.connected

        asyncio.run(scenario())

    def test_stop_while_the_intake_has_no_room_loses_nothing(self, harness: SourceHarness) -> None:
        async def scenario() -> None:
            await asyncio.to_thread(harness.publish, PAYLOADS)
            intake = RecordingIntake(room=False)
            running = Running(harness.new_source(), intake)
            try:
                await intake.until(_met_the_full(intake), "the source to meet the full intake")
                if harness.capabilities.stop_ends_a_waiting_hand_off:
                    await running.ended()
                else:
                    running.stop.set()
                    # The one waiting submit is all it still waits for: room ends it.
                    intake.open()
                    await asyncio.wait_for(running.task, BOUND)
            finally:
                intake.open()
                await running.close()

            # Nothing was acknowledged, whether it was taken before the stop or not.
            again = RecordingIntake()
            restarted = Running(harness.new_source(), again)
            try:
                await again.until(lambda: set(PAYLOADS) <= set(again.payloads()), "every message again")
            finally:
                await restarted.close()

        asyncio.run(scenario())

    def test_aclose_is_idempotent(self, harness: SourceHarness) -> None:
        async def scenario() -> None:
            never_run = harness.new_source()
            await never_run.aclose()
            await never_run.aclose()
            assert not never_run.connected

            await asyncio.to_thread(harness.publish, PAYLOADS[:1])
            intake = RecordingIntake()
            running = Running(harness.new_source(), intake)
            await intake.until(lambda: len(intake.messages) >= 1, "the message")
            await running.close()
            await running.source.aclose()
            assert not running.source.connected

        asyncio.run(scenario())

    def test_connected_reflects_the_broker(self, harness: SourceHarness) -> None:
        async def scenario() -> None:
            source = harness.new_source()
            assert not source.connected, "not connected before run"
            await asyncio.to_thread(harness.publish, PAYLOADS[:1])
            intake = RecordingIntake(room=False)
            running = Running(source, intake)
            try:
                # Held at the full intake, the source is still running with its input open.
                await intake.until(_met_the_full(intake), "the first message")
                await intake.until(lambda: source.connected, "the source to be connected")
            finally:
                intake.open()
                await running.close()
            assert not source.connected, "not connected after aclose"

            if harness.capabilities.has_broker:
                nowhere = Running(harness.unreachable_source(), RecordingIntake())
                try:
                    seen = False
                    for _ in range(int(UNREACHABLE_WATCH / 0.05)):
                        seen = seen or nowhere.source.connected
                        await asyncio.sleep(0.05)
                    assert not seen, "connected to a broker that is not there"
                finally:
                    await nowhere.close()

        asyncio.run(scenario())


def _met_the_full(intake: RecordingIntake) -> Callable[[], bool]:
    """Whether a source tried to hand over to ``intake`` (asked for room, or waits in submit)."""
    return lambda: intake.waiting > 0 or intake.asked > 0
