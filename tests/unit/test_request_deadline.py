"""The request timeout bounds the whole request: a server dribbling its answer cannot hold a batch."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from pydantic import SecretStr

from consumer.config import CloudSinkConfig, ImagesConfig, LocalSinkConfig, RetryConfig
from consumer.errors import Reason
from consumer.metrics import Metrics
from consumer.sinks.base import DeliveryReport
from consumer.sinks.cloud import CloudSink
from consumer.sinks.local import LocalSink
from tests.unit.test_cloud_sink import make_event

ANSWER = (
    b'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 18\r\n\r\n{"eventIds":["x"]}'
)
# Slower than nothing: each byte comes before the per-read timeout, so only a whole-request bound trips.
DRIBBLE_SECONDS = 1.5
# The test's own bound: far beyond the sink's give-up, so before the fix the test fails instead of hanging.
TEST_BOUND_SECONDS = 20.0


@contextlib.asynccontextmanager
async def dribbling_server() -> AsyncIterator[int]:
    """A real socket server answering every request one byte every DRIBBLE_SECONDS."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await reader.readuntil(b"\r\n\r\n")
            for byte in ANSWER:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(DRIBBLE_SECONDS)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()


async def deliver_bounded(sink: CloudSink | LocalSink, count: int) -> DeliveryReport:
    """Deliver ``count`` events under the test's own bound, then close the sink."""
    try:
        async with asyncio.timeout(TEST_BOUND_SECONDS):
            return await sink.deliver([make_event(index) for index in range(count)])
    finally:
        await sink.aclose()


def test_a_dribbling_api_times_out_and_give_up_dead_letters_the_batch() -> None:
    async def scenario() -> None:
        async with dribbling_server() as port:
            sink = CloudSink(
                CloudSinkConfig(
                    base_url=f"http://127.0.0.1:{port}/", api_key=SecretStr("k"), timeout_seconds=2.0
                ),
                RetryConfig(give_up_after_seconds=3.0, initial_backoff_seconds=0.1, max_backoff_seconds=0.2),
                ImagesConfig(),
                Metrics(),
            )
            report = await deliver_bounded(sink, 2)
        assert not report.delivered
        assert [rejection.reason for rejection in report.rejected] == [Reason.DELIVERY_TIMEOUT] * 2

    asyncio.run(scenario())


def test_give_up_fires_while_an_attempt_is_still_running() -> None:
    async def scenario() -> None:
        async with dribbling_server() as port:
            sink = CloudSink(
                # A request timeout far beyond the give-up: only the give-up can end this attempt.
                CloudSinkConfig(
                    base_url=f"http://127.0.0.1:{port}/", api_key=SecretStr("k"), timeout_seconds=600.0
                ),
                RetryConfig(give_up_after_seconds=2.0),
                ImagesConfig(),
                Metrics(),
            )
            report = await deliver_bounded(sink, 1)
        assert not report.delivered
        assert [rejection.reason for rejection in report.rejected] == [Reason.DELIVERY_TIMEOUT]

    asyncio.run(scenario())


def test_a_dribbling_event_store_times_out_and_give_up_dead_letters_the_event() -> None:
    async def scenario() -> None:
        async with dribbling_server() as port:
            sink = LocalSink(
                LocalSinkConfig(url=f"http://127.0.0.1:{port}", timeout_seconds=2.0),
                RetryConfig(give_up_after_seconds=3.0, initial_backoff_seconds=0.1, max_backoff_seconds=0.2),
                ImagesConfig(),
                Metrics(),
            )
            report = await deliver_bounded(sink, 1)
        assert not report.delivered
        assert [rejection.reason for rejection in report.rejected] == [Reason.DELIVERY_TIMEOUT]

    asyncio.run(scenario())


def test_the_request_timeout_itself_ends_a_dribbling_attempt_before_the_give_up() -> None:
    async def scenario() -> float | None:
        async with dribbling_server() as port:
            metrics = Metrics()
            sink = CloudSink(
                # Give-up far later than the request timeout: an attempt that ends early was ended by
                # the request's own whole-exchange bound (a per-read timeout would never trip here).
                CloudSinkConfig(
                    base_url=f"http://127.0.0.1:{port}/", api_key=SecretStr("k"), timeout_seconds=2.0
                ),
                RetryConfig(give_up_after_seconds=6.0, initial_backoff_seconds=0.1, max_backoff_seconds=0.2),
                ImagesConfig(),
                metrics,
            )
            await deliver_bounded(sink, 1)
        return metrics.registry.get_sample_value(
            "vision_events_api_retries_total", {"endpoint": "batch", "cause": "TimeoutError"}
        )

    retried = asyncio.run(scenario())
    assert retried is not None and retried >= 1
