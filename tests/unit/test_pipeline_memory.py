"""The byte bound on in-flight work: what keeps memory flat when messages carry images."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from consumer.config import BatchConfig
from consumer.delivery import DeadLetterGate
from consumer.metrics import Metrics
from consumer.model import InboundMessage
from consumer.pipeline import Pipeline
from tests.support.doubles import MemoryDeadLetters, MemorySink
from tests.support.messages import message, normalizer

ROUTES = "routes: [{name: all, match: 'events/#'}]"
BOUND = 64 * 1024  # the smallest bound the settings allow


def _large(index: int) -> InboundMessage:
    """A valid message of about 9 KB (a long custom value, under its 10 000-character limit)."""
    return message(
        "events/a", {"event_type": "custom", "use_case": "u", "custom_value": f"{index}:" + "x" * 9_000}
    )


def _pipeline(sink: MemorySink, **batch: int) -> tuple[Pipeline, Metrics]:
    metrics = Metrics(CollectorRegistry())
    config = BatchConfig(max_in_flight_bytes=BOUND, linger_ms=0, **batch)
    return Pipeline(
        normalizer(ROUTES), sink, DeadLetterGate(MemoryDeadLetters(), metrics), metrics, config
    ), metrics


def _gauge(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("vision_events_in_flight_bytes") or 0.0


def test_submit_waits_while_the_bytes_in_flight_would_pass_the_bound() -> None:
    async def scenario() -> None:
        sink = MemorySink()
        sink.gate = asyncio.Event()
        pipeline, metrics = _pipeline(sink, max_events=1)
        size = len(_large(0).payload)
        fits = BOUND // size
        for index in range(fits):
            await asyncio.wait_for(pipeline.submit([_large(index)]), 1)
        assert pipeline.in_flight_bytes == fits * size
        assert _gauge(metrics) == fits * size
        assert not pipeline.has_room(1, size)
        assert pipeline.has_room(1, BOUND - fits * size)  # what still fits is let in
        blocked = asyncio.create_task(pipeline.submit([_large(fits)]))
        await asyncio.sleep(0.05)
        assert not blocked.done(), "one more message would pass the byte bound: submit must wait"
        assert pipeline.in_flight == fits
        sink.gate.set()
        await asyncio.wait_for(blocked, 5)
        await pipeline.flush()
        assert len(sink.events) == fits + 1
        assert pipeline.in_flight_bytes == 0
        assert _gauge(metrics) == 0

    asyncio.run(scenario())


def test_a_batch_larger_than_the_bound_is_let_in_when_nothing_is_in_flight() -> None:
    async def scenario() -> None:
        sink = MemorySink()
        sink.gate = asyncio.Event()
        pipeline, _ = _pipeline(sink, max_events=20)
        batch = [_large(i) for i in range(10)]  # more than the bound
        await asyncio.wait_for(pipeline.submit(batch), 1)  # would deadlock if it waited for room
        assert pipeline.in_flight_bytes == sum(len(m.payload) for m in batch) > BOUND
        assert not pipeline.has_room(1, 1)
        sink.gate.set()
        await pipeline.flush()
        assert pipeline.in_flight_bytes == 0
        assert pipeline.has_room(1, 10 * BOUND)

    asyncio.run(scenario())


def test_dead_lettered_and_refused_messages_release_their_bytes() -> None:
    async def scenario() -> None:
        sink = MemorySink(refuse=lambda event: event.event_data.get("value", "").startswith("1:"))
        pipeline, metrics = _pipeline(sink, max_events=10)
        invalid = message("events/a", b"{not json" + b" " * 20_000)
        await pipeline.submit([_large(0), _large(1), invalid])
        await pipeline.flush()
        assert pipeline.stats.delivered == 1
        assert pipeline.stats.dead_lettered == 2
        assert pipeline.in_flight == 0
        assert pipeline.in_flight_bytes == 0
        assert _gauge(metrics) == 0

    asyncio.run(scenario())
