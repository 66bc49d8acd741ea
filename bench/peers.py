"""The peers: what a user would run instead of the consumer, measured on the same ``od`` messages.

- ``benthos``: Benthos v4.27.0 (built by scripts/build-benthos.sh; ../shared/peer-bench/README.md
  says why not Redpanda Connect) with a config generated here doing the ``od`` route's job: the
  same Vision Event per message (bloblang), batches of <= 100 (50 ms linger) POSTed as
  ``{"events": [...]}``, 8 requests in flight, retries on 429/5xx.
- ``naive``: bench/naive.py, a plain Python consumer (no validation, auto-commit).

Each peer reads the very messages the consumer has just drained: on Kafka with its own consumer
group from the oldest offset, on MQTT by resuming a persistent session the run created before the
consumer's warm-up (so the broker queued the same messages for it). So the peer first reads the
200 warm-up messages, then the drain's ``count``. Its CPU (user + system, all threads, from
/proc) is counted from the moment the warm-up is accepted (start-up, connections and group join
excluded, as the consumer's are) until every message is accepted, divided by the events accepted
in between. It runs pinned to the consumer's core while the consumer is idle, one peer at a time.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.procs import Child, python, usage
from bench.standin import API_KEY, StandIn

PEERS = ("benthos", "naive")
# How the results table names them.
LABELS = {"benthos": "Benthos v4.27.0", "naive": "naive Python consumer"}
WARM_UP = 200
_ROOT = Path(__file__).resolve().parent.parent

# The od route of bench/messages.py (Naming.routes_yaml) in bloblang. The eventId is the
# consumer's (consumer/identity.py): UUIDv5 in its namespace of "topic:<topic>\0sha256:<hex>",
# its version and variant digits set on the SHA-1 hex. The timestamp keeps microseconds, as the
# consumer's does. tests/integration/test_bench_peers.py checks the events equal the consumer's.
_UUID5 = """
let topic = @kafka_topic | @mqtt_topic
let digest = content().hash("sha256").encode("hex").string()
let namespace = "6f1d4c1e8a575a0e9d530c6b6f7e2a41".decode("hex").string()
let name = $namespace + "topic:" + $topic + "\\x00sha256:" + $digest
let sha1 = $name.hash("sha1").encode("hex").string()
let variant = {"0": "8", "1": "9", "2": "a", "3": "b", "4": "8", "5": "9", "6": "a", "7": "b",
               "8": "8", "9": "9", "a": "a", "b": "b", "c": "8", "d": "9", "e": "a", "f": "b"}
root.eventId = [$sha1.slice(0, 8), $sha1.slice(8, 12), "5" + $sha1.slice(13, 16),
                $variant.get($sha1.slice(16, 17)) + $sha1.slice(17, 20), $sha1.slice(20, 32)].join("-")
"""
_EVENT = """
let frame = this.frame.source_id
root.eventType = "quality_check"
root.useCaseId = "bench-qc"
root.timestamp = this.published_at.ts_round(1000).ts_format("2006-01-02T15:04:05.000000-07:00", "UTC")
root.images = [{
  "sourceId": $frame,
  "inputSourceId": $frame,
  "label": "workflow",
  "objectDetections": this.predictions.map_each(box -> {
    "class": box.class, "x": box.x, "y": box.y, "width": box.width, "height": box.height,
    "confidence": [[box.confidence, 1.0].min(), 0.0].max()
  })
}]
let failed = this.predictions.any(box -> ["defect", "scratch"].contains(box.class) && box.confidence >= 0.5)
root.eventData = {"result": if $failed { "fail" } else { "pass" }, "externalId": this.inference_id}
root.displayImagePosition = 0
"""
_DEVICE = {"kafka": 'root.deviceId = "kafka"\n', "mqtt": 'root.deviceId = $topic.split("/").index(2)\n'}


def mapping(transport: str) -> str:
    """The bloblang mapping of one ``od`` message to its Vision Event on ``transport``."""
    return _UUID5 + _EVENT + _DEVICE[transport]


@dataclass(frozen=True, slots=True)
class Source:
    """Where a peer reads: Kafka (``bootstrap``, ``topic``, ``group``) or MQTT (``url``, ``client_id``,
    ``filter``)."""

    transport: str
    bootstrap: str = ""
    topic: str = ""
    group: str = ""
    url: str = ""
    client_id: str = ""
    filter: str = ""


def benthos_binary() -> Path | None:
    """The Benthos built by scripts/build-benthos.sh (``BENCH_BENTHOS`` overrides), or None."""
    override = os.environ.get("BENCH_BENTHOS")
    if override:
        return Path(override)
    found = subprocess.run(  # noqa: S603 - our own script
        [str(_ROOT / "scripts" / "build-benthos.sh"), "path"], capture_output=True, text=True, check=False
    )
    path = Path(found.stdout.strip())
    return path if found.returncode == 0 and path.is_file() else None


def benthos_config(source: Source, api_url: str, http_port: int) -> dict[str, Any]:
    """A Benthos config doing the consumer's job for the bench's ``od`` messages.

    The API key is read from ``BENCH_API_KEY`` in Benthos's environment, not written here.
    """
    if source.transport == "kafka":
        input_: dict[str, Any] = {
            "kafka_franz": {
                "seed_brokers": [source.bootstrap],
                "topics": [source.topic],
                "consumer_group": source.group,
                "start_from_oldest": True,
                "commit_period": "5s",
            }
        }
    else:
        input_ = {
            "mqtt": {
                # The Go client wants tcp://, the project's settings say mqtt://.
                "urls": ["tcp://" + source.url.removeprefix("mqtt://")],
                "topics": [source.filter],
                "client_id": source.client_id,
                "qos": 1,
                "clean_session": False,
                "keepalive": 30,
            }
        }
    return {
        "input": input_,
        # threads: default (GOMAXPROCS, which Go takes from the CPU affinity: 1 here).
        "pipeline": {"processors": [{"mapping": mapping(source.transport)}]},
        "output": {
            "http_client": {
                "url": api_url.rstrip("/") + "/vision-events/batch",
                "verb": "POST",
                "headers": {"Authorization": "Bearer ${BENCH_API_KEY}", "Content-Type": "application/json"},
                "timeout": "30s",
                "max_in_flight": 8,  # the consumer's batch.max_in_flight_batches in the bench
                "retries": 5,
                "retry_period": "200ms",
                "max_retry_backoff": "10s",
                "backoff_on": [429],
                "batching": {
                    "count": 100,
                    "period": "50ms",
                    "processors": [
                        {"archive": {"format": "json_array"}},
                        {"mapping": "root.events = this"},
                    ],
                },
            }
        },
        "http": {"address": f"127.0.0.1:{http_port}"},
        "logger": {"level": "INFO", "format": "logfmt"},
        "metrics": {"prometheus": {}},
    }


def start(name: str, source: Source, api_url: str, *, workdir: Path, cpus: set[int], http_port: int) -> Child:
    """Start peer ``name`` reading ``source``, pinned to ``cpus``."""
    log = workdir / f"peer-{name}-{source.transport}.log"
    env = {"BENCH_API_KEY": API_KEY}
    if name == "benthos":
        binary = benthos_binary()
        if binary is None:
            raise RuntimeError("Benthos is not built: run scripts/build-benthos.sh (make bench does)")
        config = workdir / f"benthos-{source.transport}.yaml"
        config.write_text(yaml.safe_dump(benthos_config(source, api_url, http_port), sort_keys=False))
        return Child([str(binary), "-c", str(config)], cpus=cpus, log=log, env=env)
    if name == "naive":
        if source.transport == "kafka":
            where = ["--bootstrap", source.bootstrap, "--topic", source.topic, "--group", source.group]
        else:
            where = ["--url", source.url, "--client-id", source.client_id, "--filter", source.filter]
        argv = python("-m", "bench.naive", source.transport, *where, "--api-url", api_url)
        return Child(argv, cpus=cpus, log=log, env=env)
    raise ValueError(f"unknown peer {name!r} (known: {', '.join(PEERS)})")


def drain(
    name: str,
    peer: Child,
    standin: StandIn,
    *,
    transport: str,
    count: int,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure ``peer`` reading the warm-up and then ``count`` messages; stop it; one result row.

    The stand-in's acceptance log must have been cleared before the peer started.
    """
    try:
        accepted, moment = _wait_accepted(peer, standin, WARM_UP, 120, f"{name}: the warm-up")
        before = usage(peer.pid)
        start_count, started = accepted, moment
        peak_rss = 0
        total = WARM_UP + count
        deadline = time.monotonic() + 120 + count / 500
        while accepted < total:
            if time.monotonic() > deadline or not peer.alive():
                raise RuntimeError(
                    f"{name}/{transport}: drain incomplete ({accepted}/{total})\n{peer.log_tail()}"
                )
            reading = usage(peer.pid)
            if reading is not None:
                peak_rss = max(peak_rss, reading.rss)
            time.sleep(0.02)
            accepted, moment = standin.accepted(), time.time()
        after = usage(peer.pid)
    finally:
        peer.terminate()
    if before is None or after is None:
        raise RuntimeError(f"{name} exited during its drain\n{peer.log_tail()}")
    events = accepted - start_count
    row = {
        "system": name,
        "label": LABELS.get(name, name),
        "transport": transport,
        "kind": "od",
        "count": events,
        "rate": round(events / max(moment - started, 1e-6), 1),
        "cpu_per_1000": round((after.cpu - before.cpu) / max(events, 1) * 1000, 4),
        "cpu_seconds": round(after.cpu - before.cpu, 3),
        "peak_rss_mb": round(max(peak_rss, after.rss) / 2**20, 1),
    }
    say(
        f"{transport}/od: {name} drained {events} events at {row['rate']:,.0f}/s, "
        f"{row['cpu_per_1000']:.3f} CPU-s/1000, RSS {row['peak_rss_mb']} MB"
    )
    return row


def _wait_accepted(
    peer: Child, standin: StandIn, target: int, timeout: float, what: str
) -> tuple[int, float]:
    deadline = time.monotonic() + timeout
    while True:
        accepted = 0
        with contextlib.suppress(httpx.HTTPError):
            accepted = standin.accepted()
        if accepted >= target:
            return accepted, time.time()
        if not peer.alive():
            raise RuntimeError(f"{what}: the peer exited\n{peer.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}\n{peer.log_tail()}")
        time.sleep(0.02)
