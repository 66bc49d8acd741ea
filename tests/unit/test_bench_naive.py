"""The bench's naive peer (bench/naive.py) makes the very events the consumer makes from ``od``."""

from __future__ import annotations

import orjson
import pytest

from bench.messages import Naming, Payloads, inbound_messages, routing_table
from bench.naive import to_event
from consumer import wire
from consumer.config import ImagesConfig, LimitsConfig
from consumer.model import VisionEvent
from consumer.normalize import Normalizer


@pytest.mark.parametrize("transport", ["kafka", "mqtt"])
def test_naive_event_equals_the_consumers_wire_event(transport: str) -> None:
    # A peer that made other (smaller, fewer) events would be measured doing less work.
    naming = Naming("peer", transport)
    normalizer = Normalizer(routing_table(naming), LimitsConfig(), ImagesConfig())
    messages = inbound_messages(naming, Payloads("peer", "ve-img-frame"), "od", 64)
    for message in messages:
        event = normalizer.normalize(message)
        assert isinstance(event, VisionEvent)
        source_id = event.input_image.source_id if event.input_image is not None else None
        ours = orjson.loads(orjson.dumps(wire.cloud_event(event, None, source_id)))
        device = "kafka" if transport == "kafka" else message.topic.split("/")[2]
        assert to_event(message.topic, message.payload, device) == ours


def test_naive_event_has_no_validation() -> None:
    # Naive by design: a message without predictions is not dead-lettered, it raises.
    with pytest.raises(KeyError):
        to_event("t", b'{"frame": {"source_id": "x"}}', "kafka")
