"""The limit: how fast the same client library reads the same messages with no processing at all.

``python -m bench.raw kafka --bootstrap B --topic T --count N`` and
``python -m bench.raw mqtt --url U --client-id C --count N``: run pinned to the consumer's core,
read ``count`` messages, print one JSON line ``{"count", "seconds", "rate", "cpu_seconds"}``.
``seconds`` runs from the first message to the last; connecting is not counted.

Kafka: a bare ``confluent_kafka.Consumer`` with the consumer's fetch settings, the topic's
partitions assigned from the beginning (no group join to wait for), ``consume()`` in batches of
``--batch`` and the value of each message touched. MQTT: a paho 2 MQTT 5 client resuming the
persistent session the benchmark prepared (so the broker queued the messages for it), with the same
Receive Maximum as the consumer; paho acknowledges each QoS 1 message after ``on_message``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any

import orjson
import paho.mqtt.client as paho
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def kafka(args: argparse.Namespace) -> dict[str, Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"bench-raw-{os.getpid()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            **orjson.loads(args.settings),
        }
    )
    metadata = consumer.list_topics(args.topic, timeout=10)
    partitions = sorted(metadata.topics[args.topic].partitions)
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])
    count = 0
    size = 0
    first = 0.0
    cpu0 = 0.0
    deadline = time.monotonic() + args.timeout
    while count < args.count and time.monotonic() < deadline:
        batch = consumer.consume(num_messages=args.batch, timeout=1.0)
        if batch and not count:
            first = time.monotonic()
            cpu0 = _cpu()
        for message in batch:
            if message.error() is None:
                size += len(message.value() or b"")
                count += 1
    last = time.monotonic()
    cpu = _cpu() - cpu0
    consumer.close()
    return _result(count, first, last, cpu, size)


def mqtt(args: argparse.Namespace) -> dict[str, Any]:
    host, _, port = args.url.removeprefix("mqtt://").partition(":")
    state = {"count": 0, "size": 0, "first": 0.0, "last": 0.0, "cpu0": 0.0}
    done = threading.Event()

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        if not state["count"]:
            state["first"] = time.monotonic()
            state["cpu0"] = _cpu()
        state["count"] += 1
        state["size"] += len(message.payload)
        if state["count"] >= args.count:
            state["last"] = time.monotonic()
            done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id, protocol=paho.MQTTv5)
    client.on_message = on_message
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 600
    properties.ReceiveMaximum = args.receive_maximum
    client.connect(host, int(port or 1883), clean_start=False, properties=properties)
    client.loop_start()
    done.wait(args.timeout)
    last = state["last"] or time.monotonic()
    cpu = _cpu() - state["cpu0"]
    client.disconnect()
    client.loop_stop()
    return _result(int(state["count"]), state["first"], last, cpu, int(state["size"]))


def _result(count: int, first: float, last: float, cpu: float, size: int) -> dict[str, Any]:
    seconds = max(last - first, 1e-9) if count else 0.0
    return {
        "count": count,
        "seconds": round(seconds, 4),
        "rate": round(count / seconds, 1) if count > 1 else 0.0,
        "cpu_seconds": round(cpu, 3),
        "bytes": size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.raw", description=__doc__)
    sub = parser.add_subparsers(dest="transport", required=True)
    k = sub.add_parser("kafka")
    k.add_argument("--bootstrap", required=True)
    k.add_argument("--topic", required=True)
    k.add_argument("--batch", type=int, default=1000)
    k.add_argument("--settings", default="{}", help="librdkafka settings (JSON)")
    m = sub.add_parser("mqtt")
    m.add_argument("--url", required=True)
    m.add_argument("--client-id", required=True)
    m.add_argument("--receive-maximum", type=int, default=1000)
    for p in (k, m):
        p.add_argument("--count", type=int, required=True)
        p.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    result = kafka(args) if args.transport == "kafka" else mqtt(args)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
