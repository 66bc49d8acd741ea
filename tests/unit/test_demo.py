"""``make demo``: its samples include one message of each edge publisher, each reaching an event."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from consumer.config import ImagesConfig, LimitsConfig
from consumer.demo import SAMPLES, run_demo, sample_messages
from consumer.normalize import Normalizer, Skipped, SkipReason
from consumer.routing import MessageFormat, load_routes
from tests.support.messages import message

# topic -> (format detected or named by the route, route, event type, streamId)
EDGE_SAMPLES = {
    "deepstream/plant-1/events": (
        MessageFormat.DEEPSTREAM,
        "deepstream-vehicles",
        "safety_alert",
        "gate-cam-2",
    ),
    "deepstream/plant-1/frames": (
        MessageFormat.DEEPSTREAM_MINIMAL,
        "deepstream-gate-count",
        "inventory_count",
        "gate-cam-2",
    ),
    "dlstreamer/dock-cam-1/detections": (
        MessageFormat.DLSTREAMER,
        "dlstreamer-dock",
        "custom",
        "rtsp://192.0.2.10:554/stream1",
    ),
    "dlsps/line-3/results": (MessageFormat.DLSTREAMER, "dlsps-pallet-defects", "quality_check", None),
    "frigate/events": (MessageFormat.FRIGATE, "frigate-people", "safety_alert", "yard"),
    "frigate/yard/person": (MessageFormat.FRIGATE, "frigate-counts", "inventory_count", None),
    "axis/B8A44F000001/scene": (MessageFormat.AXIS, "axis-lobby", "inventory_count", "B8A44F000001"),
}


def test_every_edge_publisher_has_a_sample_that_becomes_its_event() -> None:
    now = time.time() - 30
    table = load_routes(SAMPLES / "routes.yaml")
    normalizer = Normalizer(table, LimitsConfig(), ImagesConfig())
    events = {}
    filtered = []
    for topic, payload in sample_messages(now=now):
        if topic not in EDGE_SAMPLES:
            continue
        fmt, route, event_type, stream = EDGE_SAMPLES[topic]
        if route != "frigate-counts":
            assert Normalizer.detect(orjson.loads(payload)) is fmt, topic
        else:
            assert next(r for r in table.routes if r.name == route).format is fmt
        result = normalizer.normalize(message(topic, payload))
        if isinstance(result, Skipped):
            filtered.append((topic, result.reason))
            continue
        assert (result.route, result.event_type.value, result.stream_id) == (route, event_type, stream)
        events[topic] = result
    assert events.keys() == EDGE_SAMPLES.keys()
    # Frigate's update is left out by the route's `when` (only `end` becomes an event).
    assert filtered == [("frigate/events", SkipReason.WHEN)]
    # Capture times are rewritten to the demo's time: the samples never fall out of the API's year.
    stamped = datetime.fromtimestamp(now, UTC)
    for topic in ("deepstream/plant-1/events", "deepstream/plant-1/frames", "axis/B8A44F000001/scene"):
        assert abs(events[topic].timestamp - stamped) < timedelta(milliseconds=1), topic
    assert abs(events["frigate/events"].timestamp - stamped) < timedelta(microseconds=2)
    # The Pipeline Server's frame is the input image, so its annotations reach the API.
    assert events["dlsps/line-3/results"].input_image is not None
    assert events["dlsps/line-3/results"].event_data["result"] == "fail"
    assert events["frigate/yard/person"].event_data["itemCount"] == 2
    assert events["axis/B8A44F000001/scene"].event_data["itemCount"] == 1


def test_demo_settles_every_sample_without_a_broker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MQTT_URL", raising=False)
    assert run_demo() == 0
    out = capsys.readouterr().out
    assert f"All {len(sample_messages())} messages settled: True" in out
    # Only the deliberately broken samples are dead-lettered, none of the edge publishers'.
    assert "Dead-lettered 4 messages" in out
