"""The pipeline's own cost per event, in one process, without brokers: ``python -m bench.inproc``.

Feeds ready-made messages (as a source would hand them over, 1000 at a time) through the real
``Pipeline`` (normalizer, batching, acknowledgement) and the real cloud sink over HTTP into the
stand-in (fast mode, on another CPU), and reports wall time and this process's CPU time per
event. Against ``python -m bench`` the difference is the transport (client library, source
thread, hand-off); against ``python -m bench.micro`` it is batching, HTTP and bookkeeping.

``--profile FILE`` writes a cProfile of the run (``python -m pstats FILE`` to read it).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.messages import Naming, Payloads, inbound_messages, jpeg_of_size, routing_table
from bench.procs import cpu_count
from bench.standin import API_KEY, StandIn
from consumer.config import BatchConfig, CloudSinkConfig, ImagesConfig, LimitsConfig, RetryConfig
from consumer.deadletter import JsonlDeadLetterWriter
from consumer.delivery import DeadLetterGate
from consumer.metrics import Metrics
from consumer.model import InboundMessage
from consumer.normalize import Normalizer
from consumer.pipeline import Pipeline
from consumer.sinks.cloud import CloudSink

_HANDOFF = 1000  # messages per submit, as the Kafka source hands them over


class _Acks:
    """Counts acknowledgements, as a source's ack callback would be called."""

    def __init__(self) -> None:
        self.count = 0

    def ack(self) -> None:
        self.count += 1


async def _drain(pipeline: Pipeline, sink: CloudSink, messages: list[InboundMessage]) -> None:
    for start in range(0, len(messages), _HANDOFF):
        await pipeline.submit(messages[start : start + _HANDOFF])
    await pipeline.flush()
    await sink.aclose()


@dataclass(frozen=True, slots=True)
class InprocResult:
    """One in-process drain: events, wall and CPU microseconds per event."""

    kind: str
    events: int
    wall_us: float
    cpu_us: float

    def line(self) -> str:
        """A human line for the terminal."""
        return (
            f"{self.kind}: {self.events} events, {1e6 / self.wall_us:,.0f} events/s, "
            f"{self.wall_us:.1f} us wall and {self.cpu_us:.1f} us CPU per event"
        )


def run(kind: str, count: int, profile: Path | None, workdir: Path) -> InprocResult:
    """Drain ``count`` messages of ``kind`` through the pipeline; the cost per event."""
    other = {0} if cpu_count() > 1 else None
    standin = StandIn(other, workdir / "standin.log")
    try:
        if cpu_count() > 1:
            os.sched_setaffinity(0, {1})
        source_id = standin.upload(jpeg_of_size())
        naming = Naming("inproc", "kafka")
        payloads = Payloads("inproc", source_id)
        acks = _Acks()
        messages = inbound_messages(naming, payloads, kind, count, ack=acks.ack)
        metrics = Metrics()
        sink = CloudSink(
            CloudSinkConfig(base_url=standin.url, api_key=API_KEY, upload_concurrency=16),
            RetryConfig(),
            ImagesConfig(),
            metrics,
        )
        pipeline = Pipeline(
            Normalizer(routing_table(naming), LimitsConfig(), ImagesConfig()),
            sink,
            DeadLetterGate(JsonlDeadLetterWriter(workdir / "dead-letters.jsonl"), metrics),
            metrics,
            BatchConfig(max_events=100, linger_ms=50, max_in_flight_batches=8, max_in_flight_events=5000),
        )
        profiler = cProfile.Profile() if profile is not None else None
        started, cpu_started = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        asyncio.run(_drain(pipeline, sink, messages))
        if profiler is not None:
            profiler.disable()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if not (acks.count == count and pipeline.stats.delivered == count):
            raise RuntimeError(f"{acks.count} acknowledged, {pipeline.stats.delivered} delivered of {count}")
        if profiler is not None and profile is not None:
            profiler.dump_stats(profile)
            print(f"profile written to {profile}")
        return InprocResult(kind, count, wall / count * 1e6, cpu / count * 1e6)
    finally:
        standin.child.terminate(5)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inproc", description=__doc__)
    parser.add_argument("--kind", default="od", choices=("od", "cls", "jpeg"))
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(run(args.kind, args.count, args.profile, Path(tmp)).line())


if __name__ == "__main__":
    main()
