"""The bench's Benthos peer (bench/peers.py) makes the very events the consumer makes from ``od``.

Runs the real Benthos binary (scripts/build-benthos.sh) over the mapping the bench gives it: a peer
that made other (smaller, fewer) events would be measured doing less work than the consumer.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest
import yaml

from bench import peers
from bench.messages import Naming, Payloads, inbound_messages, routing_table
from consumer import wire
from consumer.config import ImagesConfig, LimitsConfig
from consumer.model import VisionEvent
from consumer.normalize import Normalizer
from tests.support.ci import missing

pytestmark = pytest.mark.integration


def _benthos() -> Path:
    binary = peers.benthos_binary()
    if binary is None:
        missing("Benthos is not built: run scripts/build-benthos.sh")
    return binary


@pytest.mark.parametrize("transport", ["kafka", "mqtt"])
def test_benthos_event_equals_the_consumers_wire_event(transport: str, tmp_path: Path) -> None:
    binary = _benthos()
    naming = Naming("peer", transport)
    normalizer = Normalizer(routing_table(naming), LimitsConfig(), ImagesConfig())
    messages = inbound_messages(naming, Payloads("peer", "ve-img-frame"), "od", 64)
    # Each stdin line is "topic<TAB>payload": a first mapping sets the topic as the input's
    # metadata (kafka_topic or mqtt_topic) and leaves the payload bytes as the message.
    meta = f"{transport}_topic"
    split = (
        f'meta {meta} = content().string().split("\\t").index(0)\n'
        'root = content().string().split("\\t").index(1)\n'
    )
    config = {
        "input": {"stdin": {"codec": "lines"}},
        "pipeline": {"processors": [{"mapping": split}, {"mapping": peers.mapping(transport)}]},
        "output": {"stdout": {"codec": "lines"}},
        "logger": {"level": "ERROR"},
        "http": {"enabled": False},
    }
    path = tmp_path / "benthos.yaml"
    path.write_text(yaml.safe_dump(config))
    lines = b"".join(m.topic.encode() + b"\t" + m.payload + b"\n" for m in messages)
    done = subprocess.run(
        [str(binary), "-c", str(path)], input=lines, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    theirs = [orjson.loads(line) for line in done.stdout.splitlines() if line.startswith(b"{")]
    assert len(theirs) == len(messages), done.stdout[:2000]
    # Benthos may write them in another order: each is compared with the event of its message.
    by_id = {event["eventData"]["externalId"]: event for event in theirs}
    for message in messages:
        ours = normalizer.normalize(message)
        assert isinstance(ours, VisionEvent)
        source_id = ours.input_image.source_id if ours.input_image is not None else None
        expected = orjson.loads(orjson.dumps(wire.cloud_event(ours, None, source_id)))
        assert by_id[expected["eventData"]["externalId"]] == expected
