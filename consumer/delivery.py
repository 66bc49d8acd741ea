"""Delivery and its accounting, shared by the pipeline and the spool's forwarder.

Both stages hand events to a sink and then must do the same things with the report: count what
the API accepted (:func:`record_delivered`, :func:`batch_outcome`), turn what it refused for good
into dead letters (:func:`rejection_record`) and write those until the destination confirms them
(:class:`DeadLetterGate`). Keeping them in one room keeps the two stages from drifting apart; the
composition root (``app.py``) builds the one gate and hands it to both.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence

from consumer.deadletter_record import DeadLetterRecord, DeadLetterWriter
from consumer.errors import DeadLetterError
from consumer.metrics import Metrics, observe_many
from consumer.model import VisionEvent
from consumer.sinks.base import DeliveryReport, Rejection, Sink

log = logging.getLogger(__name__)

_DEAD_LETTER_RETRY_MAX_SECONDS = 30.0
_SINK_BUG_BACKOFF_SECONDS = 5.0


async def deliver_until_final(sink: Sink, batch: Sequence[VisionEvent]) -> DeliveryReport:
    """``sink.deliver(batch)``, again after a pause if the sink raises (a bug): the events are kept."""
    while True:
        try:
            return await sink.deliver(batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Sinks report every HTTP outcome; an exception here is a bug. Keep the events.
            log.exception("sink raised unexpectedly; retrying the batch", extra={"events": len(batch)})
            await asyncio.sleep(_SINK_BUG_BACKOFF_SECONDS)


def batch_outcome(report: DeliveryReport) -> str:
    """The ``outcome`` label of ``batches_total`` for a final report."""
    if not report.rejected:
        return "delivered"
    return "partial" if report.delivered else "rejected"


def record_delivered(metrics: Metrics, sink: str, events: Sequence[VisionEvent], now: float) -> None:
    """Count events the API accepted: delivered counter, end-to-end and delivery latency, last delivery."""
    if not events:
        return
    # One increment per bucket and label set per batch, not one locked increment per event.
    by_type = Counter(event.event_type.value for event in events)
    observe_many(metrics.end_to_end_latency, [max(0.0, now - e.timestamp.timestamp()) for e in events])
    observe_many(metrics.delivery_latency, [max(0.0, now - e.message.received_at) for e in events])
    for event_type, count in by_type.items():
        metrics.events_delivered.labels(sink, event_type).inc(count)
    metrics.last_delivery.set(now)


def rejection_record(rejection: Rejection, now: float) -> DeadLetterRecord:
    """The dead-letter record of an event the sink refused for good: original bytes and coordinates."""
    return DeadLetterRecord.for_message(
        rejection.event.message,
        reason=rejection.reason.value,
        detail=rejection.detail,
        now=now,
        attempts=rejection.attempts,
        event_id=rejection.event.event_id,
        status=rejection.status,
    )


class DeadLetterGate:
    """Writes dead letters until the destination confirms them; one per destination.

    While the destination fails, ``write`` keeps retrying with backoff (so its caller acknowledges
    or deletes nothing) and ``failing`` is True (the consumer is then not ready). The pipeline and
    the spool's forwarder share one gate, so both count and report failures the same way.
    """

    def __init__(self, writer: DeadLetterWriter, metrics: Metrics) -> None:
        self._writer = writer
        self._metrics = metrics
        self._failing = False

    @property
    def failing(self) -> bool:
        """True while the destination refuses writes."""
        return self._failing

    async def write(self, records: Sequence[DeadLetterRecord]) -> None:
        """Return once ``records`` are durable at the destination (retrying until then)."""
        if not records:
            return
        delay = 0.5
        while True:
            try:
                await self._writer.write(records)
            except DeadLetterError:
                self._metrics.dead_letter_failures.inc()
                if not self._failing:
                    log.exception("dead-letter destination failing; holding acknowledgements")
                self._failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, _DEAD_LETTER_RETRY_MAX_SECONDS)
                continue
            break
        if self._failing:
            log.info("dead-letter destination recovered")
        self._failing = False
        reasons: Counter[str] = Counter(r.reason for r in records)
        for reason, count in reasons.items():
            self._metrics.dead_letters.labels(reason).inc(count)
        first = records[0]
        log.warning(
            "dead-lettered %d message(s)",
            len(records),
            extra={
                "reasons": dict(reasons),
                "example": {
                    "reason": first.reason,
                    "path": first.path,
                    "detail": first.detail[:300],
                    "coordinates": first.coordinates,
                },
            },
        )
