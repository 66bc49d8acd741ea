"""Batching, acknowledgement order, dead letters and backpressure, with an in-memory sink."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from consumer.config import BatchConfig
from consumer.delivery import DeadLetterGate
from consumer.metrics import Metrics
from consumer.model import InboundMessage
from consumer.pipeline import Pipeline
from consumer.sources.offsets import OffsetBook
from tests.support.doubles import MemoryDeadLetters, MemorySink
from tests.support.messages import message, normalizer

ROUTES = "routes: [{name: all, match: 'events/#'}]"


def _custom(i: int) -> dict[str, object]:
    return {"event_type": "custom", "use_case": "u", "custom_value": f"v{i}"}


def _tracked(messages: list[InboundMessage], acked: list[int]) -> list[InboundMessage]:
    for index, msg in enumerate(messages):
        msg.ack = lambda index=index: acked.append(index)  # type: ignore[misc]
    return messages


def _pipeline(sink: MemorySink, dead: MemoryDeadLetters, **batch: int) -> tuple[Pipeline, Metrics]:
    metrics = Metrics(CollectorRegistry())
    return Pipeline(
        normalizer(ROUTES), sink, DeadLetterGate(dead, metrics), metrics, BatchConfig(**batch)
    ), metrics


def _value(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    found = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if found is None else found


def test_batches_are_cut_at_max_events_and_every_message_is_acked_after_delivery() -> None:
    async def scenario() -> None:
        sink, dead = MemorySink(), MemoryDeadLetters()
        pipeline, metrics = _pipeline(sink, dead, max_events=10, linger_ms=10_000)
        acked: list[int] = []
        await pipeline.submit(_tracked([message("events/a", _custom(i)) for i in range(25)], acked))
        await asyncio.sleep(0)
        assert [len(b) for b in sink.batches] == [10, 10]
        assert len(acked) == 20
        await pipeline.flush()
        assert [len(b) for b in sink.batches] == [10, 10, 5]
        assert sorted(acked) == list(range(25))
        assert pipeline.in_flight == 0
        assert (
            _value(
                metrics, "vision_events_events_delivered_total", {"sink": "memory", "event_type": "custom"}
            )
            == 25
        )
        assert _value(metrics, "vision_events_batches_total", {"sink": "memory", "outcome": "delivered"}) == 3

    asyncio.run(scenario())


def test_linger_sends_a_partial_batch() -> None:
    async def scenario() -> None:
        sink, dead = MemorySink(), MemoryDeadLetters()
        pipeline, _ = _pipeline(sink, dead, max_events=100, linger_ms=20)
        await pipeline.submit([message("events/a", _custom(1))])
        assert sink.batches == []
        await asyncio.sleep(0.1)
        assert [len(b) for b in sink.batches] == [1]

    asyncio.run(scenario())


def test_nothing_is_acked_before_the_sink_answers() -> None:
    async def scenario() -> None:
        sink, dead = MemorySink(), MemoryDeadLetters()
        sink.gate = asyncio.Event()
        pipeline, metrics = _pipeline(sink, dead, max_events=2, linger_ms=0)
        acked: list[int] = []
        await pipeline.submit(_tracked([message("events/a", _custom(i)) for i in range(2)], acked))
        await asyncio.sleep(0.05)
        assert acked == []
        assert _value(metrics, "vision_events_in_flight_events") == 2
        sink.gate.set()
        await pipeline.flush()
        assert sorted(acked) == [0, 1]

    asyncio.run(scenario())


def test_invalid_messages_are_dead_lettered_with_original_bytes_then_acked() -> None:
    async def scenario() -> None:
        sink, dead = MemorySink(), MemoryDeadLetters()
        pipeline, metrics = _pipeline(sink, dead, linger_ms=0)
        acked: list[int] = []
        bad = b'{"event_type": "custom", "use_case": "u", "custom_value": 12}'
        msgs = _tracked(
            [message("events/a", bad), message("nowhere", b"{}"), message("events/b", _custom(1))], acked
        )
        await pipeline.submit(msgs)
        await pipeline.flush()
        assert sorted(acked) == [0, 1, 2]
        assert [(r.reason, r.path, r.payload) for r in dead.records] == [
            ("invalid_type", "custom_value", bad),
            ("no_route", "", b"{}"),
        ]
        assert dead.records[0].coordinates == {"source": "test", "topic": "events/a"}
        assert _value(metrics, "vision_events_dead_letters_total", {"reason": "no_route"}) == 1
        assert (
            _value(metrics, "vision_events_messages_normalized_total", {"route": "all", "outcome": "invalid"})
            == 1
        )
        assert (
            _value(
                metrics,
                "vision_events_messages_normalized_total",
                {"route": "unrouted", "outcome": "unrouted"},
            )
            == 1
        )
        assert pipeline.stats.dead_lettered == 2 and pipeline.stats.delivered == 1

    asyncio.run(scenario())


def test_rejected_events_are_dead_lettered_with_the_api_reason() -> None:
    async def scenario() -> None:
        sink = MemorySink(
            refuse=lambda event: event.event_data.get("value") == "v2",
            refusal_detail="refused",
            refusal_status=400,
        )
        dead = MemoryDeadLetters()
        pipeline, metrics = _pipeline(sink, dead, linger_ms=0)
        acked: list[int] = []
        await pipeline.submit(_tracked([message("events/a", _custom(i)) for i in range(4)], acked))
        await pipeline.flush()
        assert sorted(acked) == [0, 1, 2, 3]
        assert len(dead.records) == 1
        record = dead.records[0]
        assert (record.reason, record.detail, record.status) == ("api_rejected", "refused", 400)
        assert record.event_id is not None
        assert _value(metrics, "vision_events_batches_total", {"sink": "memory", "outcome": "partial"}) == 1

    asyncio.run(scenario())


def test_dead_letter_failure_holds_acks_and_reports_until_it_recovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        sink, dead = MemorySink(), MemoryDeadLetters(failures=2)
        pipeline, metrics = _pipeline(sink, dead)
        real_sleep = asyncio.sleep
        seen_failing: list[bool] = []

        async def fast_sleep(delay: float) -> None:
            seen_failing.append(pipeline.dead_letter_failing)
            await real_sleep(0)

        monkeypatch.setattr("consumer.pipeline.asyncio.sleep", fast_sleep)
        acked: list[int] = []
        await pipeline.submit(_tracked([message("events/a", b"nope")], acked))
        assert seen_failing == [True, True]
        assert acked == [0]
        assert not pipeline.dead_letter_failing
        assert _value(metrics, "vision_events_dead_letter_write_failures_total") == 2

    asyncio.run(scenario())


def test_in_flight_bound_makes_submit_wait() -> None:
    async def scenario() -> None:
        sink, dead = MemorySink(), MemoryDeadLetters()
        sink.gate = asyncio.Event()
        pipeline, _ = _pipeline(sink, dead, max_events=5, linger_ms=0, max_in_flight_events=10)
        await pipeline.submit([message("events/a", _custom(i)) for i in range(10)])
        blocked = asyncio.create_task(pipeline.submit([message("events/a", _custom(99))]))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        sink.gate.set()
        await asyncio.wait_for(blocked, 2)
        await pipeline.flush()
        assert pipeline.stats.delivered == 11

    asyncio.run(scenario())


def test_close_with_a_stuck_sink_leaves_messages_unacked() -> None:
    async def scenario() -> None:
        sink, dead = MemorySink(), MemoryDeadLetters()
        sink.gate = asyncio.Event()
        pipeline, _ = _pipeline(sink, dead, linger_ms=0)
        acked: list[int] = []
        await pipeline.submit(_tracked([message("events/a", _custom(1))], acked))
        drained = await pipeline.close(0.1)
        assert drained is False
        assert acked == []

    asyncio.run(scenario())


def test_a_bad_message_mid_batch_is_dead_lettered_alone_and_offsets_advance_once_after_delivery() -> None:
    async def scenario() -> None:
        wakes: list[int] = []
        book = OffsetBook(on_release=lambda: wakes.append(1))
        sink, dead = MemorySink(), MemoryDeadLetters()
        sink.gate = asyncio.Event()
        pipeline, _ = _pipeline(sink, dead, max_events=100, linger_ms=0)
        bad = b'{"event_type": "custom", "use_case": "u", "custom_value": 12}'
        msgs = [message("events/a", _custom(i)) for i in range(5)]
        msgs.insert(2, message("events/a", bad))
        for msg, ack in zip(msgs, book.register_many([("t", 0, o) for o in range(6)]), strict=True):
            msg.ack = ack
        await pipeline.submit(msgs)
        await asyncio.sleep(0.05)
        # Exactly the bad one, with its original bytes; its settle releases nothing (0 and 1 wait).
        assert [(r.reason, r.payload) for r in dead.records] == [("invalid_type", bad)]
        assert book.committable() == {}
        assert pipeline.in_flight == 5
        sink.gate.set()
        await pipeline.flush()
        assert [e.message for e in sink.events] == [m for i, m in enumerate(msgs) if i != 2]
        assert book.committable() == {("t", 0): 6}
        assert book.in_flight("t", 0) == 0
        assert len(wakes) == 1  # the delivered five settled together: one wake-up
        assert pipeline.in_flight == 0

    asyncio.run(scenario())


def test_a_failing_batch_ack_does_not_strand_the_other_acks() -> None:
    class Broken:
        batch = "owner"

        def __call__(self) -> None:
            raise AssertionError("settled one by one")

        def settle_many(self, acks: object) -> None:
            raise RuntimeError("the source failed")

    async def scenario() -> None:
        sink, dead = MemorySink(), MemoryDeadLetters()
        pipeline, _ = _pipeline(sink, dead, max_events=3, linger_ms=0)
        acked: list[int] = []
        msgs = _tracked([message("events/a", _custom(i)) for i in range(3)], acked)
        msgs[1].ack = Broken()
        await pipeline.submit(msgs)
        await pipeline.flush()
        assert sorted(acked) == [0, 2]
        assert pipeline.in_flight == 0

    asyncio.run(scenario())
