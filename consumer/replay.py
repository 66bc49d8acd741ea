"""``vision-events-consumer replay``: re-drive dead letters through the pipeline once the cause is fixed.

Records come from a JSONL dead-letter file, a Kafka dead-letter topic or an MQTT dead-letter topic
(see :mod:`consumer.replay_origins`). Each is submitted as the message it was (original topic,
key, headers and bytes), so it gets the same eventId as before: replaying twice never duplicates
an event. A record that fails again is dead-lettered again, with its new reason, to the
configured destination.

A *cut* record (``payload_truncated``: its destination refused it whole as too large) holds only a
prefix of the message, so it is never replayed as if whole: it is counted (``truncated``), logged
with the original size and SHA-256 (to find the original elsewhere), and left where it is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from consumer.deadletter import DeadLetterRecord
from consumer.errors import MessageError
from consumer.model import InboundMessage, no_ack
from consumer.normalize import Normalizer, Skipped
from consumer.sources.base import Intake

log = logging.getLogger(__name__)

# A record and the function that acknowledges it at its origin once its replay has settled.
Replayable = tuple[DeadLetterRecord, Callable[[], None]]

BATCH = 500


class ReplayOrigin(Protocol):
    """Where dead letters are read from. Blocking calls: the replay runs them off the event loop."""

    @property
    def unreadable(self) -> int:
        """How many records could not be read (skipped with a warning), so far."""
        ...

    def next_batch(self, limit: int) -> list[Replayable] | None:
        """Up to ``limit`` records (possibly none yet); None when the origin is exhausted."""
        ...

    def close(self) -> None:
        """Release the origin, after every acknowledgement went out."""
        ...


def message_of(record: DeadLetterRecord, received_at: float, ack: Callable[[], None]) -> InboundMessage:
    """The message a dead-letter record was, ready to go through the pipeline again."""
    coordinates = record.coordinates
    key = coordinates.get("key")
    return InboundMessage(
        source="replay",
        topic=str(coordinates.get("topic", "")),
        payload=record.payload,
        received_at=received_at,
        subscription="replay",
        key=key.encode("utf-8") if isinstance(key, str) else None,
        headers=record.headers,
        ack=ack,
    )


class RateLimiter:
    """At most ``rate`` items per second on average (None: unlimited)."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._clock = clock
        self._start = clock()
        self._sent = 0

    async def take(self, count: int) -> None:
        """Wait until ``count`` more items may go."""
        if self._rate is None:
            return
        self._sent += count
        ahead = self._sent / self._rate - (self._clock() - self._start)
        if ahead > 0:
            await asyncio.sleep(ahead)


@dataclass(slots=True)
class ReplayFilter:
    """Which records to replay: all, or those whose reason is listed."""

    reasons: frozenset[str] = frozenset()

    def accepts(self, record: DeadLetterRecord) -> bool:
        """Whether ``record`` is replayed."""
        return not self.reasons or record.reason in self.reasons


class ReplaySource:
    """A source over a dead-letter origin (see the module docstring)."""

    name = "replay"

    def __init__(self, origin: ReplayOrigin, selection: ReplayFilter, rate: float | None = None) -> None:
        self._origin = origin
        self._filter = selection
        self._limiter = RateLimiter(rate)
        self._connected = False
        self.replayed = 0
        self.passed_over = 0
        self.truncated = 0

    @property
    def connected(self) -> bool:
        """True while records are being read."""
        return self._connected

    async def run(self, pipeline: Intake, stop: asyncio.Event) -> None:
        """Submit the selected records batch by batch, at the configured rate."""
        self._connected = True
        try:
            while not stop.is_set():
                batch = await asyncio.to_thread(self._origin.next_batch, BATCH)
                if batch is None:
                    break
                now = time.time()
                chunk = []
                for record, ack in batch:
                    if self._filter.accepts(record) and record.payload_truncated:
                        self.truncated += 1
                        warn_truncated(record)
                        ack()  # like a record passed over: it stays in its origin, unreplayed
                    elif self._filter.accepts(record):
                        chunk.append(message_of(record, now, ack))
                    else:
                        self.passed_over += 1
                        ack()  # not selected: it stays where it is, but must not hold the origin up
                if chunk:
                    await self._limiter.take(len(chunk))
                    self.replayed += len(chunk)
                    await pipeline.submit(chunk)
        finally:
            self._connected = False

    async def aclose(self) -> None:
        """After the drain: acknowledgements went out as records settled; release the origin."""
        await asyncio.to_thread(self._origin.close)


def warn_truncated(record: DeadLetterRecord) -> None:
    """Say that ``record`` is cut and therefore not replayed, naming what the original was."""
    coordinates = record.coordinates
    log.warning(
        "not replaying a cut dead letter: it kept %d of the original %s bytes (sha256 %s) of the "
        "message from %s; recover the original elsewhere to replay it",
        len(record.payload),
        record.original_size,
        record.original_sha256,
        coordinates.get("topic"),
        extra={
            "reason": record.reason,
            "source_topic": coordinates.get("topic"),
            "source_partition": coordinates.get("partition"),
            "source_offset": coordinates.get("offset"),
            "original_size": record.original_size,
            "original_sha256": record.original_sha256,
        },
    )


def dry_run(
    origin: ReplayOrigin, selection: ReplayFilter, normalizer: Normalizer
) -> Iterator[dict[str, object]]:
    """What a replay would do with each selected record, without sending or acknowledging anything."""
    now = time.time()
    while (batch := origin.next_batch(BATCH)) is not None:
        for record, _ack in batch:
            if not selection.accepts(record):
                continue
            outcome: dict[str, object] = {"topic": record.coordinates.get("topic"), "was": record.reason}
            if record.payload_truncated:
                warn_truncated(record)
                outcome.update(
                    result="truncated",
                    original_size=record.original_size,
                    original_sha256=record.original_sha256,
                )
                yield outcome
                continue
            try:
                result = normalizer.normalize(message_of(record, now, no_ack))
            except MessageError as exc:
                outcome.update(
                    result="dead_letter", reason=exc.reason.value, path=exc.path, detail=exc.detail
                )
            else:
                if isinstance(result, Skipped):
                    outcome.update(result="skipped", reason=result.reason.value)
                else:
                    outcome.update(
                        result="event", event_id=result.event_id, event_type=result.event_type.value
                    )
            yield outcome
