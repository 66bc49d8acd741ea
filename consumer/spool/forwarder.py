"""The forwarder: drains the spool to the API, oldest capture time first, in batches.

Up to ``batch.max_in_flight_batches`` batches at once, each at most ``batch.max_events`` events and
about ``batch.max_bytes``. For each batch:

1. the rows are rebuilt into the events the pipeline made (same eventIds, images from the spool's
   bytes, the original message with its coordinates and a no-op acknowledgement);
2. the real sink (cloud or local) delivers them, retrying transient failures itself, as it does
   for the pipeline;
3. the rows the API accepted are deleted, and counted as delivered (``events_delivered_total``,
   latencies, last delivery time: the same accounting as without the spool);
4. refused events are dead-lettered through the :class:`DeadLetterGate` shared with the pipeline
   (original bytes, coordinates, the API's reason) and deleted only once the write is confirmed.

A crash between 2 and 3 sends the batch again after the restart; the API overwrites by eventId.
On shutdown the forwarder stops claiming, gives the batches in flight until the deadline, then
cancels them: their rows stay in the spool for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from consumer.config import BatchConfig
from consumer.deadletter import DeadLetterRecord
from consumer.delivery import (
    DeadLetterGate,
    batch_outcome,
    deliver_until_final,
    record_delivered,
    rejection_record,
)
from consumer.errors import SpoolFailure
from consumer.metrics import Metrics
from consumer.model import VisionEvent
from consumer.sinks.base import Sink
from consumer.spool.codec import RowDecodeError, SpoolRow, decode_event
from consumer.spool.store import Claim, SpoolStore

log = logging.getLogger(__name__)

_IDLE_POLL_SECONDS = 1.0
_BUG_BACKOFF_SECONDS = 5.0


@dataclass(slots=True)
class ForwarderStats:
    """Running totals of the forwarder."""

    delivered: int = 0
    dead_lettered: int = 0


class Forwarder:
    """Drains a :class:`SpoolStore` into a sink."""

    def __init__(
        self,
        store: SpoolStore,
        sink: Sink,
        dead_letters: DeadLetterGate,
        metrics: Metrics,
        batch: BatchConfig,
        *,
        clock: Callable[[], float] = time.time,
        retry_initial_seconds: float = 0.2,
        retry_max_seconds: float = 5.0,
    ) -> None:
        self._store = store
        self._sink = sink
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._batch = batch
        self._clock = clock
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self._slots = asyncio.Semaphore(batch.max_in_flight_batches)
        self._claimed: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self.stats = ForwarderStats()
        # Both outcomes exported at 0 from the start: a forwarder that never drains (restarted onto a
        # backlog it cannot move) then shows a drain rate of 0, which the not-draining alert reads,
        # rather than no series at all.
        for outcome in ("delivered", "dead_lettered"):
            metrics.spool_drained.labels(outcome)

    @property
    def in_flight(self) -> int:
        """Events claimed and being delivered."""
        return len(self._claimed)

    def start(self) -> None:
        """Start draining (on the running loop)."""
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="spool-forwarder")

    async def _run(self) -> None:
        delay = self._retry_initial
        while True:
            await self._slots.acquire()
            try:
                self._store.changed.clear()
                claim = await self._store.claim(
                    self._batch.max_events, self._batch.max_bytes, frozenset(self._claimed)
                )
            except SpoolFailure:
                self._slots.release()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            except BaseException:
                self._slots.release()
                raise
            delay = self._retry_initial
            if not claim.rows:
                self._slots.release()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._store.changed.wait(), _IDLE_POLL_SECONDS)
                continue
            self._claimed.update(row.seq for row in claim.rows)
            task = asyncio.get_running_loop().create_task(self._forward(claim))
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _forward(self, claim: Claim) -> None:
        try:
            await self._forward_claim(claim)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("forwarding spooled events failed unexpectedly; they stay in the spool")
            await asyncio.sleep(_BUG_BACKOFF_SECONDS)
        finally:
            self._claimed.difference_update(row.seq for row in claim.rows)

    async def _forward_claim(self, claim: Claim) -> None:
        events: list[VisionEvent] = []
        seq_of: dict[int, int] = {}
        broken: list[tuple[SpoolRow, RowDecodeError]] = []
        for row in claim.rows:
            try:
                event = decode_event(row, claim.images)
            except RowDecodeError as exc:
                broken.append((row, exc))
                continue
            events.append(event)
            seq_of[id(event)] = row.seq
        records: list[DeadLetterRecord] = []
        refused: list[int] = []
        if events:
            name = self._sink.name
            self._metrics.batch_events.labels(name).observe(len(events))
            self._metrics.batch_bytes.labels(name).observe(sum(e.approx_bytes for e in events))
            report = await deliver_until_final(self._sink, events)
            now = self._clock()
            if report.delivered:
                record_delivered(self._metrics, name, report.delivered, now)
                self.stats.delivered += len(report.delivered)
                await self._store.delete(claim.generation, [seq_of[id(e)] for e in report.delivered])
                self._metrics.spool_drained.labels("delivered").inc(len(report.delivered))
            records += [rejection_record(r, now) for r in report.rejected]
            refused += [seq_of[id(r.event)] for r in report.rejected]
            self._metrics.batches.labels(name, batch_outcome(report)).inc()
        for row, problem in broken:
            log.error(
                "a spooled event cannot be read back; dead-lettering its message", extra={"seq": row.seq}
            )
            records.append(
                DeadLetterRecord.for_message(
                    row.message(),
                    reason="internal_error",
                    detail=str(problem),
                    now=self._clock(),
                    event_id=row.event_id,
                )
            )
            refused.append(row.seq)
        if records:
            await self._dead_letters.write(records)
            self.stats.dead_lettered += len(records)
            await self._store.delete(claim.generation, refused)
            self._metrics.spool_drained.labels("dead_lettered").inc(len(records))

    def idle(self) -> bool:
        """True when the spool (opened, so its count is known) is empty and nothing is being delivered."""
        return self._store.generation > 0 and self._store.events == 0 and not self._tasks

    async def wait_until_empty(self, stop: asyncio.Event, poll_seconds: float = 0.2) -> bool:
        """Wait until everything spooled was delivered or dead-lettered; False if ``stop`` came first."""
        while not stop.is_set():
            if self.idle():
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_seconds)
        return self.idle()

    async def stop(self, deadline_seconds: float) -> bool:
        """Stop claiming; let batches in flight finish until the deadline, then cancel them.

        Returns True when nothing had to be cancelled. Cancelled batches stay in the spool.
        """
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        pending: set[asyncio.Task[None]] = set()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline_seconds))
        if pending:
            log.warning(
                "shutdown deadline reached; spooled batches in flight stay in the spool",
                extra={"events": len(self._claimed)},
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        return not pending
