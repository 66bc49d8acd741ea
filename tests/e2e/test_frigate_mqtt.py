"""Frigate ``frigate/events`` on real Mosquitto, through a consumer process, into the API stand-in.

Each tracked object goes ``new`` -> ``update`` x 2 -> ``end``, as Frigate publishes it. The route
keeps only ``end`` (``when``) and attaches Frigate's event snapshot by ``image_url`` from a loopback
HTTP server on ``images.url_allowed_hosts``, so the box is ``after.snapshot.box`` (the frame of that
snapshot). A second Frigate instance's route keeps every message type but one event per tracked
object, with a cooldown keyed by ``{camera}:{tracking_id}``. Nothing is dead-lettered.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumer.identity import event_id_for
from tests.support.corpus import CorpusMessage
from tests.support.image_host import ImageHost
from tests.support.images import jpeg_bytes
from tests.support.process import ConsumerProcess, wait_until
from tests.support.stack import Stack, open_stack
from tests.support.transports import MqttTransport

pytestmark = pytest.mark.e2e

DRAIN_DEADLINE = 15.0
CAMERAS = ("front_door", "driveway")
OBJECTS_PER_CAMERA = 3
TYPES = ("new", "update", "update", "end")

ROUTES = """
unrouted: dead_letter
routes:
  - name: frigate-ended
    match: "{prefix}/frigate/events"
    when: "type == 'end'"
    event_type: custom
    use_case: safety
    image_url: "{images}/api/events/{{id}}/snapshot.jpg"
    fields: {{custom_value: "{{label}}", device_id: "{{camera}}"}}
  - name: frigate-once
    match: "{prefix}/frigate2/events"
    event_type: custom
    use_case: safety
    cooldown: {{seconds: 3600, key: "{{camera}}:{{tracking_id}}"}}
    fields: {{custom_value: "{{label}}", device_id: "{{camera}}"}}
"""


@dataclass(frozen=True, slots=True)
class Tracked:
    """One tracked object's messages, and what its ``end`` event must carry."""

    object_id: str
    camera: str
    label: str
    messages: list[CorpusMessage]  # new, update, update, end
    snapshot_box: tuple[float, float, float, float]  # center x, center y, width, height
    snapshot_score: float
    snapshot_time: float

    def event_id(self, index: int) -> str:
        """The consumer's eventId of message ``index``: the object's id, type and frame time."""
        message = self.messages[index]
        after = orjson.loads(message.payload)["after"]
        own = f"{self.object_id}:{TYPES[index]}:{float(after['frame_time'])!r}"
        return event_id_for(publisher_id=own, topic=message.topic, payload=message.payload)


def _tracked(rng: random.Random, topic: str, camera: str, number: int, start: float) -> Tracked:
    """``new``, two ``update`` and ``end`` of one object, its box moving and its best snapshot kept."""
    first = start + number * 2.5
    object_id = f"{first:.6f}-{rng.getrandbits(24):06x}"
    label = ("person", "car", "dog")[number % 3]
    snapshot: dict[str, Any] = {}
    before: dict[str, Any] = {}
    messages = []
    for step, kind in enumerate(TYPES):
        left, top = 100 + 40 * step + number, 200 + 10 * step
        box = [left, top, left + 120 + number, top + 300]
        score = round(0.6 + 0.1 * step, 4) if kind != "end" else 0.71
        frame_time = round(first + 0.5 * step, 6)
        if not snapshot or score > snapshot["score"]:  # Frigate keeps the best-scoring frame
            snapshot = {"frame_time": frame_time, "box": list(box), "area": 36000, "score": score}
        after = {
            "id": object_id,
            "camera": camera,
            "frame_time": frame_time,
            "label": label,
            "sub_label": None,
            "top_score": max(score, before.get("top_score", 0.0)),
            "false_positive": False,
            "start_time": first,
            "end_time": frame_time if kind == "end" else None,
            "score": score,
            "box": box,
            "area": 36000,
            "region": [0, 0, 640, 640],
            "current_zones": ["yard"],
            "entered_zones": ["yard"],
            "stationary": False,
            "has_clip": True,
            "has_snapshot": True,
            "current_attributes": [],
            "snapshot": dict(snapshot),
        }
        payload = orjson.dumps({"type": kind, "before": before or after, "after": after})
        messages.append(CorpusMessage(topic, payload, "custom" if kind == "end" else None, None))
        before = after
    x1, y1, x2, y2 = snapshot["box"]
    center = ((x1 + x2) / 2, (y1 + y2) / 2, float(x2 - x1), float(y2 - y1))
    return Tracked(object_id, camera, label, messages, center, snapshot["score"], snapshot["frame_time"])


def _events(topic: str, seed: int) -> list[Tracked]:
    rng = random.Random(seed)
    start = datetime.now(UTC).timestamp() - 600
    return [
        _tracked(rng, topic, camera, number, start)
        for camera in CAMERAS
        for number in range(OBJECTS_PER_CAMERA)
    ]


def _interleaved(tracked: list[Tracked]) -> list[CorpusMessage]:
    """Every object's messages in its own order, the objects' streams overlapping as they do live."""
    return [t.messages[step] for step in range(len(TYPES)) for t in tracked]


def _outcome(consumer: ConsumerProcess, outcome: str, route: str) -> float:
    metrics = consumer.metrics()
    return metrics.get(f'vision_events_messages_normalized_total{{outcome="{outcome}",route="{route}"}}', 0.0)


@pytest.fixture
def stack(mqtt_url: str, tmp_path: Path) -> Iterator[Stack]:
    with open_stack(MqttTransport(mqtt_url), tmp_path, drain_deadline=DRAIN_DEADLINE) as built:
        yield built


def test_frigate_events_end_only_with_snapshot(stack: Stack) -> None:
    topics = stack.transport.topics
    ended = _events(topics.topic("frigate", "events"), seed=41)
    once = _events(topics.topic("frigate2", "events"), seed=42)
    snapshots = {
        f"/api/events/{t.object_id}/snapshot.jpg": jpeg_bytes(48, 32, (20 * n, 100, 240 - 20 * n))
        for n, t in enumerate(ended)
    }
    with ImageHost(snapshots) as images:
        stack.routes.write_text(ROUTES.format(prefix=topics.prefix, images=images.base_url))
        consumer = stack.consumer("frigate", **{"images.url_allowed_hosts": ["127.0.0.1"]}).start()
        consumer.wait_ready()
        stack.transport.publish(_interleaved(ended) + _interleaved(once))

        end_ids = {t.event_id(len(TYPES) - 1) for t in ended}
        not_end = len(ended) * (len(TYPES) - 1)
        suppressed = len(once) * (len(TYPES) - 1)
        wait_until(
            lambda: (
                end_ids <= stack.api.events().keys()
                and _outcome(consumer, "filtered_when", "frigate-ended") == not_end
                and _outcome(consumer, "suppressed", "frigate-once") == suppressed
                and consumer.metric_total("vision_events_events_delivered_total") == len(ended) + len(once)
            ),
            60,
            "the end events delivered, the other messages filtered or suppressed",
            0.3,
        )
        assert consumer.metric_total("vision_events_messages_received_total") == 2 * len(TYPES) * len(ended)
        assert consumer.metric_total("vision_events_dead_letters_total") == 0
        assert consumer.terminate(DRAIN_DEADLINE + 10) == 0, consumer.log_tail()
        # Only the kept messages' snapshots were fetched: a filtered message costs no request.
        assert set(images.requested()) == set(snapshots)

    events = stack.api.events()
    uploads = stack.api.uploads()
    for tracked in ended:
        body = events[tracked.event_id(len(TYPES) - 1)]
        assert body["eventType"] == "custom"
        assert body["streamId"] == tracked.camera
        assert body["deviceId"] == tracked.camera
        assert body["eventData"]["externalId"] == tracked.object_id
        assert body["eventData"]["value"] == tracked.label
        # The snapshot's frame time, not the end message's: the box and the image are that frame's.
        assert datetime.fromisoformat(body["timestamp"]) == datetime.fromtimestamp(tracked.snapshot_time, UTC)
        assert body["customMetadata"]["frigate_type"] == "end"
        assert body["customMetadata"]["tracking_id"] == tracked.object_id
        (image,) = body["images"]
        assert uploads[image["inputSourceId"]] == snapshots[f"/api/events/{tracked.object_id}/snapshot.jpg"]
        x, y, width, height = tracked.snapshot_box
        assert image["objectDetections"] == [
            {
                "class": tracked.label,
                "x": x,
                "y": y,
                "width": width,
                "height": height,
                "confidence": tracked.snapshot_score,
            }
        ]
    # The cooldown route: exactly one event per tracked object, one of that object's messages.
    for tracked in once:
        own = {tracked.event_id(i) for i in range(len(TYPES))}
        assert len(own & events.keys()) == 1, tracked.object_id
    other_ids = {tracked.event_id(i) for tracked in ended for i in range(len(TYPES) - 1)}
    assert not other_ids & events.keys(), "a new/update message became an event"
    assert len(events) == len(ended) + len(once)
    assert stack.dead_letters() == []
