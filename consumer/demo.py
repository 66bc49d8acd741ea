"""``vision-events-consumer demo``: the bundled sample messages, end to end, no account needed.

Starts the local Vision Events API stand-in on a free port, runs the real pipeline (file source,
cloud sink over HTTP, JSONL dead letters) over ``consumer/samples/messages.jsonl`` with the
routes in ``consumer/samples/routes.yaml``, and prints what the stand-in received.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from collections import Counter
from pathlib import Path

from consumer.app import App
from consumer.config import load_settings
from consumer.deadletter import read_dead_letters
from consumer.fakeapi import FakeVisionEventsApi
from consumer.logs import configure_logging

SAMPLES = Path(__file__).parent / "samples"
DEMO_API_KEY = "demo-key"
DEMO_USE_CASES = ("line-qc", "warehouse-inventory", "site-safety", "custom-events", "operator-feedback")


def run_demo(*, verbose: bool = False) -> int:
    """Run the demo and print a summary; 0 when every sample ended as expected."""
    configure_logging("INFO" if verbose else "ERROR", "text")
    with (
        tempfile.TemporaryDirectory(prefix="vec-demo-") as tmp,
        FakeVisionEventsApi(api_keys=(DEMO_API_KEY,), use_cases=DEMO_USE_CASES) as api,
    ):
        dead_letter_path = Path(tmp) / "dead-letters.jsonl"
        settings = load_settings(
            None,
            {
                "routes": str(SAMPLES / "routes.yaml"),
                "source.type": "file",
                "source.file.path": str(SAMPLES / "messages.jsonl"),
                "sink.type": "cloud",
                "sink.cloud.base_url": api.url,
                "sink.cloud.api_key": DEMO_API_KEY,
                "dead_letter.jsonl.path": str(dead_letter_path),
                "batch.linger_ms": 50,
                "http.host": "127.0.0.1",
                "http.port": 0,
            },
        )
        out = sys.stdout
        out.write(f"Vision Events API stand-in listening on {api.url}\n")
        out.write(f"Sending {SAMPLES / 'messages.jsonl'} through routes {SAMPLES / 'routes.yaml'}\n\n")
        result = asyncio.run(App(settings).run())
        events = api.events()
        by_type = Counter(str(body["eventType"]) for body in events.values())
        with_images = sum(1 for body in events.values() if body.get("images"))
        uploads = len(api.uploads())
        out.write(f"Delivered {len(events)} events ({with_images} with images, {uploads} images uploaded):\n")
        for event_type, count in sorted(by_type.items()):
            out.write(f"  {event_type:<18} {count}\n")
        dead = list(read_dead_letters(dead_letter_path)) if dead_letter_path.exists() else []
        out.write(f"\nDead-lettered {len(dead)} messages (kept byte-exact in the dead-letter file):\n")
        for reason, count in sorted(Counter(record.reason for record in dead).items()):
            out.write(f"  {reason:<18} {count}\n")
        out.write(
            f"\nSettled without an event by a route (cooldown, no alert class): {result.stats.skipped}\n"
        )
        settled = result.stats.settled()
        out.write(f"All {result.stats.received} messages settled: {settled == result.stats.received}\n")
        logging.shutdown()
        return 0 if settled == result.stats.received and result.drained else 1
