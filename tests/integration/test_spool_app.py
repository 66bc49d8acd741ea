"""The app with the spool on, in process: a JSONL input, the API stand-in over sockets failing for a while.

The API answers 503 to everything while the input is read: every message must be acknowledged
into the spool (none delivered yet, nothing lost), the consumer stays ready; once the API is back
the forwarder delivers each event once, and the metrics tell spooled and delivered apart.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from consumer.app import App, RunResult
from consumer.config import load_settings
from consumer.deadletter import read_dead_letters
from consumer.fakeapi import FakeVisionEventsApi
from consumer.metrics import Metrics
from tests.support.corpus import ROUTES_YAML, USE_CASES, CorpusMessage, build_corpus

pytestmark = pytest.mark.integration

API_KEY = "spool-key"


def _metric(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.registry.get_sample_value(name, labels or {}) or 0.0


def _total(metrics: Metrics, name: str) -> float:
    return sum(
        sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    )


def _settings(
    tmp_path: Path, api: FakeVisionEventsApi, corpus: list[CorpusMessage], name: str
) -> dict[str, Any]:
    input_path = tmp_path / f"{name}.jsonl"
    with input_path.open("wb") as handle:
        for item in corpus:
            record = {"topic": item.topic, "payload_base64": base64.b64encode(item.payload).decode()}
            handle.write(orjson.dumps(record) + b"\n")
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES_YAML)
    return {
        "routes": str(routes),
        "source.type": "file",
        "source.file.path": str(input_path),
        "sink.type": "cloud",
        "sink.cloud.base_url": api.url,
        "sink.cloud.api_key": API_KEY,
        "dead_letter.jsonl.path": str(tmp_path / "dead.jsonl"),
        "spool.enabled": True,
        "spool.path": str(tmp_path / "spool" / "spool.db"),
        "batch.linger_ms": 20,
        "retry.initial_backoff_seconds": 0.05,
        "retry.max_backoff_seconds": 0.3,
        "shutdown_deadline_seconds": 5,
        "http.port": 0,
    }


async def _until(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _spooled_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT event_id FROM events")]


def test_an_api_outage_is_spooled_then_delivered_once(tmp_path: Path) -> None:
    corpus = build_corpus(1500, seed=41)
    valid = {m.event_id: m.event_type for m in corpus if m.event_type is not None}
    invalid = sorted((m.payload, m.reason) for m in corpus if m.reason is not None)
    api = FakeVisionEventsApi(api_keys=(API_KEY,), use_cases=USE_CASES).start()
    api.add_fault("/vision-events", statuses=(503,), fail_ratio=1.0, times=None)
    metrics = Metrics(CollectorRegistry())
    app = App(load_settings(None, _settings(tmp_path, api, corpus, "outage")), metrics)

    async def scenario() -> RunResult:
        running = asyncio.get_running_loop().create_task(app.run())
        await _until(
            lambda: app.pipeline is not None and app.pipeline.stats.settled() == len(corpus), "spooled"
        )
        assert app.pipeline is not None and app.spool is not None
        assert app.pipeline.stats.spooled == len(valid) and app.pipeline.in_flight == 0
        await asyncio.sleep(0.5)
        assert api.events() == {}, "the API was down: nothing can have been delivered"
        assert app.spool.events == len(valid)
        assert sorted(_spooled_ids(app.spool.path)) == sorted(valid)
        # Spooling through an outage is healthy (the file source is "not connected" once it ended).
        assert [r for r in app.readiness()[1] if not r.startswith("source")] == []
        assert _metric(metrics, "vision_events_spool_events") == len(valid)
        assert _total(metrics, "vision_events_events_delivered_total") == 0
        assert not running.done(), "the input ended, but the spool still holds events"
        api.clear_faults()
        return await asyncio.wait_for(running, 120)

    try:
        result = asyncio.run(scenario())
    finally:
        api.stop()
    assert result.drained
    assert result.forwarded is not None and result.forwarded.delivered == len(valid)
    assert {eid: body["eventType"] for eid, body in api.events().items()} == valid
    assert api.overwrites == 0, "each event was delivered once"
    got_dead = sorted((r.payload, r.reason) for r in read_dead_letters(tmp_path / "dead.jsonl"))
    assert got_dead == invalid
    assert _total(metrics, "vision_events_events_delivered_total") == len(valid)
    assert _metric(metrics, "vision_events_spool_spooled_total") == len(valid)
    assert _metric(metrics, "vision_events_spool_drained_total", {"outcome": "delivered"}) == len(valid)
    assert _metric(metrics, "vision_events_spool_events") == 0
    assert _metric(metrics, "vision_events_batches_total", {"sink": "cloud", "outcome": "delivered"}) > 0


def test_a_stop_leaves_the_spool_for_the_next_run(tmp_path: Path) -> None:
    corpus = build_corpus(400, seed=42)
    valid = {m.event_id for m in corpus if m.event_type is not None}
    api = FakeVisionEventsApi(api_keys=(API_KEY,), use_cases=USE_CASES).start()
    api.add_fault("/vision-events", statuses=(503,), fail_ratio=1.0, times=None)
    first = App(load_settings(None, _settings(tmp_path, api, corpus, "first")), Metrics(CollectorRegistry()))

    async def stopped_while_down() -> tuple[RunResult, float]:
        running = asyncio.get_running_loop().create_task(first.run())
        await _until(lambda: first.spool is not None and first.spool.events == len(valid), "spooled")
        began = time.monotonic()
        first.stop.set()  # what SIGTERM does
        return await asyncio.wait_for(running, 30), time.monotonic() - began

    second = App(load_settings(None, _settings(tmp_path, api, [], "second")), Metrics(CollectorRegistry()))
    try:
        result, took = asyncio.run(stopped_while_down())
        assert result.drained and took < 5 + 2, "the forwarder stops within the drain deadline"
        assert api.events() == {}
        assert sorted(_spooled_ids(tmp_path / "spool" / "spool.db")) == sorted(valid)
        api.clear_faults()
        again = asyncio.run(second.run())  # an empty input: it only drains what the spool kept
    finally:
        api.stop()
    assert again.forwarded is not None and again.forwarded.delivered == len(valid)
    assert set(api.events()) == valid
    assert _spooled_ids(tmp_path / "spool" / "spool.db") == []
