"""End to end over real sockets: a JSONL file of mixed messages, through the whole pipeline, into
the local Vision Events API stand-in while it fails in the ways real APIs fail."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from consumer.app import App
from consumer.config import load_settings
from consumer.deadletter import read_dead_letters
from consumer.fakeapi import FakeVisionEventsApi
from consumer.metrics import Metrics
from tests.support.corpus import ROUTES_YAML, USE_CASES, CorpusMessage, build_corpus

pytestmark = pytest.mark.e2e

API_KEY = "e2e-key"


def _metric(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.registry.get_sample_value(name, labels or {}) or 0.0


def _sum_metric(metrics: Metrics, name: str) -> float:
    total = 0.0
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


def _file_run(tmp_path: Path, corpus: list[CorpusMessage], dead_path: Path) -> dict[str, Any]:
    """Settings for a run over ``corpus`` written as a byte-exact JSONL file, with fast retries."""
    input_path = tmp_path / "messages.jsonl"
    with input_path.open("wb") as handle:
        for item in corpus:
            record = {"topic": item.topic, "payload_base64": base64.b64encode(item.payload).decode()}
            handle.write(orjson.dumps(record) + b"\n")
    routes_path = tmp_path / "routes.yaml"
    routes_path.write_text(ROUTES_YAML)
    return {
        "routes": str(routes_path),
        "source.file.path": str(input_path),
        "dead_letter.jsonl.path": str(dead_path),
        "batch.linger_ms": 20,
        "retry.initial_backoff_seconds": 0.05,
        "retry.max_backoff_seconds": 0.5,
        "http.port": 0,
    }


def test_mixed_file_through_faulty_api_loses_nothing(tmp_path: Path) -> None:
    corpus = build_corpus(1200, seed=11)
    dead_path = tmp_path / "dead.jsonl"

    with FakeVisionEventsApi(api_keys=(API_KEY,), use_cases=USE_CASES) as api:
        api.add_fault("/vision-events/batch", statuses=[500, 503])
        api.add_fault("/vision-events/batch", statuses=[429], retry_after=1)
        api.add_fault("/vision-events/batch", statuses=(), drop_connection=True, times=1)
        api.add_fault("/vision-events/upload", statuses=[500])
        settings = load_settings(
            None,
            {
                **_file_run(tmp_path, corpus, dead_path),
                "sink.cloud.base_url": api.url,
                "sink.cloud.api_key": API_KEY,
            },
        )
        metrics = Metrics(CollectorRegistry())
        result = asyncio.run(App(settings, metrics, serve_ops=False).run())
        received = api.events()
        stats = api.stats()

    valid = [m for m in corpus if m.event_type is not None]
    invalid = [m for m in corpus if m.reason is not None]
    assert len(valid) > 900 and len(invalid) > 100

    # Every valid message's event arrived, with its type, and nothing else did.
    expected_ids = {m.event_id: m.event_type for m in valid}
    assert len(expected_ids) == len(valid), "corpus event ids must be unique"
    assert {eid: body["eventType"] for eid, body in received.items()} == expected_ids

    # Every invalid message is dead-lettered once, byte-exact, with its reason.
    dead = list(read_dead_letters(dead_path))
    assert sorted((r.payload, r.reason) for r in dead) == sorted((m.payload, m.reason) for m in invalid)

    # The faults really happened and were retried.
    batch_statuses = stats["requests"]["POST /vision-events/batch"]
    assert batch_statuses["500"] == 1
    assert batch_statuses["503"] == 1
    assert batch_statuses["429"] == 1
    assert batch_statuses["0"] == 1  # the dropped connection
    assert stats["requests"]["POST /vision-events/upload"]["500"] == 1
    assert _sum_metric(metrics, "vision_events_api_retries_total") >= 4

    # The metrics agree with what happened.
    assert result.drained
    assert result.stats.received == len(corpus)
    assert _sum_metric(metrics, "vision_events_messages_received_total") == len(corpus)
    assert _sum_metric(metrics, "vision_events_events_delivered_total") == len(valid)
    assert _sum_metric(metrics, "vision_events_dead_letters_total") == len(invalid)
    by_reason = Counter(m.reason for m in invalid)
    for reason, count in by_reason.items():
        assert _metric(metrics, "vision_events_dead_letters_total", {"reason": str(reason)}) == count
    assert _metric(metrics, "vision_events_in_flight_events") == 0


def test_mixed_file_through_faulty_event_store_loses_nothing(tmp_path: Path) -> None:
    corpus = build_corpus(600, seed=5)
    dead_path = tmp_path / "dead.jsonl"

    with FakeVisionEventsApi(api_keys=(API_KEY,), use_cases=USE_CASES, local_api_key="edge-key") as api:
        api.add_fault("/v2/events", statuses=[529, 529, 500])
        api.add_fault("/v2/events", statuses=(), drop_connection=True, times=1)
        settings = load_settings(
            None,
            {
                **_file_run(tmp_path, corpus, dead_path),
                "sink.type": "local",
                "sink.local.url": api.url + "/",
                "sink.local.api_key": "edge-key",
            },
        )
        metrics = Metrics(CollectorRegistry())
        result = asyncio.run(App(settings, metrics, serve_ops=False).run())
        stored = api.local_events()
        stats = api.stats()

    valid = [m for m in corpus if m.event_type is not None]
    invalid = [m for m in corpus if m.reason is not None]
    # The Event Store assigns its own ids, so compare what arrived by type and content.
    assert Counter(body["event_schema"] for body in stored) == Counter(m.event_type for m in valid)
    with_images = [body for body in stored if body["images"]]
    assert with_images
    assert all("base64Image" in body["images"][0] for body in with_images)
    dead = list(read_dead_letters(dead_path))
    assert sorted((r.payload, r.reason) for r in dead) == sorted((m.payload, m.reason) for m in invalid)
    statuses = stats["requests"]["POST /v2/events"]
    assert (statuses["529"], statuses["500"], statuses["0"]) == (2, 1, 1)
    assert result.drained
    assert _sum_metric(metrics, "vision_events_events_delivered_total") == len(valid)
    assert (
        _metric(metrics, "vision_events_events_delivered_total", {"sink": "local", "event_type": "custom"})
        > 0
    )
