"""CPU per request of two HTTP client libraries, against the same stand-in, in one run.

``python -m bench.transports [--requests 200] [--rounds 5]`` starts the stand-in
(``python -m consumer.fakeapi --fast``) as a child process, so its CPU is not counted, then for
each transport posts ``--requests`` batches (100 events, about 60 KB of JSON, the consumer's
own wire format: a quarter ``od``, the rest ``cls``) and as many image uploads (a real 50 KB
JPEG, multipart ``file``) over one keep-alive connection, with ``time.process_time()`` around
each series. The transports take turns within every round, so a slower moment of the machine
falls on all of them; the table shows the median of the rounds, in microseconds of this
process's CPU per request:

- ``httpx``: ``httpx.AsyncClient`` with its default transport (httpcore's pool);
- ``aiohttp``: ``aiohttp.ClientSession`` (its own pool and HTTP parser), what the sinks use.

The sinks' former hand-written transport is gone; its measured figures are kept in the README
("HTTP libraries: measured, and what was decided").

Every answer is read whole and its status checked: a transport that fails a request fails the run.
Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp
import httpx
import orjson

from bench.load import batch_bodies
from bench.messages import jpeg_of_size
from bench.standin import API_KEY, StandIn

BATCH_PATH: Final = "/vision-events/batch"
UPLOAD_PATH: Final = "/vision-events/upload"
AUTH: Final = {"Authorization": f"Bearer {API_KEY}"}
JSON_HEADERS: Final = {**AUTH, "Content-Type": "application/json"}

# One series: send ``count`` requests of one kind, raise on any unexpected status.
Series = Callable[[int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Client:
    """One transport's batch and upload series, and how to close it."""

    name: str
    batch: Series
    upload: Series
    close: Callable[[], Awaitable[None]]


def _check(name: str, status: int, expected: int) -> None:
    if status != expected:
        raise RuntimeError(f"{name}: HTTP {status}, expected {expected}")


def httpx_client(name: str, url: str, bodies: list[bytes], image: bytes) -> Client:
    """httpx called the way the sinks once did: ``request(content=...)`` and ``files=`` for uploads."""
    client = httpx.AsyncClient(base_url=url, timeout=30)

    async def batch(count: int) -> None:
        for i in range(count):
            response = await client.post(BATCH_PATH, content=bodies[i % len(bodies)], headers=JSON_HEADERS)
            _check(name, response.status_code, 201)

    async def upload(count: int) -> None:
        for _ in range(count):
            response = await client.post(
                UPLOAD_PATH, files={"file": ("frame.jpg", image, "image/jpeg")}, headers=AUTH
            )
            _check(name, response.status_code, 201)

    return Client(name, batch, upload, client.aclose)


def aiohttp_client(url: str, bodies: list[bytes], image: bytes) -> Client:
    """aiohttp's session: ``data=bytes`` for batches, ``FormData`` for uploads."""
    session = aiohttp.ClientSession(base_url=url, timeout=aiohttp.ClientTimeout(total=30))

    async def batch(count: int) -> None:
        for i in range(count):
            async with session.post(BATCH_PATH, data=bodies[i % len(bodies)], headers=JSON_HEADERS) as r:
                await r.read()
                _check("aiohttp", r.status, 201)

    async def upload(count: int) -> None:
        for _ in range(count):
            form = aiohttp.FormData()
            form.add_field("file", image, filename="frame.jpg", content_type="image/jpeg")
            async with session.post(UPLOAD_PATH, data=form, headers=AUTH) as r:
                await r.read()
                _check("aiohttp", r.status, 201)

    return Client("aiohttp", batch, upload, session.close)


def mixed_bodies(source_id: str, count: int) -> list[bytes]:
    """Batches of 100 events, a quarter ``od`` and the rest ``cls``: about 60 KB of JSON each."""
    od = [orjson.loads(body)["events"] for body in batch_bodies("od", source_id, count)]
    cls = [orjson.loads(body)["events"] for body in batch_bodies("cls", source_id, count)]
    return [orjson.dumps({"events": o[:25] + c[25:]}) for o, c in zip(od, cls, strict=True)]


async def _cpu_per_request(series: Series, count: int) -> float:
    """Microseconds of this process's CPU per request over ``count`` requests."""
    started = time.process_time()
    await series(count)
    return (time.process_time() - started) / count * 1e6


async def measure(
    url: str, source_id: str, image: bytes, requests: int, rounds: int
) -> dict[str, dict[str, float]]:
    """Median CPU microseconds per batch and per upload, by transport.

    The batches' events name ``source_id``, an upload the stand-in already holds.
    """
    bodies = mixed_bodies(source_id, 20)
    clients = [
        httpx_client("httpx", url, bodies, image),
        aiohttp_client(url, bodies, image),
    ]
    samples: dict[str, dict[str, list[float]]] = {c.name: {"batch": [], "upload": []} for c in clients}
    try:
        for client in clients:  # warm-up: connections, imports, caches
            await client.batch(20)
            await client.upload(20)
        for _ in range(rounds):
            for client in clients:
                samples[client.name]["batch"].append(await _cpu_per_request(client.batch, requests))
                samples[client.name]["upload"].append(await _cpu_per_request(client.upload, requests))
    finally:
        for client in clients:
            await client.close()
    print(
        f"batch body {sum(map(len, bodies)) // len(bodies):,} bytes (100 events), JPEG {len(image):,} bytes"
    )
    return {
        name: {kind: statistics.median(values) for kind, values in by_kind.items()}
        for name, by_kind in samples.items()
    }


def table(results: dict[str, dict[str, float]]) -> str:
    """A markdown table of the medians, with each figure relative to the cheapest kept library."""
    best = {kind: min(results[name][kind] for name in ("httpx", "aiohttp")) for kind in ("batch", "upload")}
    lines = [
        "| transport | CPU µs / batch (100 events) | vs best library "
        "| CPU µs / image upload | vs best library |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, figures in results.items():
        lines.append(
            f"| {name} | {figures['batch']:,.0f} | {figures['batch'] / best['batch'] - 1:+.0%} "
            f"| {figures['upload']:,.0f} | {figures['upload'] / best['upload'] - 1:+.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Start the stand-in, measure, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.transports", description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="requests per series")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        standin = StandIn(None, Path(tmp) / "standin.log")
        try:
            image = jpeg_of_size()
            source_id = standin.upload(image)
            results = asyncio.run(measure(standin.url, source_id, image, args.requests, args.rounds))
        finally:
            standin.stop()
    print(f"median of {args.rounds} rounds of {args.requests} requests per transport and kind")
    print(table(results))


if __name__ == "__main__":
    main()
