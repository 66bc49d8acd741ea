"""Where one event's CPU time goes: ``python -m bench.budget [--consumer-cpu-us N]``.

Splits the cost of an ``od`` event (Roboflow response, 10 boxes) into stages, each measured on
its own in this process (pinned to the second CPU, best of three):

- decode: bytes to JSON (``decode_message``: orjson and the nesting check);
- convert: the Roboflow response to annotations (``convert_roboflow``);
- route, values, rules, checks, id: the rest of ``Normalizer.normalize``;
- serialize: the cloud body of the event (``wire.cloud_event`` and ``orjson.dumps``);
- batching, HTTP, acknowledgement, metrics: ``bench.inproc`` (the real pipeline and cloud sink
  into the stand-in) minus the stages above;
- transport (client library, source thread, hand-off): the consumer process's CPU per event
  from a ``python -m bench`` run (``--consumer-cpu-us``) minus ``bench.inproc``.

Two reference figures come with it: the floor (what any Python consumer does per message at
least: parse the bytes, build one small dict, serialize it) and the machine's speed
(``sum(range(1000))``, to compare machines: divide this machine's figures by the ratio).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import orjson

from bench.inproc import run as run_inproc
from bench.messages import Naming, Payloads, inbound_messages, routing_table
from bench.procs import cpu_count
from consumer import wire
from consumer.app import tune_garbage_collector
from consumer.config import ImagesConfig, LimitsConfig
from consumer.decode import decode_message
from consumer.formats.roboflow import convert_roboflow
from consumer.model import VisionEvent
from consumer.normalize import Normalizer

_SOURCE_ID = "ve-img-budget000000000"


def _best_us(work: Callable[[], object], count: int, repeats: int = 3) -> float:
    """Best of ``repeats`` runs of ``work`` (which handles ``count`` items), in us per item."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best / count * 1e6


def machine_speed_us() -> float:
    """``sum(range(1000))`` in us (best of five): a plain measure of this core's Python speed."""
    return min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6


def stages(count: int) -> dict[str, float]:
    """Per-event us of decode, convert, the rest of normalize, serialize, and the floor."""
    naming = Naming("budget", "kafka")
    payloads = Payloads("budget", _SOURCE_ID)
    normalizer = Normalizer(routing_table(naming), LimitsConfig(), ImagesConfig())
    limits = LimitsConfig()
    messages = inbound_messages(naming, payloads, "od", count)
    payload_list = [m.payload for m in messages]

    def decode_all() -> None:
        for payload in payload_list:
            decode_message(payload, max_bytes=limits.max_message_bytes, max_depth=limits.max_json_depth)

    def convert_all() -> None:
        for document in documents:
            convert_roboflow(document, "")

    def normalize_all() -> None:
        for message in messages:
            normalizer.normalize(message)

    def serialize_all() -> None:
        for event in real:
            orjson.dumps(wire.cloud_event(event, None, _SOURCE_ID))

    documents = [orjson.loads(p) for p in payload_list]
    events = [normalizer.normalize(m) for m in messages]
    real = [e for e in events if isinstance(e, VisionEvent)]
    if len(real) != count:
        raise RuntimeError(f"{count - len(real)} messages made no event")

    def floor() -> None:
        # The least any consumer does per message: parse, keep a few fields, serialize.
        for payload in payload_list:
            document = orjson.loads(payload)
            orjson.dumps({"id": document["inference_id"], "predictions": document["predictions"]})

    # Results are dropped as they are made, as in the consumer (a batch at a time), and the
    # collector is tuned as the consumer tunes it: otherwise collections scanning everything kept
    # alive here would be measured instead of the work.
    tune_garbage_collector()
    figures = {
        "decode": _best_us(decode_all, count),
        "convert": _best_us(convert_all, count),
        "normalize": _best_us(normalize_all, count),
        "serialize": _best_us(serialize_all, count),
        "floor": _best_us(floor, count),
    }
    figures["normalize_rest"] = figures["normalize"] - figures["decode"] - figures["convert"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.budget", description=__doc__)
    parser.add_argument("--count", type=int, default=30_000)
    parser.add_argument(
        "--consumer-cpu-us",
        type=float,
        help="the consumer's CPU us per od event from a `python -m bench` run (CPU s / 1000 events x 1000)",
    )
    args = parser.parse_args()
    if cpu_count() > 1:
        os.sched_setaffinity(0, {1})
    speed = machine_speed_us()
    figures = stages(args.count)
    with tempfile.TemporaryDirectory() as tmp:
        inproc = run_inproc("od", args.count, None, Path(tmp))
    http_and_rest = inproc.cpu_us - figures["normalize"] - figures["serialize"]
    rows: list[tuple[str, float]] = [
        ("decode (orjson, nesting check)", figures["decode"]),
        ("convert (Roboflow response to annotations)", figures["convert"]),
        ("route, values, rules, checks, event id", figures["normalize_rest"]),
        ("serialize (cloud body)", figures["serialize"]),
        ("batching, HTTP, acknowledgement, metrics", http_and_rest),
    ]
    if args.consumer_cpu_us is not None:
        rows.append(("transport (client, source thread, hand-off)", args.consumer_cpu_us - inproc.cpu_us))
    total = sum(us for _, us in rows)
    print(f"machine: sum(range(1000)) takes {speed:.1f} us")
    print(f"floor: parse + one small dict + serialize = {figures['floor']:.1f} us per message\n")
    print("| stage (od, 10 boxes) | us per event | share |")
    print("|---|---:|---:|")
    for name, us in rows:
        print(f"| {name} | {us:.1f} | {100 * us / total:.0f} % |")
    print(f"| **total** | **{total:.1f}** | -> {1e6 / total:,.0f} events/s per core |")


if __name__ == "__main__":
    main()
