"""A 2xx that is not the API's answer, over real sockets: the app against the stand-in's wrong answers.

The stand-in answers the batch, the image upload or the Event Store's create with a portal's HTML
page, ``{"ok": true}``, a 204 or a wrong/duplicate ``eventIds`` list, storing nothing. While it
does, no message may be acknowledged or counted delivered, the unexpected-answer metric counts and
the app is not ready; once the fault clears, the same events are delivered and readiness recovers.
"""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from consumer.app import App, RunResult
from consumer.config import load_settings
from consumer.fakeapi import FakeVisionEventsApi
from consumer.metrics import Metrics
from tests.support.corpus import ROUTES_YAML, USE_CASES, CorpusMessage, build_corpus

pytestmark = pytest.mark.integration

API_KEY = "unexpected-answers-key"
NOT_READY = "unexpected_response"


def _total(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    return sum(
        sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items())
    )


def _settings(
    tmp_path: Path, api: FakeVisionEventsApi, corpus: list[CorpusMessage], sink: str
) -> dict[str, Any]:
    input_path = tmp_path / "input.jsonl"
    with input_path.open("wb") as handle:
        for item in corpus:
            record = {"topic": item.topic, "payload_base64": base64.b64encode(item.payload).decode()}
            handle.write(orjson.dumps(record) + b"\n")
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES_YAML)
    settings: dict[str, Any] = {
        "routes": str(routes),
        "source.type": "file",
        "source.file.path": str(input_path),
        "sink.type": sink,
        "dead_letter.jsonl.path": str(tmp_path / "dead.jsonl"),
        "batch.linger_ms": 20,
        "retry.initial_backoff_seconds": 0.05,
        "retry.max_backoff_seconds": 0.2,
        "shutdown_deadline_seconds": 5,
        "http.port": 0,
    }
    if sink == "cloud":
        settings.update({"sink.cloud.base_url": api.url, "sink.cloud.api_key": API_KEY})
    else:
        settings["sink.local.url"] = api.url
    return settings


async def _until(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


CASES = (
    [
        ("cloud", "/vision-events/batch", "batch", answer)
        for answer in ("html", "ok_true", "empty", "wrong_ids", "duplicate_ids")
    ]
    + [("cloud", "/vision-events/upload", "upload", answer) for answer in ("html", "ok_true", "empty")]
    + [("local", "/v2/events", "events", answer) for answer in ("html", "ok_true", "empty")]
)


@pytest.mark.parametrize(("sink", "path", "endpoint", "answer"), CASES, ids=[f"{c[2]}-{c[3]}" for c in CASES])
def test_a_wrong_2xx_is_never_acknowledged_and_the_same_events_go_through_once_it_clears(
    tmp_path: Path, sink: str, path: str, endpoint: str, answer: str
) -> None:
    corpus = [m for m in build_corpus(30, seed=5, invalid_ratio=0.0) if m.event_type is not None]
    valid = {m.event_id for m in corpus}
    api = FakeVisionEventsApi(api_keys=(API_KEY,), use_cases=USE_CASES).start()
    api.add_fault(path, fail_ratio=1.0, answer=answer)
    metrics = Metrics(CollectorRegistry())
    app = App(load_settings(None, _settings(tmp_path, api, corpus, sink)), metrics)
    unexpected = {"sink": sink, "endpoint": endpoint}

    async def scenario() -> RunResult:
        running = asyncio.get_running_loop().create_task(app.run())
        # Done early means the wrong answer was trusted: the assertions below then say how.
        await _until(
            lambda: (
                running.done() or _total(metrics, "vision_events_unexpected_responses_total", unexpected) >= 3
            ),
            "the wrong answer to be retried",
        )
        assert app.pipeline is not None
        assert app.pipeline.stats.settled() == 0, "nothing acknowledged on the strength of a wrong answer"
        assert _total(metrics, "vision_events_events_delivered_total") == 0
        assert api.events() == {} and api.local_events() == []
        ready, reasons = app.readiness()
        assert not ready
        assert any(NOT_READY in reason for reason in reasons), reasons
        assert _total(metrics, "vision_events_sink_unexpected_responses", {"sink": sink}) == 1
        api.clear_faults()
        result = await asyncio.wait_for(running, 60)
        assert [r for r in app.readiness()[1] if not r.startswith("source")] == [], "readiness recovers"
        assert _total(metrics, "vision_events_sink_unexpected_responses", {"sink": sink}) == 0
        return result

    try:
        result = asyncio.run(scenario())
    finally:
        api.stop()
    assert result.drained
    assert _total(metrics, "vision_events_events_delivered_total") == len(valid)
    assert app.pipeline is not None and app.pipeline.stats.settled() == len(corpus)
    if sink == "cloud":
        assert set(api.events()) == valid, "the same events, by eventId"
        assert api.overwrites == 0
    else:
        assert len(api.local_events()) == len(valid)
    if endpoint == "upload":
        assert api.uploads(), "the corpus carries images, so the upload fault was exercised"
