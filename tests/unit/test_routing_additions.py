"""Route additions for every format: ``when``, ``class_map``, converter options, context names, image URLs."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from consumer.config import BatchConfig
from consumer.errors import ConfigError, MessageError, Reason
from consumer.metrics import Metrics
from consumer.model import InboundMessage, VisionEvent
from consumer.normalize import Skipped, SkipReason
from consumer.pipeline import Pipeline
from tests.support.doubles import MemoryDeadLetters, MemorySink
from tests.support.messages import message, normalizer, routes

EDGE = Path(__file__).parent / "fixtures" / "edge"

# Only the messages of a tracked object's end (the DeepStream full schema says "entry", "moving", "exit"...).
EXIT_ROUTES = """
routes:
  - name: exits
    match: "deepstream/{sensor}"
    when: "event.type == 'exit'"
    event_type: custom
    use_case: traffic
    fields: {custom_value: {select: object.id}}
"""


def _deepstream(kind: str = "exit", **changes: Any) -> dict[str, Any]:
    """The spec's test4 vehicle, captured now (the timestamp window holds outside ``inspect``)."""
    document: dict[str, Any] = json.loads((EDGE / "deepstream_full_test4_vehicle.json").read_text())
    document["@timestamp"] = datetime.now(UTC).isoformat()
    document["event"]["type"] = kind
    document.update(changes)
    return document


def _event(result: VisionEvent | Skipped) -> VisionEvent:
    assert isinstance(result, VisionEvent), result
    return result


# -- when ------------------------------------------------------------------------------------------


def test_when_false_settles_the_message_as_filtered_and_true_lets_it_through() -> None:
    n = normalizer(EXIT_ROUTES)
    assert n.normalize(message("deepstream/cam", _deepstream("entry"))) == Skipped(SkipReason.WHEN, "exits")
    assert n.normalize(message("deepstream/cam", _deepstream("moving"))) == Skipped(SkipReason.WHEN, "exits")
    event = _event(n.normalize(message("deepstream/cam", _deepstream("exit"))))
    assert event.event_data["value"] == "18446744073709551615"


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("missing", False),  # null
        ("empty_list", False),
        ("empty_text", False),
        ("empty_object", False),
        ("zero", True),  # JMESPath: 0 is true
        ("items", True),
        ("flag", False),
    ],
)
def test_when_follows_jmespath_truth(condition: str, expected: bool) -> None:
    n = normalizer(
        "routes: [{name: r, match: 'a', when: 'meta." + condition + "', event_type: custom, use_case: u,"
        " fields: {custom_value: x}}]"
    )
    meta = {"empty_list": [], "empty_text": "", "empty_object": {}, "zero": 0, "items": [1], "flag": False}
    result = n.normalize(message("a", {"predictions": [], "image": {"width": 4, "height": 4}, "meta": meta}))
    assert isinstance(result, VisionEvent) is expected


def test_when_is_checked_before_the_message_is_converted() -> None:
    # An unknown shape would be dead-lettered; a false condition settles it first, without converting.
    n = normalizer("routes: [{name: r, match: 'a', when: 'ok', event_type: custom, use_case: u}]")
    assert n.normalize(message("a", {"something": "else"})) == Skipped(SkipReason.WHEN, "r")


def test_when_that_cannot_be_evaluated_dead_letters_with_a_reason() -> None:
    n = normalizer("routes: [{name: r, match: a, when: 'length(n) > `1`', event_type: custom, use_case: u}]")
    with pytest.raises(MessageError) as caught:
        n.normalize(message("a", {"n": 5}))
    assert caught.value.reason is Reason.INVALID_VALUE
    assert "'r'" in caught.value.detail and "when" in caught.value.detail


@pytest.mark.parametrize("bad", ["type ==", "", "[?"])
def test_when_syntax_error_is_a_config_error_naming_the_route(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"routes\[0\] \(exits\)\.when: invalid JMESPath"):
        routes(f'routes: [{{name: exits, match: a, when: "{bad}"}}]')


def test_when_false_is_acknowledged_counted_as_filtered_when_and_not_dead_lettered() -> None:
    async def scenario() -> None:
        sink, dead = MemorySink(), MemoryDeadLetters()
        metrics = Metrics(CollectorRegistry())
        pipeline = Pipeline(normalizer(EXIT_ROUTES), sink, dead, metrics, BatchConfig(linger_ms=0))
        acked: list[int] = []
        messages: list[InboundMessage] = [
            message("deepstream/cam", _deepstream(kind)) for kind in ("entry", "moving", "exit")
        ]
        for index, msg in enumerate(messages):
            msg.ack = lambda index=index: acked.append(index)  # type: ignore[misc]
        await pipeline.submit(messages)
        await pipeline.flush()
        assert sorted(acked) == [0, 1, 2]
        assert dead.records == []
        assert [len(batch) for batch in sink.batches] == [1]
        labels = {"route": "exits", "outcome": "filtered_when"}
        assert metrics.registry.get_sample_value("vision_events_messages_normalized_total", labels) == 2
        labels = {"route": "exits", "outcome": "event"}
        assert metrics.registry.get_sample_value("vision_events_messages_normalized_total", labels) == 1

    asyncio.run(scenario())
