"""A naive Python consumer: what a user might write in an afternoon instead of running the consumer.

``python -m bench.naive kafka --bootstrap B --topic T --group G --api-url URL`` and
``python -m bench.naive mqtt --url mqtt://H:P --client-id C --filter F --api-url URL``: read the
bench's ``od`` messages (Roboflow detections), map each to a ``quality_check`` Vision Event as the
Benthos peer does (bench/peers.py), and POST batches of up to 100 events (50 ms linger) as
``{"events": [...]}`` to ``URL/vision-events/batch``, one request at a time, with the Bearer key
from the ``BENCH_API_KEY`` environment variable. It runs until it is terminated.

Deliberately naive, as a peer for the bench, not a pattern: no validation (a malformed message
raises and kills it), plain ``json`` and dicts, Kafka offsets auto-committed by librdkafka
whether or not the events were delivered, MQTT messages acknowledged by paho as soon as they are
read. Only retries on 429/5xx, as the Benthos peer's ``http_client`` does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import paho.mqtt.client as paho
from confluent_kafka import Consumer
from paho.mqtt.enums import CallbackAPIVersion

from bench.standin import API_KEY

# The consumer's event id namespace (consumer/identity.py): same events, same ids.
NAMESPACE = uuid.UUID("6f1d4c1e-8a57-5a0e-9d53-0c6b6f7e2a41")
FAIL_CLASSES = frozenset({"defect", "scratch"})
MIN_CONFIDENCE = 0.5
MAX_EVENTS = 100
LINGER_SECONDS = 0.05
RETRIES = 5


def to_event(topic: str, payload: bytes | bytearray, device_id: str) -> dict[str, Any]:
    """The ``od`` route's Vision Event, mapped field by field like the Benthos peer's bloblang."""
    message = json.loads(payload)
    predictions = message["predictions"]
    source = message["frame"]["source_id"]
    name = "topic:" + topic + "\x00sha256:" + hashlib.sha256(payload).hexdigest()
    failed = any(p["class"] in FAIL_CLASSES and p["confidence"] >= MIN_CONFIDENCE for p in predictions)
    return {
        "eventId": str(uuid.uuid5(NAMESPACE, name)),
        "eventType": "quality_check",
        "useCaseId": "bench-qc",
        "timestamp": datetime.fromtimestamp(message["published_at"], UTC).isoformat(timespec="microseconds"),
        "images": [
            {
                "sourceId": source,
                "inputSourceId": source,
                "label": "workflow",
                "objectDetections": [
                    {
                        "class": p["class"],
                        "x": p["x"],
                        "y": p["y"],
                        "width": p["width"],
                        "height": p["height"],
                        "confidence": max(min(p["confidence"], 1.0), 0.0),
                    }
                    for p in predictions
                ],
            }
        ],
        "eventData": {"result": "fail" if failed else "pass", "externalId": message["inference_id"]},
        "displayImagePosition": 0,
        "deviceId": device_id,
    }


class Poster:
    """POSTs one batch at a time; retries 429 and 5xx like the peer's ``http_client`` (5 times)."""

    def __init__(self, api_url: str, api_key: str) -> None:
        self.url = api_url.rstrip("/") + "/vision-events/batch"
        self.client = httpx.Client(
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            timeout=30.0,
        )

    def post(self, events: list[dict[str, Any]]) -> None:
        """Send ``events`` as one batch; raise when the API refuses it for good."""
        body = json.dumps({"events": events})
        delay = 0.2
        for attempt in range(RETRIES + 1):
            response = self.client.post(self.url, content=body)
            if response.status_code < 300:
                return
            retryable = response.status_code == 429 or response.status_code >= 500
            if not retryable or attempt == RETRIES:
                raise RuntimeError(f"the API answered {response.status_code}: {response.text[:200]}")
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def run_kafka(args: argparse.Namespace, poster: Poster) -> None:
    """Subscribe, consume, map, post in batches; librdkafka commits offsets on its own timer."""
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
        }
    )
    consumer.subscribe([args.topic])
    batch: list[dict[str, Any]] = []
    first = 0.0
    while True:
        for message in consumer.consume(num_messages=MAX_EVENTS, timeout=LINGER_SECONDS):
            if message.error() is not None:
                continue
            if not batch:
                first = time.monotonic()
            batch.append(to_event(message.topic() or "", message.value() or b"", "kafka"))
            if len(batch) >= MAX_EVENTS:
                poster.post(batch)
                batch = []
        if batch and time.monotonic() - first >= LINGER_SECONDS:
            poster.post(batch)
            batch = []


def run_mqtt(args: argparse.Namespace, poster: Poster) -> None:
    """paho's network thread maps each message onto a queue; this thread batches and posts."""
    events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    host, _, port = args.url.removeprefix("mqtt://").partition(":")

    def on_connect(client: paho.Client, *_args: Any) -> None:
        client.subscribe([(topic, 1) for topic in args.filter])

    def on_message(_client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        events.put(to_event(message.topic, message.payload, message.topic.split("/")[2]))

    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=args.client_id, clean_session=False, protocol=paho.MQTTv311
    )
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(host, int(port or 1883), keepalive=30)
    client.loop_start()
    while True:
        batch = [events.get()]
        deadline = time.monotonic() + LINGER_SECONDS
        while len(batch) < MAX_EVENTS:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(events.get(timeout=left))
            except queue.Empty:
                break
        poster.post(batch)


def main() -> None:
    """Parse the arguments and run until terminated."""
    parser = argparse.ArgumentParser(prog="python -m bench.naive", description=__doc__)
    sub = parser.add_subparsers(dest="transport", required=True)
    k = sub.add_parser("kafka")
    k.add_argument("--bootstrap", required=True)
    k.add_argument("--topic", required=True)
    k.add_argument("--group", required=True)
    m = sub.add_parser("mqtt")
    m.add_argument("--url", required=True)
    m.add_argument("--client-id", required=True)
    m.add_argument("--filter", action="append", required=True, help="a subscription (repeatable)")
    for p in (k, m):
        p.add_argument("--api-url", required=True, help="the API (the stand-in's) base URL")
    args = parser.parse_args()
    poster = Poster(args.api_url, os.environ.get("BENCH_API_KEY", API_KEY))
    runners: dict[str, Callable[[argparse.Namespace, Poster], None]] = {"kafka": run_kafka, "mqtt": run_mqtt}
    sys.stderr.write(f"naive {args.transport} consumer running\n")
    runners[args.transport](args, poster)


if __name__ == "__main__":
    main()
