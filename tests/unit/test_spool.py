"""The durable spool: store, sink and forwarder, against real SQLite files in a temporary directory."""

from __future__ import annotations

import asyncio
import base64
import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from consumer.app import App
from consumer.config import BatchConfig, ImagesConfig, RetryConfig, SpoolConfig, load_settings
from consumer.delivery import DeadLetterGate
from consumer.errors import Reason
from consumer.identity import event_id_for
from consumer.metrics import Metrics
from consumer.model import InboundMessage, VisionEvent
from consumer.pipeline import Pipeline
from consumer.sources.base import Intake
from consumer.spool import Forwarder, SpoolSink, SpoolStore
from consumer.spool.codec import decode_event
from consumer.spool.store import _Database
from tests.support.doubles import MemoryDeadLetters, MemorySink
from tests.support.http_stub import StubServer
from tests.support.images import b64, jpeg_bytes, png_bytes
from tests.support.messages import message, normalizer

ROUTES = "routes: [{name: all, match: 'events/#'}]"
PNG = png_bytes(8, 6)
JPEG = jpeg_bytes(16, 12)
NOW = datetime.now(UTC).replace(microsecond=0)

# -- helpers -----------------------------------------------------------------------------------------


def eid(index: int) -> str:
    """The eventId of the event made by ``_events`` from the message with publisher id e-<index>."""
    return event_id_for(publisher_id=f"e-{index}", topic="events/a", payload=b"")


def _events(
    count: int,
    *,
    start: int = 0,
    timestamps: Sequence[datetime] | None = None,
    image: bytes | None = PNG,
    padding: int = 0,
    **extra: Any,
) -> list[VisionEvent]:
    """Envelope messages normalized into events: event_id e-<i>, optional capture times and image."""
    norm = normalizer(ROUTES, images=ImagesConfig(url_allowed_hosts=["images.test"]))
    events = []
    for index in range(start, start + count):
        payload: dict[str, Any] = {
            "event_id": f"e-{index}",
            "event_type": "custom",
            "use_case": "u",
            "custom_value": f"v{index}",
            **extra,
        }
        if timestamps is not None:
            payload["timestamp"] = timestamps[index - start].isoformat()
        if image is not None:
            payload["input_image"] = {"base64": b64(image)}
        if padding:
            payload["padding"] = "x" * padding
        result = norm.normalize(message("events/a", payload))
        assert isinstance(result, VisionEvent), result
        events.append(result)
    return events


def _metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def _value(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    found = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if found is None else found


def _store(path: Path, metrics: Metrics, **config: Any) -> SpoolStore:
    settings = SpoolConfig(enabled=True, path=str(path), **config)
    return SpoolStore(settings, metrics, retry_initial_seconds=0.01, retry_max_seconds=0.05)


def _sink(store: SpoolStore, metrics: Metrics, stub: StubServer | None = None) -> SpoolSink:
    images = ImagesConfig(url_allowed_hosts=["images.test"])
    factory = None if stub is None else stub.session_factory()
    return SpoolSink(store, RetryConfig(initial_backoff_seconds=0.01), images, metrics, factory)


async def _until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
    assert predicate(), what


async def _drain_rows(store: SpoolStore) -> list[str]:
    """Claim and delete everything; the event ids in claim order."""
    ids: list[str] = []
    while True:
        claim = await store.claim(100, 1 << 30, frozenset())
        if not claim.rows:
            return ids
        ids += [row.event_id for row in claim.rows]
        await store.delete(claim.generation, [row.seq for row in claim.rows])


def _forwarder(
    store: SpoolStore, sink: MemorySink, dead: MemoryDeadLetters, metrics: Metrics, **batch: int
) -> Forwarder:
    return Forwarder(
        store,
        sink,
        DeadLetterGate(dead, metrics),
        metrics,
        BatchConfig(**batch),
        retry_initial_seconds=0.01,
        retry_max_seconds=0.05,
    )


def _tracked(messages: list[InboundMessage], acked: list[int]) -> list[InboundMessage]:
    for index, msg in enumerate(messages):
        msg.ack = lambda index=index: acked.append(index)  # type: ignore[misc]
    return messages


# -- order, content, restart -------------------------------------------------------------------------


def test_rows_come_back_oldest_capture_time_first(tmp_path: Path) -> None:
    async def scenario() -> None:
        metrics = _metrics()
        store = _store(tmp_path / "spool.db", metrics)
        sink = _sink(store, metrics)
        times = [NOW - timedelta(minutes=m) for m in (5, 50, 20, 50, 1)]
        events = _events(5, timestamps=times)
        for event in events:  # one write each: arrival order differs from capture order
            report = await sink.deliver([event])
            assert report.delivered == [event]
        # Capture time first, arrival order among equal times (e-1 came before e-3).
        assert await _drain_rows(store) == [eid(1), eid(3), eid(2), eid(0), eid(4)]
        await store.close()

    asyncio.run(scenario())


def test_an_event_comes_back_exactly_as_spooled(tmp_path: Path) -> None:
    async def scenario() -> None:
        metrics = _metrics()
        store = _store(tmp_path / "spool.db", metrics)
        (event,) = _events(1, timestamps=[NOW - timedelta(hours=3)], qc_result="pass", device_id="cam-1")
        event.message.key = b"\x00key"
        event.message.headers = (("trace", b"\x01\x02"),)
        event.message.partition, event.message.offset, event.message.qos = 3, 41, 1
        event.message.subscription = "events/#"
        event.annotations = {"classifications": [{"class": "ok", "confidence": 0.9}]}
        await _sink(store, metrics).deliver([event])
        claim = await store.claim(10, 1 << 30, frozenset())
        back = decode_event(claim.rows[0], claim.images)
        assert back.event_id == event.event_id
        assert back.timestamp == event.timestamp
        assert (back.event_type, back.use_case_id, back.route) == (event.event_type, "u", "all")
        assert back.event_data == event.event_data
        assert back.custom_metadata == event.custom_metadata
        assert back.device_id == "cam-1"
        assert back.annotations == event.annotations
        assert back.approx_bytes == event.approx_bytes
        assert back.input_image is not None and back.input_image.data() == PNG
        assert back.output_image is None
        assert back.message.payload == event.message.payload
        assert back.message.coordinates() == event.message.coordinates()
        assert back.message.headers == (("trace", b"\x01\x02"),)
        assert back.message.subscription == "events/#"
        back.message.ack()  # a no-op: the original was acknowledged when the row was committed
        await store.close()

    asyncio.run(scenario())


def test_a_restart_finds_the_same_rows_and_event_ids(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    events = _events(30)

    async def first() -> None:
        metrics = _metrics()
        store = _store(path, metrics)
        await _sink(store, metrics).deliver(events)
        assert store.events == 30
        await store.close()

    async def second() -> None:
        metrics = _metrics()
        store = _store(path, metrics)
        assert await store.open()
        assert store.events == 30
        assert _value(metrics, "vision_events_spool_events") == 30
        claim = await store.claim(100, 1 << 30, frozenset())
        back = [decode_event(row, claim.images) for row in claim.rows]
        assert [e.event_id for e in back] == [e.event_id for e in events]
        assert [e.message.payload for e in back] == [e.message.payload for e in events]
        await store.close()

    asyncio.run(first())
    asyncio.run(second())


def test_images_are_stored_once_and_freed_with_the_last_event(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"

    def image_rows() -> int:
        with sqlite3.connect(path) as conn:
            return int(conn.execute("SELECT count(*) FROM images").fetchone()[0])

    async def scenario() -> None:
        metrics = _metrics()
        store = _store(path, metrics)
        sink = _sink(store, metrics)
        await sink.deliver(_events(40))
        await sink.deliver(_events(10, start=40, image=JPEG))
        assert image_rows() == 2
        with sqlite3.connect(path) as conn:
            pages, free, size = (
                int(conn.execute(f"PRAGMA {name}").fetchone()[0])
                for name in ("page_count", "freelist_count", "page_size")
            )
        assert store.bytes == (pages - free) * size, "bytes are the pages in use"
        assert _value(metrics, "vision_events_spool_bytes") == store.bytes
        full = store.bytes
        await _drain_rows(store)
        assert (store.events, image_rows()) == (0, 0)
        assert store.bytes < full, "deleted rows free their pages"
        await store.close()

    asyncio.run(scenario())


# -- bounds and backpressure ---------------------------------------------------------------------------


def test_the_count_bound_holds_writes_until_the_forwarder_makes_room(tmp_path: Path) -> None:
    async def scenario() -> None:
        metrics = _metrics()
        store = _store(tmp_path / "spool.db", metrics, max_events=3)
        sink = _sink(store, metrics)
        await sink.deliver(_events(3))
        blocked = asyncio.get_running_loop().create_task(sink.deliver(_events(1, start=3)))
        await asyncio.sleep(0.2)
        assert not blocked.done()
        assert store.full and _value(metrics, "vision_events_spool_full") == 1
        assert store.events == 3
        claim = await store.claim(1, 1 << 30, frozenset())
        await store.delete(claim.generation, [claim.rows[0].seq])
        report = await asyncio.wait_for(blocked, 2)
        assert [e.event_id for e in report.delivered] == [eid(3)]
        assert store.events == 3 and not store.full
        assert _value(metrics, "vision_events_spool_full") == 0
        await store.close()

    asyncio.run(scenario())


def test_the_byte_bound_holds_writes_until_there_is_room(tmp_path: Path) -> None:
    async def scenario() -> None:
        metrics = _metrics()
        store = _store(tmp_path / "spool.db", metrics, max_bytes=1024 * 1024)
        sink = _sink(store, metrics)
        big = _events(3, padding=400_000, image=None)  # about 400 kB each: two fit in 1 MiB
        await sink.deliver(big[:1])
        await sink.deliver(big[1:2])
        blocked = asyncio.get_running_loop().create_task(sink.deliver(big[2:]))
        await asyncio.sleep(0.2)
        assert not blocked.done() and store.events == 2
        assert store.bytes <= 1024 * 1024
        await _drain_rows(store)
        await asyncio.wait_for(blocked, 2)
        assert store.events == 1
        await store.close()

    asyncio.run(scenario())


def test_an_empty_spool_takes_one_write_larger_than_its_bound(tmp_path: Path) -> None:
    async def scenario() -> None:
        metrics = _metrics()
        store = _store(tmp_path / "spool.db", metrics, max_events=2)
        await asyncio.wait_for(_sink(store, metrics).deliver(_events(5)), 2)
        assert store.events == 5
        await store.close()

    asyncio.run(scenario())


def test_a_full_spool_holds_acknowledgements_and_the_pipeline_loses_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        metrics = _metrics()
        store = _store(tmp_path / "spool.db", metrics, max_events=4)
        dead = MemoryDeadLetters()
        pipeline = Pipeline(
            normalizer(ROUTES),
            _sink(store, metrics),
            DeadLetterGate(dead, metrics),
            metrics,
            BatchConfig(max_events=2, linger_ms=0, max_in_flight_batches=2),
            final_sink=False,
        )
        acked: list[int] = []
        messages = [
            message("events/a", {"event_type": "custom", "use_case": "u", "custom_value": f"v{i}"})
            for i in range(10)
        ]
        await pipeline.submit(_tracked(messages, acked))
        await asyncio.sleep(0.3)
        assert len(acked) == 4, "only what the spool holds is acknowledged"
        assert pipeline.in_flight == 6 and store.events == 4
        sink = MemorySink()
        forwarder = _forwarder(store, sink, dead, metrics, max_events=3)
        forwarder.start()
        await pipeline.flush()
        await _until(forwarder.idle, "the spool drained")
        assert sorted(acked) == list(range(10))
        assert len(sink.ids()) == 10 and not dead.records
        assert pipeline.stats.spooled == 10 and pipeline.stats.delivered == 0
        assert _value(metrics, "vision_events_spool_spooled_total") == 10
        assert _value(metrics, "vision_events_spool_drained_total", {"outcome": "delivered"}) == 10
        # Only real deliveries count as delivered events: none by the spool itself.
        delivered = {"sink": "memory", "event_type": "custom"}
        assert _value(metrics, "vision_events_events_delivered_total", delivered) == 10
        assert _value(metrics, "vision_events_events_delivered_total", {**delivered, "sink": "spool"}) == 0
        await forwarder.stop(1)
        await store.close()

    asyncio.run(scenario())


# -- failures -----------------------------------------------------------------------------------------


def test_a_corrupt_file_is_moved_aside_and_a_fresh_spool_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "spool.db"
    garbage = b"this is not a SQLite database, it is garbage\n" * 200
    path.write_bytes(garbage)

    async def scenario() -> None:
        metrics = _metrics()
        store = _store(path, metrics)
        with caplog.at_level(logging.ERROR, logger="consumer.spool.store"):
            assert await store.open()
        (moved,) = tmp_path.glob("spool.db.corrupt-*")
        assert moved.read_bytes() == garbage, "the corrupt file is kept as it was"
        assert _value(metrics, "vision_events_spool_quarantined_files_total") == 1
        assert any("CORRUPT" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
        assert not store.failing
        await _sink(store, metrics).deliver(_events(2))
        assert await _drain_rows(store) == [eid(0), eid(1)]
        await store.close()

    asyncio.run(scenario())


def test_damaged_pages_are_found_at_open_and_the_file_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"

    async def fill() -> None:
        metrics = _metrics()
        store = _store(path, metrics)
        await _sink(store, metrics).deliver(_events(300, padding=2000))
        await store.close()

    asyncio.run(fill())
    data = bytearray(path.read_bytes())
    assert len(data) > 40 * 4096
    data[4096 * 20 : 4096 * 30] = b"\xa5" * (4096 * 10)  # ten pages of b-tree turned to noise
    path.write_bytes(bytes(data))

    async def reopen() -> None:
        metrics = _metrics()
        store = _store(path, metrics)
        assert await store.open()
        assert store.events == 0
        assert len(list(tmp_path.glob("spool.db.corrupt-*"))) == 1
        assert _value(metrics, "vision_events_spool_quarantined_files_total") == 1
        await store.close()

    asyncio.run(reopen())


def _set_max_pages(store: SpoolStore, pages: int | None) -> Callable[[], int]:
    def run() -> int:
        conn = store._db.conn
        assert conn is not None
        if pages is None:
            current = int(conn.execute("PRAGMA page_count").fetchone()[0])
            return int(conn.execute(f"PRAGMA max_page_count = {current}").fetchone()[0])
        return int(conn.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0])

    return run


def test_a_full_disk_makes_the_spool_failing_and_holds_acknowledgements(tmp_path: Path) -> None:
    """A real SQLITE_FULL ("database or disk is full"): the file may not grow past its current size."""

    async def scenario() -> None:
        metrics = _metrics()
        store = _store(tmp_path / "spool.db", metrics)
        assert await store.open()
        await store._call("test", _set_max_pages(store, None))  # no page more than now
        dead = MemoryDeadLetters()
        pipeline = Pipeline(
            normalizer(ROUTES),
            _sink(store, metrics),
            DeadLetterGate(dead, metrics),
            metrics,
            BatchConfig(linger_ms=0),
            final_sink=False,
        )
        acked: list[int] = []
        payloads = [
            {"event_type": "custom", "use_case": "u", "custom_value": f"v{i}", "pad": "x" * 20_000}
            for i in range(5)
        ]
        await pipeline.submit(_tracked([message("events/a", p) for p in payloads], acked))
        await _until(lambda: store.failing, "the spool reports the full disk")
        await asyncio.sleep(0.2)
        assert acked == [] and store.events == 0
        assert any("disk_full" in problem for problem in store.problems())
        assert _value(metrics, "vision_events_spool_failing") == 1
        assert (
            _value(metrics, "vision_events_spool_errors_total", {"operation": "write", "cause": "disk_full"})
            >= 1
        )
        await store._call("test", _set_max_pages(store, 1_000_000))  # space freed
        await pipeline.flush()
        assert sorted(acked) == list(range(5)) and store.events == 5
        assert not store.failing and _value(metrics, "vision_events_spool_failing") == 0
        assert not dead.records
        await store.close()

    asyncio.run(scenario())


def test_an_injected_disk_full_error_is_retried_without_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = {"left": 3}
    real_insert = _Database.insert

    def flaky_insert(self: _Database, rows: Any, images: Any) -> int:
        if failures["left"]:
            failures["left"] -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return real_insert(self, rows, images)

    monkeypatch.setattr(_Database, "insert", flaky_insert)

    async def scenario() -> None:
        metrics = _metrics()
        store = _store(tmp_path / "spool.db", metrics)
        writing = asyncio.get_running_loop().create_task(_sink(store, metrics).deliver(_events(4)))
        await _until(lambda: store.failing, "failing")
        assert not writing.done()
        report = await asyncio.wait_for(writing, 2)
        assert len(report.delivered) == 4 and not store.failing
        assert (
            _value(metrics, "vision_events_spool_errors_total", {"operation": "write", "cause": "disk_full"})
            == 3
        )
        assert await _drain_rows(store) == [eid(0), eid(1), eid(2), eid(3)]
        await store.close()

    asyncio.run(scenario())


def test_readiness_is_false_while_the_spool_cannot_write(tmp_path: Path) -> None:
    class Idle:
        name = "idle"
        connected = True

        async def run(self, pipeline: Intake, stop: asyncio.Event) -> None:
            return None

        async def aclose(self) -> None:
            return None

    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    settings = load_settings(
        None, {"routes": str(routes), "sink.type": "jsonl", "spool.enabled": True, "spool.path": "x"}
    )
    app = App(settings, serve_ops=False, source=Idle())

    async def scenario() -> None:
        store = _store(tmp_path / "spool.db", app.metrics)
        app.spool = store
        assert app.readiness() == (True, [])
        await store._call("test", _set_max_pages(store, None))
        writing = asyncio.get_running_loop().create_task(
            _sink(store, app.metrics).deliver(_events(3, padding=20_000))
        )
        await _until(lambda: store.failing, "failing")
        ready, reasons = app.readiness()
        assert not ready and any("disk_full" in reason for reason in reasons)
        assert _value(app.metrics, "vision_events_ready") == 0
        await store._call("test", _set_max_pages(store, 1_000_000))
        await asyncio.wait_for(writing, 2)
        assert app.readiness() == (True, [])
        await store.close()

    asyncio.run(scenario())


def test_a_second_process_cannot_use_the_same_spool(tmp_path: Path) -> None:
    async def scenario() -> None:
        first = _store(tmp_path / "spool.db", _metrics())
        assert await first.open()
        metrics = _metrics()
        second = _store(tmp_path / "spool.db", metrics)
        assert not await second.open()
        assert second.failing and "locked" in second.problems()[0]
        await first.close()
        assert await second.open()
        assert not second.failing
        await second.close()

    asyncio.run(scenario())


def test_a_delete_for_a_replaced_file_deletes_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        metrics = _metrics()
        store = _store(tmp_path / "spool.db", metrics)
        await _sink(store, metrics).deliver(_events(3))
        claim = await store.claim(10, 1 << 30, frozenset())
        await store._call("test", store._db.close_connection)  # the file was closed and opened again
        assert await store.delete(claim.generation, [row.seq for row in claim.rows]) == 0
        assert store.events == 3 and store.generation == claim.generation + 1
        await store.close()

    asyncio.run(scenario())


# -- images from URLs -----------------------------------------------------------------------------------


def test_url_images_are_fetched_when_spooled_and_failures_refused(tmp_path: Path) -> None:
    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/frame.jpg":
            return httpx.Response(200, content=JPEG)
        return httpx.Response(404)

    async def scenario() -> None:
        metrics = _metrics()
        store = _store(tmp_path / "spool.db", metrics)
        stub = StubServer(serve)
        sink = _sink(store, metrics, stub)
        good = _events(1, image=None, input_image={"url": "http://images.test/frame.jpg"})
        bad = _events(1, start=1, image=None, input_image={"url": "http://images.test/gone.jpg"})
        report = await sink.deliver(good + bad)
        assert [e.event_id for e in report.delivered] == [eid(0)]
        (refused,) = report.rejected
        assert refused.event.event_id == eid(1) and refused.reason is Reason.IMAGE_UNAVAILABLE
        claim = await store.claim(10, 1 << 30, frozenset())
        back = decode_event(claim.rows[0], claim.images)
        assert back.input_image is not None and back.input_image.data() == JPEG
        assert base64.b64decode(back.input_image.base64 or "") == JPEG
        await sink.aclose()
        await stub.close()
        await store.close()

    asyncio.run(scenario())


def test_an_unavailable_url_image_is_left_out_of_the_spooled_event_when_the_route_says_so(
    tmp_path: Path,
) -> None:
    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=JPEG) if request.url.path == "/frame.jpg" else httpx.Response(503)

    async def scenario() -> None:
        metrics = _metrics()
        store = _store(tmp_path / "spool.db", metrics)
        stub = StubServer(serve)
        sink = _sink(store, metrics, stub)
        (gone,) = _events(1, image=None, output_image={"url": "http://images.test/gone.jpg"})
        (kept,) = _events(
            1,
            start=1,
            image=None,
            output_image={"url": "http://images.test/gone.jpg"},
            input_image={"url": "http://images.test/frame.jpg"},
        )
        (strict,) = _events(1, start=2, image=None, output_image={"url": "http://images.test/gone.jpg"})
        gone.annotations = {"objectDetections": [{"class": "a"}]}
        gone.deliver_without_image = kept.deliver_without_image = True
        report = await sink.deliver([gone, kept, strict])
        assert [e.event_id for e in report.delivered] == [eid(0), eid(1)]
        assert [(r.event.event_id, r.reason) for r in report.rejected] == [(eid(2), Reason.IMAGE_UNAVAILABLE)]
        assert gone.output_image is not None  # the pipeline's event is left as received
        claim = await store.claim(10, 1 << 30, frozenset())
        back = {row.event_id: decode_event(row, claim.images) for row in claim.rows}
        assert back[eid(0)].output_image is None and back[eid(0)].annotations == {}
        frame = back[eid(1)].input_image
        assert back[eid(1)].output_image is None
        assert frame is not None and frame.data() == JPEG
        labels = {"reason": "image_unavailable"}
        assert _value(metrics, "vision_events_annotations_dropped_total", labels) == 1
        await sink.aclose()
        await stub.close()
        await store.close()

    asyncio.run(scenario())


# -- the forwarder --------------------------------------------------------------------------------------


def test_the_forwarder_deletes_delivered_rows_and_dead_letters_refused_ones(tmp_path: Path) -> None:
    async def scenario() -> None:
        metrics = _metrics()
        store = _store(tmp_path / "spool.db", metrics)
        events = _events(12)
        await _sink(store, metrics).deliver(events)
        sink, dead = MemorySink(refuse=lambda e: e.event_id in {eid(3), eid(7)}), MemoryDeadLetters()
        forwarder = _forwarder(store, sink, dead, metrics, max_events=5)
        forwarder.start()
        await _until(forwarder.idle, "drained")
        assert sorted(sink.ids()) == sorted(e.event_id for e in events if e.event_id not in {eid(3), eid(7)})
        by_id = {e.event_id: e for e in events}
        assert sorted(r.event_id or "" for r in dead.records) == [eid(3), eid(7)]
        for record in dead.records:
            original = by_id[record.event_id or ""].message
            assert record.payload == original.payload
            assert record.coordinates == original.coordinates()
            assert record.reason == "api_rejected" and record.detail == "refused by the API"
        assert store.events == 0
        assert forwarder.stats.delivered == 10 and forwarder.stats.dead_lettered == 2
        assert _value(metrics, "vision_events_spool_drained_total", {"outcome": "delivered"}) == 10
        assert _value(metrics, "vision_events_spool_drained_total", {"outcome": "dead_lettered"}) == 2
        assert _value(metrics, "vision_events_dead_letters_total", {"reason": "api_rejected"}) == 2
        labels = {"sink": "memory", "event_type": "custom"}
        assert _value(metrics, "vision_events_events_delivered_total", labels) == 10
        assert [len(b) for b in sink.batches] == [5, 5, 2]
        await forwarder.stop(1)
        await store.close()

    asyncio.run(scenario())


def test_the_drain_outcomes_are_exported_at_zero_before_the_first_drain(tmp_path: Path) -> None:
    """A restarted replica whose forwarder never drains still exports a drain rate (0), so the
    not-draining alert and the dashboard see it rather than no series at all."""

    async def scenario() -> None:
        metrics = _metrics()
        store = _store(tmp_path / "spool.db", metrics)
        _forwarder(store, MemorySink(), MemoryDeadLetters(), metrics)
        for outcome in ("delivered", "dead_lettered"):
            labels = {"outcome": outcome}
            assert metrics.registry.get_sample_value("vision_events_spool_drained_total", labels) == 0
        await store.close()

    asyncio.run(scenario())


def test_refused_rows_stay_until_the_dead_letter_write_is_confirmed(tmp_path: Path) -> None:
    async def scenario() -> None:
        metrics = _metrics()
        store = _store(tmp_path / "spool.db", metrics)
        await _sink(store, metrics).deliver(_events(3))
        sink, dead = MemorySink(refuse=lambda e: e.event_id == eid(1)), MemoryDeadLetters(failures=2)
        gate = DeadLetterGate(dead, metrics)
        forwarder = Forwarder(store, sink, gate, metrics, BatchConfig())
        forwarder.start()
        await _until(lambda: gate.failing, "the dead-letter destination failing")
        assert store.events == 1, "delivered rows go at once; the refused one waits for its dead letter"
        await _until(forwarder.idle, "drained", timeout=10)
        assert [r.event_id for r in dead.records] == [eid(1)] and not gate.failing
        await forwarder.stop(1)
        await store.close()

    asyncio.run(scenario())


def test_the_forwarder_sends_the_oldest_capture_times_first(tmp_path: Path) -> None:
    async def scenario() -> None:
        metrics = _metrics()
        store = _store(tmp_path / "spool.db", metrics)
        times = [NOW - timedelta(minutes=m) for m in (3, 9, 1, 7, 5, 8)]
        await _sink(store, metrics).deliver(_events(6, timestamps=times))
        sink = MemorySink()
        forwarder = _forwarder(
            store, sink, MemoryDeadLetters(), metrics, max_events=2, max_in_flight_batches=1
        )
        forwarder.start()
        await _until(forwarder.idle, "drained")
        assert [[e.event_id for e in b] for b in sink.batches] == [
            [eid(1), eid(5)],
            [eid(3), eid(4)],
            [eid(0), eid(2)],
        ]
        await forwarder.stop(1)
        await store.close()

    asyncio.run(scenario())


def test_stopping_leaves_undelivered_rows_for_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    events = _events(7)

    async def first() -> None:
        metrics = _metrics()
        store = _store(path, metrics)
        await _sink(store, metrics).deliver(events)
        sink = MemorySink()
        sink.gate = asyncio.Event()  # the API never answers
        forwarder = _forwarder(store, sink, MemoryDeadLetters(), metrics, max_events=3)
        forwarder.start()
        await _until(lambda: forwarder.in_flight == 7, "every row in flight")
        assert not await forwarder.stop(0.1)
        assert store.events == 7
        await store.close()

    async def second() -> None:
        metrics = _metrics()
        store = _store(path, metrics)
        sink = MemorySink()
        forwarder = _forwarder(store, sink, MemoryDeadLetters(), metrics)
        forwarder.start()
        await _until(forwarder.idle, "drained after the restart")
        assert sink.ids() == [e.event_id for e in events]
        await forwarder.stop(1)
        await store.close()

    asyncio.run(first())
    asyncio.run(second())


def test_an_unreadable_row_is_dead_lettered_with_its_original_bytes(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"

    async def scenario() -> None:
        metrics = _metrics()
        store = _store(path, metrics)
        events = _events(2)
        await _sink(store, metrics).deliver(events)
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE events SET doc = '{\"v\": 99}' WHERE event_id = ?", (eid(0),))
        sink, dead = MemorySink(), MemoryDeadLetters()
        forwarder = _forwarder(store, sink, dead, metrics)
        forwarder.start()
        await _until(forwarder.idle, "drained")
        assert sink.ids() == [eid(1)]
        (record,) = dead.records
        assert record.reason == "internal_error" and record.event_id == eid(0)
        assert record.payload == events[0].message.payload
        assert record.coordinates == {"source": "test", "topic": "events/a"}
        await forwarder.stop(1)
        await store.close()

    asyncio.run(scenario())
