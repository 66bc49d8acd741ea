"""``python -m bench``: throughput, latency and memory of the consumer against real local brokers.

See bench/README.md for what is measured and how to read the table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.messages import KINDS
from bench.peers import PEERS
from bench.procs import cpu_count
from bench.report import chart, table, write_json
from bench.run import Plan, Runner

RESULTS = Path(__file__).resolve().parent / "results"

# The consumer settings the benchmark runs with (reported with the results).
BATCH: dict[str, Any] = {
    "max_events": 100,
    "linger_ms": 50,
    "max_in_flight_batches": 8,
    "max_in_flight_events": 5_000,
}
KAFKA: dict[str, Any] = {
    "consume_batch_size": 1000,
    # Return a partial batch after 20 ms instead of waiting up to 0.5 s for a full one (latency).
    "consume_timeout_seconds": 0.02,
    "commit_interval_seconds": 5,
    # librdkafka's prefetch queue (default 64 MB) counts in the RSS; 16 MB keeps it fed.
    "settings": {"queued.max.messages.kbytes": 16384},
}
MQTT: dict[str, Any] = {"receive_maximum": 2000}
SINK: dict[str, Any] = {"upload_concurrency": 16}


def plan_of(args: argparse.Namespace) -> Plan:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        sys.exit("the benchmark needs two CPUs: one for the consumer, one for the rest")
    consumer_cpu = cpus[1] if args.consumer_cpu is None else args.consumer_cpu
    others = {c for c in cpus if c != consumer_cpu}
    quick = args.quick
    counts = {
        "od": args.count or (5_000 if quick else 100_000),
        "cls": args.count or (5_000 if quick else 100_000),
        "jpeg": args.jpeg_count or (300 if quick else 5_000),
    }
    return Plan(
        transports=args.transports.split(","),
        kinds=args.kinds.split(","),
        counts=counts,
        latency_seconds=args.latency_seconds or (3.0 if quick else 20.0),
        latency_fraction=0.5,
        backlog=0
        if quick and args.backlog is None
        else (args.backlog if args.backlog is not None else 1_000_000),
        standin_seconds=2.0 if quick else 5.0,
        consumer_cpus={consumer_cpu},
        other_cpus=others,
        batch=dict(BATCH),
        kafka=dict(KAFKA),
        mqtt=dict(MQTT),
        sink=dict(SINK),
        profile=args.profile,
        spool=args.spool,
        peers=[p for p in args.peers.split(",") if p],
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run (< 1 min): small counts, no backlog"
    )
    parser.add_argument("--transports", default="kafka,mqtt")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--count", type=int, help="messages per od/cls drain")
    parser.add_argument("--jpeg-count", type=int, help="messages in the jpeg drain")
    parser.add_argument(
        "--backlog", type=int, help="Kafka backlog drained for memory (0: skip; full default 1M)"
    )
    parser.add_argument("--latency-seconds", type=float, help="length of the half-rate latency phase")
    parser.add_argument("--consumer-cpu", type=int, help="the CPU the consumer runs on (default: the second)")
    parser.add_argument(
        "--profile", type=Path, help="py-spy the consumer during each drain; collapsed stacks here"
    )
    parser.add_argument(
        "--spool",
        choices=("full", "normal"),
        help="run with the durable spool on, at this synchronous level (compare with a run without)",
    )
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help="peers measured on the od messages after the consumer (bench/peers.py; '' for none)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON and PNG go")
    parser.add_argument("--name", help="file name stem (default: quick|full-<UTC time>)")
    args = parser.parse_args()
    plan = plan_of(args)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.name or f"{'quick' if args.quick else 'full'}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    began = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {text}", flush=True)

    with tempfile.TemporaryDirectory(prefix="vec-bench-") as tmp, Runner(plan, Path(tmp), say) as runner:
        say(
            f"run {runner.run_id}: consumer on CPU {sorted(plan.consumer_cpus)}, "
            f"the rest on {sorted(plan.other_cpus)}"
        )
        runner.standin_rate()
        for transport in plan.transports:
            try:
                runner.transport(transport)
            except Exception as exc:  # noqa: BLE001 - report it with the figures of the other phases
                say(f"{transport}: FAILED: {type(exc).__name__}: {exc}")
                traceback.print_exc()
                runner.results.setdefault("errors", []).append(
                    {"transport": transport, "error": f"{type(exc).__name__}: {exc}"}
                )
        dead = Path(tmp) / "dead-letters.jsonl"
        dead_letters = sum(1 for _ in dead.open()) if dead.exists() else 0
        results = runner.results
        if runner.standin is not None:
            results["standin_stats"] = runner.standin.stats()
    results["dead_letters"] = dead_letters
    results["settings"] = {
        "batch": plan.batch,
        "kafka": plan.kafka,
        "mqtt": plan.mqtt,
        "sink": plan.sink,
        "spool": plan.spool,
        "peers": plan.peers,
    }
    results["counts"] = plan.counts
    results["machine"] = {
        "cpus": cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - began, 1),
    }
    print()
    print(table(results))
    print()
    print(f"dead letters: {dead_letters}; settings: {results['settings']}")
    json_path = args.out / f"{stem}.json"
    write_json(results, json_path)
    png_path = args.out / f"{stem}.png"
    drawn = chart(results, png_path)
    say(f"wrote {json_path}" + (f" and {png_path}" if drawn else " (no chart: matplotlib is not installed)"))


if __name__ == "__main__":
    main()
