"""An image host that hangs or answers 503, over real sockets: the image has its own bound.

The pipeline runs with the real cloud sink against the API stand-in; the image host is an asyncio
server on loopback. One event of a batch names an image on that host, its batch-mates carry none.
With the default ``image_unavailable`` policy the event is dead-lettered with its original bytes
and its batch-mates are delivered and acknowledged; with ``deliver_without_image`` it is delivered
without the image. Only ``images.url_timeout_seconds`` is shortened: attempts and deadline are the
defaults. Each scenario is bounded by :data:`SETTLE_BOUND`, well above the image bound (about 3 s
here) and far below "forever", which is what an unbounded fetch would take.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from consumer.config import BatchConfig, CloudSinkConfig, ImagesConfig, LimitsConfig, RetryConfig
from consumer.delivery import DeadLetterGate
from consumer.fakeapi import FakeVisionEventsApi
from consumer.metrics import Metrics
from consumer.model import InboundMessage, VisionEvent
from consumer.normalize import Normalizer
from consumer.pipeline import Pipeline
from consumer.sinks.cloud import CloudSink
from tests.support.doubles import MemoryDeadLetters
from tests.support.images import b64, png_bytes
from tests.support.messages import message, routes

pytestmark = pytest.mark.integration

API_KEY = "image-bound-key"
USE_CASE = "image-bound-uc"
SETTLE_BOUND = 25.0
MATES = 4
PREDICTIONS = {
    "image": {"width": 64, "height": 48},
    "predictions": [
        {"x": 10.0, "y": 10.0, "width": 4.0, "height": 6.0, "confidence": 0.9, "class": "a", "class_id": 0}
    ],
}


@dataclass
class ImageHost:
    """A loopback HTTP server that either never answers (``hang``) or answers 503 to every request."""

    hang: bool
    requests: int = 0
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                if self.hang:
                    await self._release.wait()  # accepted, read, never answered
                    return
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    def release(self) -> None:
        self._release.set()
        for writer in self._writers:
            writer.close()


@asynccontextmanager
async def image_host(*, hang: bool) -> AsyncIterator[ImageHost]:
    host = ImageHost(hang=hang)
    server = await asyncio.start_server(host.handle, "127.0.0.1", 0)
    host.port = server.sockets[0].getsockname()[1]
    try:
        yield host
    finally:
        host.release()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


def _routes(policy: str | None) -> str:
    extra = f", image_unavailable: {policy}" if policy else ""
    return f'routes: [{{name: cams, match: "cams/#", event_type: custom, use_case: {USE_CASE}{extra}}}]'


@dataclass
class Outcome:
    api_events: dict[str, dict[str, Any]]
    dead: MemoryDeadLetters
    acked: list[bytes]
    stalled: InboundMessage
    mates: list[InboundMessage]
    event_ids: dict[bytes, str]
    metrics: Metrics


async def _run_batch(api: FakeVisionEventsApi, host: ImageHost, policy: str | None) -> Outcome:
    images = ImagesConfig(url_allowed_hosts=["127.0.0.1"], url_timeout_seconds=0.5)
    metrics = Metrics(CollectorRegistry())
    normalizer = Normalizer(routes(_routes(policy)), LimitsConfig(), images)
    sink = CloudSink(
        CloudSinkConfig(base_url=api.url, api_key=API_KEY),
        RetryConfig(initial_backoff_seconds=0.05, max_backoff_seconds=0.5),  # never gives up
        images,
        metrics,
    )
    dead = MemoryDeadLetters()
    pipeline = Pipeline(
        normalizer,
        sink,
        DeadLetterGate(dead, metrics),
        metrics,
        BatchConfig(max_events=MATES + 1, linger_ms=10_000),
    )
    acked: list[bytes] = []

    def acking(msg: InboundMessage) -> InboundMessage:
        msg.ack = lambda: acked.append(msg.payload)
        return msg

    url = f"http://127.0.0.1:{host.port}/snapshot.png?token=s3cret"
    stalled = acking(
        message(
            "cams/1", {"custom_value": "stalled", "output_image": {"url": url}, "predictions": PREDICTIONS}
        )
    )
    mates = [acking(message(f"cams/{n}", {"custom_value": f"mate-{n}"})) for n in range(2, MATES + 1)]
    inline = {"custom_value": "inline", "output_image": {"base64": b64(png_bytes())}}
    mates.append(acking(message("cams/9", inline)))
    event_ids: dict[bytes, str] = {}
    for msg in [stalled, *mates]:
        result = normalizer.normalize(msg)
        assert isinstance(result, VisionEvent)
        event_ids[msg.payload] = result.event_id
    try:
        # One batch (max_events reached): the stalled event and its batch-mates travel together.
        await pipeline.submit([stalled, *mates])
        await asyncio.wait_for(pipeline.flush(), SETTLE_BOUND)
    finally:
        await pipeline.close(1.0)
        await sink.aclose()
    return Outcome(api.events(), dead, acked, stalled, mates, event_ids, metrics)


def _scenario(*, hang: bool, policy: str | None) -> tuple[Outcome, int]:
    async def scenario() -> tuple[Outcome, int]:
        async with image_host(hang=hang) as host:
            with FakeVisionEventsApi(api_keys=(API_KEY,), use_cases=(USE_CASE,)) as api:
                outcome = await _run_batch(api, host, policy)
            return outcome, host.requests

    return asyncio.run(scenario())


@pytest.mark.parametrize("hang", [True, False], ids=["never-answers", "answers-503"])
def test_an_unavailable_image_is_dead_lettered_and_its_batch_mates_are_delivered(hang: bool) -> None:
    outcome, requests = _scenario(hang=hang, policy=None)
    mate_ids = {outcome.event_ids[m.payload] for m in outcome.mates}
    stalled_id = outcome.event_ids[outcome.stalled.payload]
    assert set(outcome.api_events) == mate_ids
    (record,) = outcome.dead.records
    assert record.reason == "image_unavailable"
    assert record.payload == outcome.stalled.payload
    assert record.event_id == stalled_id
    assert record.attempts == requests == ImagesConfig().fetch_attempts
    assert "s3cret" not in record.detail
    assert sorted(outcome.acked) == sorted(m.payload for m in [outcome.stalled, *outcome.mates])


@pytest.mark.parametrize("hang", [True, False], ids=["never-answers", "answers-503"])
def test_a_route_can_deliver_the_event_without_its_unavailable_image(hang: bool) -> None:
    outcome, _ = _scenario(hang=hang, policy="deliver_without_image")
    stalled_id = outcome.event_ids[outcome.stalled.payload]
    assert set(outcome.api_events) == {
        outcome.event_ids[m.payload] for m in [outcome.stalled, *outcome.mates]
    }
    delivered = outcome.api_events[stalled_id]
    assert delivered["images"] == []
    assert delivered["eventData"] == {"value": "stalled"}
    dropped = {"reason": "image_unavailable"}
    assert outcome.metrics.registry.get_sample_value("vision_events_annotations_dropped_total", dropped) == 1
    assert outcome.dead.records == []
    assert len(outcome.acked) == MATES + 1
    inline_id = outcome.event_ids[outcome.mates[-1].payload]
    assert len(outcome.api_events[inline_id]["images"]) == 1
