"""The pipeline: normalize, batch, deliver, dead-letter, and only then acknowledge.

One asyncio event loop owns it. Sources hand over messages in batches (``submit``), never one by
one, so there is one thread hop per batch at most. Every message ends in exactly one of:

- its event was accepted by the sink            -> acknowledged
- it, or its event, was dead-lettered (durably) -> acknowledged
- a route settled it without an event           -> acknowledged (counted as suppressed/filtered)

Nothing is acknowledged before one of these. ``max_in_flight_events`` and ``max_in_flight_bytes``
bound the messages (and their payload bytes) between ``submit`` and acknowledgement: ``submit``
waits while a bound would be passed, which is how a slow API pushes back on the sources and what
keeps memory flat when messages carry images.

With the durable spool (``final_sink=False``) the sink is the spool: "accepted" then means
committed to it, and the spool's forwarder (``consumer.spool``) later delivers to the API. Both
stages deliver, count and dead-letter with the same helpers (:mod:`consumer.delivery`) and share
one :class:`~consumer.delivery.DeadLetterGate`, built by ``app.py`` and handed to both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from consumer.config import BatchConfig
from consumer.deadletter_record import DeadLetterRecord
from consumer.delivery import (
    DeadLetterGate,
    batch_outcome,
    deliver_until_final,
    record_delivered,
    rejection_record,
)
from consumer.errors import MessageError, Reason
from consumer.metrics import Metrics
from consumer.model import BatchAck, InboundMessage, VisionEvent
from consumer.normalize import Normalizer, Skipped
from consumer.sinks.base import Sink

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PipelineStats:
    """Running totals, for progress lines and the end-of-run summary.

    ``delivered`` counts events the API accepted; ``spooled`` events committed to the durable
    spool instead (the forwarder counts their delivery).
    """

    received: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    spooled: int = 0

    def settled(self) -> int:
        """Messages whose fate is final (spooled ones are durable: settled for the source)."""
        return self.delivered + self.spooled + self.dead_lettered + self.skipped


class Pipeline:
    """Connects the normalizer, the batcher, the sink and the dead-letter writer."""

    def __init__(
        self,
        normalizer: Normalizer,
        sink: Sink,
        dead_letters: DeadLetterGate,
        metrics: Metrics,
        batch: BatchConfig,
        *,
        clock: Callable[[], float] = time.time,
        final_sink: bool = True,
    ) -> None:
        """``final_sink=False``: the sink is a durable stop on the way (the spool), not the API.

        Its acceptances then count as ``stats.spooled``, not as delivered events. ``dead_letters``
        is the gate every dead letter goes through, shared with the spool's forwarder.
        """
        self._normalizer = normalizer
        self._sink = sink
        self._final_sink = final_sink
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._batch = batch
        self._clock = clock
        self._pending: list[VisionEvent] = []
        self._pending_bytes = 0
        self._linger: asyncio.TimerHandle | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._batch_slots = asyncio.Semaphore(batch.max_in_flight_batches)
        self._in_flight = 0
        self._in_flight_bytes = 0
        self._settled = asyncio.Condition()
        self.stats = PipelineStats()

    # -- state ----------------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Messages submitted and not yet acknowledged."""
        return self._in_flight

    @property
    def dead_letter_failing(self) -> bool:
        """True while the dead-letter destination refuses writes (the consumer is then not ready)."""
        return self._dead_letters.failing

    @property
    def sink_answers_unexpected(self) -> bool:
        """True while the sink's destination answers 2xx without the contract's answer."""
        return self._sink.answers_unexpected

    @property
    def sink_auth_failing(self) -> bool:
        """True while the sink's credentials are refused."""
        return self._sink.auth_failing

    @property
    def in_flight_bytes(self) -> int:
        """Payload bytes of the messages submitted and not yet acknowledged."""
        return self._in_flight_bytes

    def has_room(self, incoming: int = 1, incoming_bytes: int = 0) -> bool:
        """Whether ``submit`` of ``incoming`` messages of ``incoming_bytes`` would proceed without waiting.

        With nothing in flight there is always room, so one batch larger than a bound still passes.
        Safe to call from a source's own thread: sources use it to pause before they must block.
        """
        if self._in_flight == 0:
            return True
        return (
            self._in_flight + incoming <= self._batch.max_in_flight_events
            and self._in_flight_bytes + incoming_bytes <= self._batch.max_in_flight_bytes
        )

    # -- intake ---------------------------------------------------------------------------------------

    async def submit(self, messages: Sequence[InboundMessage]) -> None:
        """Take a batch of received messages. Returns once they are accepted into the pipeline.

        Waits first while the in-flight bound is reached. Invalid messages are dead-lettered
        before this returns.
        """
        if not messages:
            return
        size = self._count_received(messages)
        await self._wait_for_room(len(messages), size)
        self._in_flight += len(messages)
        self._in_flight_bytes += size
        self._metrics.in_flight_events.set(self._in_flight)
        self._metrics.in_flight_bytes.set(self._in_flight_bytes)
        self.stats.received += len(messages)

        outcomes: Counter[tuple[str, str]] = Counter()
        dead: list[DeadLetterRecord] = []
        dead_messages: list[InboundMessage] = []
        skipped: list[InboundMessage] = []
        now = self._clock()
        for message in messages:
            try:
                result = self._normalizer.normalize(message)
            except MessageError as exc:
                outcome = "unrouted" if exc.reason is Reason.NO_ROUTE else "invalid"
                outcomes[(self._normalizer.route_name(message.topic), outcome)] += 1
                dead.append(
                    DeadLetterRecord.for_message(
                        message, reason=exc.reason.value, detail=exc.detail, path=exc.path, now=now
                    )
                )
                dead_messages.append(message)
                continue
            except Exception as exc:  # a bug must cost one message, never the process
                log.exception(
                    "normalizing a message failed unexpectedly", extra={"coordinates": message.coordinates()}
                )
                outcomes[(self._normalizer.route_name(message.topic), "invalid")] += 1
                dead.append(
                    DeadLetterRecord.for_message(
                        message, reason="internal_error", detail=f"{type(exc).__name__}: {exc}", now=now
                    )
                )
                dead_messages.append(message)
                continue
            if isinstance(result, Skipped):
                outcomes[(result.route, result.reason.value)] += 1
                skipped.append(message)
                continue
            outcomes[(result.route, "event")] += 1
            self._add(result)
        for (route, outcome), count in outcomes.items():
            self._metrics.messages_normalized.labels(route, outcome).inc(count)
        if skipped:
            self.stats.skipped += len(skipped)
            self._settle(skipped)
        if dead:
            await self._write_dead_letters(dead)
            self._settle(dead_messages)

    def _count_received(self, messages: Sequence[InboundMessage]) -> int:
        """Count the messages and their bytes by source and topic; return their payload bytes."""
        by_label: Counter[tuple[str, str]] = Counter()
        size_by_source: Counter[str] = Counter()
        for message in messages:
            by_label[(message.source, message.subscription or message.topic)] += 1
            size_by_source[message.source] += len(message.payload)
        for (source, topic), count in by_label.items():
            self._metrics.messages_received.labels(source, topic).inc(count)
        for source, size in size_by_source.items():
            self._metrics.message_bytes.labels(source).inc(size)
        return sum(size_by_source.values())

    async def _wait_for_room(self, incoming: int, incoming_bytes: int) -> None:
        if self.has_room(incoming, incoming_bytes):
            return
        # Waiting for deliveries: do not let a partial batch sit out its linger meanwhile.
        self._flush_pending()
        async with self._settled:
            await self._settled.wait_for(lambda: self.has_room(incoming, incoming_bytes))

    # -- batching -------------------------------------------------------------------------------------

    def _add(self, event: VisionEvent) -> None:
        self._pending.append(event)
        self._pending_bytes += event.approx_bytes
        if len(self._pending) >= self._batch.max_events or self._pending_bytes >= self._batch.max_bytes:
            self._flush_pending()
        elif self._linger is None:
            loop = asyncio.get_running_loop()
            self._linger = loop.call_later(self._batch.linger_ms / 1000, self._flush_pending)

    def _flush_pending(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if not self._pending:
            return
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        task = asyncio.get_running_loop().create_task(self._deliver(batch))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    # -- delivery -------------------------------------------------------------------------------------

    async def _deliver(self, batch: list[VisionEvent]) -> None:
        async with self._batch_slots:
            sink = self._sink.name
            self._metrics.batch_events.labels(sink).observe(len(batch))
            self._metrics.batch_bytes.labels(sink).observe(sum(e.approx_bytes for e in batch))
            report = await deliver_until_final(self._sink, batch)
            if self._final_sink:
                record_delivered(self._metrics, sink, report.delivered, self._clock())
                self.stats.delivered += len(report.delivered)
            else:
                self.stats.spooled += len(report.delivered)
            self._settle([e.message for e in report.delivered])
            if report.rejected:
                now = self._clock()
                await self._write_dead_letters([rejection_record(r, now) for r in report.rejected])
                self._settle([r.event.message for r in report.rejected])
            self._metrics.batches.labels(sink, batch_outcome(report)).inc()

    # -- dead letters and acknowledgement --------------------------------------------------------------

    async def _write_dead_letters(self, records: list[DeadLetterRecord]) -> None:
        """Write until confirmed; while the destination fails nothing is acknowledged and we are not ready."""
        await self._dead_letters.write(records)
        self.stats.dead_lettered += len(records)

    def _settle(self, messages: Sequence[InboundMessage]) -> None:
        # Acks of one owner (a Kafka offset book) are settled together, once per batch.
        together: dict[int, list[InboundMessage]] = {}
        for message in messages:
            owner = getattr(message.ack, "batch", None)
            if owner is not None:
                together.setdefault(id(owner), []).append(message)
                continue
            self._ack(message)
        for group in together.values():
            ack = group[0].ack
            try:
                cast("BatchAck", ack).settle_many([m.ack for m in group])
            except Exception:  # a source's ack failing must not strand the others
                log.exception(
                    "acknowledging %d messages failed",
                    len(group),
                    extra={"coordinates": group[0].coordinates()},
                )
        self._in_flight -= len(messages)
        self._in_flight_bytes -= sum(len(message.payload) for message in messages)
        self._metrics.in_flight_events.set(self._in_flight)
        self._metrics.in_flight_bytes.set(self._in_flight_bytes)
        if messages:
            asyncio.get_running_loop().create_task(self._notify_settled())

    @staticmethod
    def _ack(message: InboundMessage) -> None:
        try:
            message.ack()
        except Exception:  # a source's ack failing must not strand the others
            log.exception("acknowledging a message failed", extra={"coordinates": message.coordinates()})

    async def _notify_settled(self) -> None:
        async with self._settled:
            self._settled.notify_all()

    # -- shutdown -------------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Send the partial batch now and wait until everything in flight is settled."""
        self._flush_pending()
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)

    async def close(self, deadline_seconds: float) -> bool:
        """Flush within the deadline; what is still unsettled then is left unacknowledged.

        Returns True when everything was settled in time.
        """
        try:
            await asyncio.wait_for(self.flush(), deadline_seconds)
        except TimeoutError:
            log.warning(
                "shutdown deadline reached; unacknowledged messages will be redelivered",
                extra={"in_flight": self._in_flight},
            )
            for task in list(self._deliveries):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*list(self._deliveries), return_exceptions=True)
            return False
        return True
