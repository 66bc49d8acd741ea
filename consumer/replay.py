"""``vision-events-consumer replay``: re-drive dead letters through the pipeline once the cause is fixed.

Records come from a JSONL dead-letter file, a Kafka dead-letter topic or an MQTT dead-letter topic.
Each is submitted as the message it was (original topic, key, headers and bytes), so it gets the
same eventId as before: replaying twice never duplicates an event. A record that fails again is
dead-lettered again, with its new reason, to the configured destination.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from consumer.deadletter import DeadLetterRecord
from consumer.errors import MessageError
from consumer.model import InboundMessage
from consumer.normalize import Normalizer, Skipped
from consumer.pipeline import Pipeline

# A record and the function that acknowledges it at its origin once its replay has settled.
Replayable = tuple[DeadLetterRecord, Callable[[], None]]

_CHUNK = 500


def _no_ack() -> None:
    """Records from a file need no acknowledgement."""


def jsonl_records(path: Path) -> Iterator[Replayable]:
    """The records of a JSONL dead-letter file, up to its size when opened.

    Stopping at that size matters when the file is also the dead-letter destination of this
    replay: records that fail again are appended, and must not be replayed in a loop.
    """
    limit = os.path.getsize(path)
    with path.open("rb") as handle:
        while handle.tell() < limit:
            line = handle.readline()
            if not line:
                break
            if line.strip():
                yield DeadLetterRecord.from_json_dict(orjson.loads(line)), _no_ack


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
    """A source over dead-letter records (see the module docstring)."""

    name = "replay"

    def __init__(
        self,
        records: Iterable[Replayable] | AsyncIterator[Replayable],
        selection: ReplayFilter,
        rate: float | None = None,
    ) -> None:
        self._records = records
        self._filter = selection
        self._limiter = RateLimiter(rate)
        self._connected = False
        self.replayed = 0
        self.passed_over = 0

    @property
    def connected(self) -> bool:
        """True while records are being read."""
        return self._connected

    async def run(self, pipeline: Pipeline, stop: asyncio.Event) -> None:
        """Submit the selected records in chunks, at the configured rate."""
        self._connected = True
        chunk: list[InboundMessage] = []
        try:
            async for record, ack in _aiter(self._records):
                if stop.is_set():
                    break
                if not self._filter.accepts(record):
                    self.passed_over += 1
                    ack()  # not selected: leave it where it is, but do not hold the origin up
                    continue
                chunk.append(message_of(record, time.time(), ack))
                if len(chunk) >= _CHUNK:
                    await self._submit(pipeline, chunk)
                    chunk = []
            if chunk and not stop.is_set():
                await self._submit(pipeline, chunk)
        finally:
            self._connected = False

    async def _submit(self, pipeline: Pipeline, chunk: list[InboundMessage]) -> None:
        await self._limiter.take(len(chunk))
        self.replayed += len(chunk)
        await pipeline.submit(chunk)

    async def aclose(self) -> None:
        """Acknowledgements went out as records settled; nothing is left to do."""


async def _aiter(records: Iterable[Replayable] | AsyncIterator[Replayable]) -> AsyncIterator[Replayable]:
    if isinstance(records, AsyncIterator):
        async for item in records:
            yield item
    else:
        for item in records:
            yield item


def dry_run(
    records: Iterable[Replayable], selection: ReplayFilter, normalizer: Normalizer
) -> Iterator[dict[str, object]]:
    """What a replay would do with each selected record, without sending or acknowledging anything."""
    now = time.time()
    for record, _ack in records:
        if not selection.accepts(record):
            continue
        outcome: dict[str, object] = {"topic": record.coordinates.get("topic"), "was": record.reason}
        try:
            result = normalizer.normalize(message_of(record, now, _no_ack))
        except MessageError as exc:
            outcome.update(result="dead_letter", reason=exc.reason.value, path=exc.path, detail=exc.detail)
        else:
            if isinstance(result, Skipped):
                outcome.update(result="skipped", reason=result.reason.value)
            else:
                outcome.update(result="event", event_id=result.event_id, event_type=result.event_type.value)
        yield outcome
