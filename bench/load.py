"""The stand-in's own accept rate: post ready-made batches as fast as it answers.

``python -m bench.load --url U --api-key K --source-id S --kind od --seconds 5 --connections 4``
builds real batch bodies (the bench messages through the consumer's own normalizer and wire
format, 100 events each), then posts them over keep-alive connections for ``--seconds`` and prints
one JSON line ``{"events", "requests", "seconds", "rate", "errors"}``. Run it on the consumer's core:
it measures the stand-in where the consumer would be.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench.messages import Naming, Payloads
from consumer import wire
from consumer.config import ImagesConfig, LimitsConfig
from consumer.model import InboundMessage, VisionEvent
from consumer.normalize import Normalizer
from consumer.routing import load_routes


def batch_bodies(kind: str, source_id: str, batches: int, size: int = 100) -> list[bytes]:
    """``batches`` bodies of ``size`` events of ``kind``, every eventId distinct."""
    naming = Naming("load", "mqtt")
    payloads = Payloads("load", source_id)
    with tempfile.TemporaryDirectory() as tmp:
        routes = Path(tmp) / "routes.yaml"
        routes.write_text(naming.routes_yaml())
        normalizer = Normalizer(load_routes(routes), LimitsConfig(), ImagesConfig())
    now = time.time()
    bodies = []
    for b in range(batches):
        parts = []
        for i in range(size):
            seq = b * size + i
            topic = naming.topic(kind, 1 + seq % 4)
            message = InboundMessage("mqtt", topic, payloads.make(kind, seq, now), now)
            event = normalizer.normalize(message)
            if not (isinstance(event, VisionEvent)):
                raise TypeError("unexpected state")
            parts.append(orjson.dumps(wire.cloud_event(event, None, source_id)))
        bodies.append(b'{"events":[' + b",".join(parts) + b"]}")
    return bodies


def run(url: str, api_key: str, bodies: list[bytes], seconds: float, connections: int) -> dict[str, Any]:
    parts = urlsplit(url)
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    totals = {"requests": 0, "errors": 0}
    lock = threading.Lock()
    start = threading.Event()
    deadline = [0.0]

    def worker(offset: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)
        done = errors = 0
        index = offset
        start.wait()
        while time.monotonic() < deadline[0]:
            conn.request("POST", "/vision-events/batch", bodies[index % len(bodies)], headers)
            response = conn.getresponse()
            response.read()
            if response.status == 201:
                done += 1
            else:
                errors += 1
            index += connections
        conn.close()
        with lock:
            totals["requests"] += done
            totals["errors"] += errors

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    deadline[0] = began + seconds
    start.set()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    events = totals["requests"] * 100
    return {
        "events": events,
        "requests": totals["requests"],
        "errors": totals["errors"],
        "seconds": round(elapsed, 3),
        "rate": round(events / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--source-id", required=True)
    parser.add_argument("--kind", default="od", choices=("od", "cls"))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--batches", type=int, default=50)
    args = parser.parse_args()
    bodies = batch_bodies(args.kind, args.source_id, args.batches)
    result = run(args.url, args.api_key, bodies, args.seconds, args.connections)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
