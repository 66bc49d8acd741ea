"""``vision-events-consumer demo``: the bundled sample messages, end to end, no account needed.

Starts the local Vision Events API stand-in on a free port and runs the real consumer against it.
With an MQTT broker (``--mqtt-url`` or ``MQTT_URL``; ``make demo`` starts a local Mosquitto), the
samples are published to it like an edge device would and the consumer subscribes to the routes'
topics; without one, the samples are read from ``consumer/samples/messages.jsonl`` directly.
It prints what the stand-in received, by event type, and what was dead-lettered: by reason, and
which sample (by topic) got which reason. The dead-letter file is kept (``dead-letters-demo.jsonl``
in the working directory, replaced on each run) so the user can open it; its path is printed.

The API refuses capture times older than a year, so a sample record may name, under ``now``,
the payload fields that hold a capture time (``{"after.frame_time": "epoch_seconds"}``): the demo
sets them to the current time before publishing, and the samples never age out.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from consumer.app import App, RunResult
from consumer.config import Settings, load_settings
from consumer.deadletter import read_dead_letters
from consumer.fakeapi import FakeVisionEventsApi
from consumer.logs import configure_logging
from consumer.routing import load_routes

SAMPLES = Path(__file__).parent / "samples"
DEMO_API_KEY = "demo-key"
DEMO_USE_CASES = (
    "line-qc",
    "warehouse-inventory",
    "site-safety",
    "custom-events",
    "operator-feedback",
    # The edge-stack routes' use cases (DeepStream, DL Streamer, Frigate, Axis).
    "restricted-zone",
    "gate-traffic",
    "dock-activity",
    "yard-watch",
    "yard-occupancy",
    "lobby-occupancy",
)
_SETTLE_TIMEOUT_SECONDS = 60.0
# In the working directory, where the user can open it; ``dead-letters*.jsonl`` is git-ignored.
DEMO_DEAD_LETTERS = "dead-letters-demo.jsonl"


def sample_messages(now: float | None = None) -> list[tuple[str, bytes]]:
    """The bundled samples as (topic, payload bytes), their ``now`` fields set to ``now`` (default: now)."""
    moment = time.time() if now is None else now
    out = []
    for line in (SAMPLES / "messages.jsonl").read_bytes().splitlines():
        record: dict[str, Any] = orjson.loads(line)
        if "payload_base64" in record:
            data = base64.b64decode(record["payload_base64"])
        elif isinstance(record["payload"], str):
            data = record["payload"].encode()
        else:
            data = orjson.dumps(_stamped(record["payload"], record.get("now", {}), moment))
        out.append((str(record["topic"]), data))
    return out


def _stamped(payload: Any, fields: dict[str, str], now: float) -> Any:
    """``payload`` with each dotted path of ``fields`` set to ``now`` in that field's unit."""
    for dotted, unit in fields.items():
        *parents, last = dotted.split(".")
        node = payload
        for key in parents:
            node = node[key]
        node[last] = _time_value(now, unit)
    return payload


def _time_value(now: float, unit: str) -> str | float | int:
    if unit == "iso":
        return datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if unit == "epoch_seconds":
        return round(now, 6)
    if unit == "epoch_ns":
        return int(now * 1e9)
    raise ValueError(f"unknown time unit {unit!r} in a sample's 'now'")


def run_demo(
    *, mqtt_url: str | None = None, verbose: bool = False, dead_letter_path: Path | None = None
) -> int:
    """Run the demo and print a summary; 0 when every sample was settled.

    Dead letters go to ``dead_letter_path`` (default ``dead-letters-demo.jsonl`` in the working
    directory), emptied first so the file holds this run's only, and kept afterwards.
    """
    configure_logging("INFO" if verbose else "ERROR", "text")
    url = mqtt_url or os.environ.get("MQTT_URL")
    out = sys.stdout
    dead_letter_path = (dead_letter_path or Path(DEMO_DEAD_LETTERS)).absolute()
    # The JSONL writer appends: a previous run's records would be counted as this run's.
    dead_letter_path.unlink(missing_ok=True)
    with (
        FakeVisionEventsApi(api_keys=(DEMO_API_KEY,), use_cases=DEMO_USE_CASES) as api,
        tempfile.TemporaryDirectory(prefix="vec-demo-") as tmp,
    ):
        overrides: dict[str, Any] = {
            "routes": str(SAMPLES / "routes.yaml"),
            "sink.type": "cloud",
            "sink.cloud.base_url": api.url,
            "sink.cloud.api_key": DEMO_API_KEY,
            "dead_letter.jsonl.path": str(dead_letter_path),
            "batch.linger_ms": 50,
            "http.host": "127.0.0.1",
            "http.port": 0,
        }
        out.write(f"Vision Events API stand-in listening on {api.url}\n")
        samples = sample_messages()
        if url:
            overrides.update(
                {
                    "source.type": "mqtt",
                    "source.mqtt.url": url,
                    "source.mqtt.client_id": f"vision-events-demo-{os.getpid()}",
                    "source.mqtt.session_expiry_seconds": 0,
                    # The routes' filters, plus one no route matches, to show what happens to
                    # a message that arrives on an unrouted topic.
                    "source.mqtt.subscriptions": [
                        {"filter": f, "qos": 1} for f in (*_route_filters(), "unknown/#")
                    ],
                }
            )
            out.write(f"Publishing {len(samples)} sample results to MQTT {url} (QoS 1)\n\n")
            result = asyncio.run(_run_with_mqtt(load_settings(None, overrides), url, samples))
        else:
            # The samples as published (capture times set to now), byte-exact, for the file source.
            stamped = Path(tmp) / "messages.jsonl"
            stamped.write_bytes(
                b"".join(
                    orjson.dumps({"topic": topic, "payload_base64": base64.b64encode(data).decode()}) + b"\n"
                    for topic, data in samples
                )
            )
            overrides.update({"source.type": "file", "source.file.path": str(stamped)})
            out.write(
                f"No MQTT broker given: reading {len(samples)} samples from {SAMPLES / 'messages.jsonl'}\n\n"
            )
            result = asyncio.run(App(load_settings(None, overrides)).run())
        _print_summary(api, dead_letter_path, result, len(samples))
        return 0 if result.stats.settled() == len(samples) and result.drained else 1


def _route_filters() -> list[str]:
    table = load_routes(SAMPLES / "routes.yaml")
    return [r.pattern.mqtt_filter for r in table.routes if r.pattern.mqtt_filter is not None]


async def _run_with_mqtt(settings: Settings, url: str, samples: list[tuple[str, bytes]]) -> RunResult:
    app = App(settings)
    running = asyncio.create_task(app.run())
    try:
        await _until(lambda: app.source.connected, "the consumer to subscribe", running)
        await asyncio.to_thread(_publish, url, samples)
        await _until(
            lambda: app.pipeline is not None and app.pipeline.stats.settled() >= len(samples),
            "every sample to be settled",
            running,
        )
    finally:
        app.stop.set()
    return await running


async def _until(condition: Any, what: str, running: asyncio.Task[RunResult]) -> None:
    deadline = time.monotonic() + _SETTLE_TIMEOUT_SECONDS
    while not condition():
        if running.done():
            running.result()  # raises what stopped the consumer
            raise RuntimeError(f"the consumer stopped before {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _publish(url: str, samples: list[tuple[str, bytes]]) -> None:
    parts = urlsplit(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"vision-events-demo-edge-{os.getpid()}")
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in samples]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def _print_summary(api: FakeVisionEventsApi, dead_letter_path: Path, result: RunResult, sent: int) -> None:
    out = sys.stdout
    events = api.events()
    by_type = Counter(str(body["eventType"]) for body in events.values())
    with_images = sum(1 for body in events.values() if body.get("images"))
    uploads = len(api.uploads())
    out.write(f"Delivered {len(events)} events ({with_images} with images, {uploads} images uploaded):\n")
    for event_type, count in sorted(by_type.items()):
        out.write(f"  {event_type:<18} {count}\n")
    if uploads < with_images:
        out.write(
            "  (fewer uploads than events with images: several samples carry the same frame, and the "
            "cloud sink uploads each distinct image once and lets those events share its id)\n"
        )
    dead = list(read_dead_letters(dead_letter_path)) if dead_letter_path.exists() else []
    out.write(f"\nDead-lettered {len(dead)} messages, by reason:\n")
    for reason, count in sorted(Counter(record.reason for record in dead).items()):
        out.write(f"  {reason:<24} {count}\n")
    if dead:
        out.write("Which sample (by topic) got which reason:\n")
        topics = [str(record.coordinates.get("topic", "?")) for record in dead]
        width = max(len(topic) for topic in topics)
        for topic, record in zip(topics, dead, strict=True):
            where = f" at {record.path}" if record.path else ""
            out.write(f"  {topic:<{width}}  {record.reason}{where}\n")
        out.write(f"Kept byte-exact, with each reason and detail, in {dead_letter_path}\n")
    out.write(
        f"\nSettled without an event by a route (cooldown, when condition, no alert class): "
        f"{result.stats.skipped}\n"
    )
    out.write(f"All {sent} messages settled: {result.stats.settled() == sent}\n")
