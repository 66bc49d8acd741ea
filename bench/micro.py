"""Per-stage cost of the hot path, in one process, without brokers: ``python -m bench.micro``.

Builds the bench messages, then times (per message): ``Normalizer.normalize`` (decode, route,
convert, validate, event id), the cloud sink's per-event serialization, and the stand-in's
validation of the resulting batch bodies. ``--profile`` prints a cProfile of the normalize stage.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from datetime import UTC, datetime

import orjson

from bench.messages import KINDS, Naming, Payloads, inbound_messages, routing_table
from consumer import wire
from consumer.config import ImagesConfig, LimitsConfig
from consumer.fakeapi.validation import StaticReferences, validate_batch
from consumer.model import VisionEvent
from consumer.normalize import Normalizer

SOURCE_ID = "ve-img-bench0000000000"


def run(kinds: list[str], count: int, profile: bool) -> None:
    naming = Naming("micro", "mqtt")
    payloads = Payloads("micro", SOURCE_ID)
    normalizer = Normalizer(routing_table(naming), LimitsConfig(), ImagesConfig())
    refs = StaticReferences(frozenset({"bench-qc", "bench-safety"}), frozenset({SOURCE_ID, "ve-img-up"}))
    print(f"{'kind':6} {'normalize us':>13} {'serialize us':>13} {'stand-in us':>12}")
    for kind in kinds:
        n = count if kind != "jpeg" else max(200, count // 20)
        messages = inbound_messages(naming, payloads, kind, n)
        profiler = cProfile.Profile() if profile else None
        normalize_us = float("inf")
        for _ in range(1 if profile else 3):  # best of three: the machine may be shared
            started = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            events = [normalizer.normalize(m) for m in messages]
            if profiler is not None:
                profiler.disable()
            normalize_us = min(normalize_us, (time.perf_counter() - started) / n * 1e6)
        real = [e for e in events if isinstance(e, VisionEvent)]
        if not (len(real) == n):
            raise RuntimeError(f"{kind}: {n - len(real)} messages made no event")
        started = time.perf_counter()
        bodies = [
            orjson.dumps(wire.cloud_event(e, None if e.input_image is None else "ve-img-up", None))
            if e.input_image is not None and e.input_image.source_id is None
            else orjson.dumps(wire.cloud_event(e, None, e.input_image.source_id if e.input_image else None))
            for e in real
        ]
        batches = [
            b'{"events":[' + b",".join(bodies[i : i + 100]) + b"]}" for i in range(0, len(bodies), 100)
        ]
        serialize_us = (time.perf_counter() - started) / n * 1e6
        now = datetime.now(UTC)
        started = time.perf_counter()
        for batch in batches:
            validate_batch(orjson.loads(batch), refs, now)
        standin_us = (time.perf_counter() - started) / n * 1e6
        print(f"{kind:6} {normalize_us:13.1f} {serialize_us:13.1f} {standin_us:12.1f}")
        if profiler is not None:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    run(args.kinds.split(","), args.count, args.profile)


if __name__ == "__main__":
    main()
