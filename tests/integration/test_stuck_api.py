"""A stuck API is visible: an API that accepts connections and never answers, over real sockets.

The request timeout is 30 s and nothing is given up, so for the whole test the batch just waits,
as it would behind a hung load balancer. The oldest-batch gauge must grow while it waits,
``/readyz`` must say so once ``sink.stuck_after_seconds`` passes, and both must clear once the
server answers. Every wait polls with a generous bound: no assertion depends on speed.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from consumer.app import App
from consumer.config import CloudSinkConfig, ImagesConfig, RetryConfig, load_settings
from consumer.metrics import Metrics
from consumer.model import InboundMessage, VisionEvent
from consumer.sinks.cloud import CloudSink
from consumer.sources.base import Intake
from tests.support.messages import message, normalizer

pytestmark = pytest.mark.integration

ROUTES = "routes: [{name: all, match: 'events/#'}]"
GAUGE = "vision_events_sink_oldest_batch_age_seconds"
POLL_BOUND_SECONDS = 20.0
HOLD_BOUND_SECONDS = 60.0
T = TypeVar("T")


class HangingApi:
    """A socket server that reads each request whole, then holds it unanswered until released.

    Released, it answers every held and later request with the batch contract's answer: 200 and
    the ``eventIds`` of the events sent. A held connection is bounded too (HOLD_BOUND_SECONDS).
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.release = threading.Event()
        self.held = 0
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(HOLD_BOUND_SECONDS)
            stream = conn.makefile("rb")
            while True:
                body = self._read_request(stream)
                if body is None:
                    return
                self.held += 1
                if not self.release.wait(HOLD_BOUND_SECONDS):
                    return
                events = orjson.loads(body)["events"]
                answer = orjson.dumps({"eventIds": [event["eventId"] for event in events]})
                head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(answer)}"
                conn.sendall(head.encode() + b"\r\n\r\n" + answer)

    @staticmethod
    def _read_request(stream: Any) -> bytes | None:
        length = 0
        line = stream.readline()
        if not line:
            return None
        while line not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
            line = stream.readline()
        return bytes(stream.read(length))

    def close(self) -> None:
        """Release what is held and stop listening."""
        self.release.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def api() -> Iterator[HangingApi]:
    server = HangingApi()
    try:
        yield server
    finally:
        server.close()


async def _until(predicate: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll until ``predicate`` returns something other than None (or False); bounded."""
    deadline = time.monotonic() + POLL_BOUND_SECONDS
    while True:
        value = await predicate()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {POLL_BOUND_SECONDS}s: {what}")
        await asyncio.sleep(0.05)


def _event(value: str) -> VisionEvent:
    payload = {"event_type": "custom", "use_case": "u", "custom_value": value}
    result = normalizer(ROUTES).normalize(message("events/a", payload))
    assert isinstance(result, VisionEvent)
    return result


def test_the_oldest_batch_age_grows_while_the_api_hangs_and_drops_to_zero_once_it_answers(
    api: HangingApi,
) -> None:
    metrics = Metrics(CollectorRegistry())
    sink = CloudSink(
        CloudSinkConfig(base_url=api.url, api_key=SecretStr("stuck-key"), timeout_seconds=30),
        RetryConfig(),
        ImagesConfig(),
        metrics,
    )

    def age() -> float:
        return metrics.registry.get_sample_value(GAUGE, {"sink": "cloud"}) or 0.0

    async def held() -> bool:
        return api.held == 1

    async def positive() -> float | None:
        return age() if age() > 0 else None

    async def scenario() -> None:
        assert age() == 0.0, "nothing in flight yet"
        event = _event("hang")
        delivering = asyncio.get_running_loop().create_task(sink.deliver([event]))
        await _until(held, "the API holds the request")
        first = await _until(positive, "the gauge is above 0")

        async def grown() -> bool:
            return age() > first

        await _until(grown, "the gauge grows while the request hangs")
        assert not delivering.done()
        api.release.set()
        report = await asyncio.wait_for(delivering, POLL_BOUND_SECONDS)
        assert report.delivered == [event]
        assert report.rejected == []
        assert age() == 0.0, "nothing in flight any more"
        await sink.aclose()

    asyncio.run(scenario())


class _OneMessageSource:
    """Submits one message, then stays connected until stopped (a broker source, minus the broker)."""

    name = "test"
    connected = True

    def __init__(self, message: InboundMessage) -> None:
        self._message = message

    async def run(self, pipeline: Intake, stop: asyncio.Event) -> None:
        await pipeline.submit([self._message])
        await stop.wait()

    async def aclose(self) -> None:
        return None


def _scrape(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == GAUGE and sample.labels == {"sink": "cloud"}:
                return float(sample.value)
    raise AssertionError(f"{GAUGE} not exported")


def test_readyz_reports_a_stuck_api_after_stuck_after_seconds_and_clears_when_it_answers(
    api: HangingApi, tmp_path: Path
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    settings = load_settings(
        None,
        {
            "routes": str(routes),
            "sink.type": "cloud",
            "sink.stuck_after_seconds": 1,
            "sink.cloud.base_url": api.url,
            "sink.cloud.api_key": "stuck-key",
            "sink.cloud.timeout_seconds": 30,
            "dead_letter.jsonl.path": str(tmp_path / "dead.jsonl"),
            "batch.linger_ms": 0,
            "http.host": "127.0.0.1",
            "http.port": 0,
            "shutdown_deadline_seconds": 5,
        },
    )
    payload = {"event_type": "custom", "use_case": "u", "custom_value": "stuck"}
    source = _OneMessageSource(message("events/a", payload))
    app = App(settings, Metrics(CollectorRegistry()), source=source)

    async def ops_up() -> int | None:
        return app.ops.port if app.ops is not None else None

    async def held() -> bool:
        return api.held == 1

    async def scenario() -> None:
        running = asyncio.get_running_loop().create_task(app.run())
        port = await _until(ops_up, "the ops server is up")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as ops:

            async def readyz(status: int) -> dict[str, Any] | None:
                answer = await ops.get("/readyz")
                return orjson.loads(answer.content) if answer.status_code == status else None

            await _until(held, "the API holds the batch")
            body = await _until(lambda: readyz(503), "/readyz turns 503")
            assert not running.done()
            assert body["ready"] is False
            assert len(body["reasons"]) == 1, body
            assert body["reasons"][0].startswith("the cloud sink's oldest batch has waited"), body
            assert "sink.stuck_after_seconds: 1" in body["reasons"][0]
            scraped = (await ops.get("/metrics")).text
            assert _scrape(scraped) > 1.0
            assert "vision_events_ready 0.0" in scraped
            api.release.set()
            assert await _until(lambda: readyz(200), "/readyz clears") == {"ready": True, "reasons": []}
            assert _scrape((await ops.get("/metrics")).text) == 0.0
            assert app.pipeline is not None and app.pipeline.stats.delivered == 1
        app.stop.set()
        result = await asyncio.wait_for(running, POLL_BOUND_SECONDS)
        assert result.drained and result.unsettled == 0

    asyncio.run(scenario())
