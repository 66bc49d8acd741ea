"""A DeepStream full-schema stream on real Kafka, through a consumer process, into the API stand-in.

Messages are built as ``nvmsgconv`` (payload-type 0) writes them, one object per message, several
sensors and several objects per frame, and produced keyed by ``sensor.id`` as ``nvmsgbroker`` does.
One route names ``format: deepstream``, the other detects it (``auto``). Every event is looked up
at the stand-in by the eventId the consumer derives from ``messageid``, with its class, box,
confidence, streamId, externalId, capture time and the sensor's frame; malformed messages are in the
dead-letter topic with their original bytes and reason.

DeepStream messages carry no image, and the API drops annotations without one (contract §3.3), so
the routes fetch each sensor's current frame from a local HTTP server by ``image_url``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumer.identity import event_id_for
from tests.support.corpus import CorpusMessage
from tests.support.image_host import ImageHost
from tests.support.images import jpeg_bytes
from tests.support.process import wait_until
from tests.support.stack import Stack, open_stack
from tests.support.transports import KafkaTransport

pytestmark = pytest.mark.e2e

DRAIN_DEADLINE = 15.0
SENSORS = ("dock-cam-1", "dock-cam-2", "gate-cam")
FRAMES = 6
OBJECTS_PER_FRAME = 3
UNTRACKED = "18446744073709551615"
# The text attributes of each class's sub-object that become classifications (R4), in order.
ATTRIBUTES = {"person": ["female"], "vehicle": ["truck", "red"], "forklift": []}

ROUTES = """
unrouted: dead_letter
routes:
  - name: deepstream-named
    match_regex: '{prefix}\\.named\\.(?P<site>[a-z0-9-]+)'
    format: deepstream
    event_type: custom
    use_case: custom
    image_url: "{images}/sensors/{{sensor_id}}/frame.jpg"
    fields: {{custom_value: "{{label}}", device_id: "{{site}}"}}
  - name: deepstream-auto
    match_regex: '{prefix}\\.auto\\.(?P<site>[a-z0-9-]+)'
    event_type: custom
    use_case: custom
    image_url: "{images}/sensors/{{sensor_id}}/frame.jpg"
    fields: {{custom_value: "{{label}}", device_id: "{{site}}"}}
"""


@dataclass(frozen=True, slots=True)
class Expected:
    """What the event of one valid message must look like at the stand-in."""

    message: CorpusMessage
    messageid: str
    label: str
    box: tuple[float, float, float, float]  # center x, center y, width, height
    confidence: float
    sensor: str
    captured: datetime

    @property
    def event_id(self) -> str:
        """The consumer's eventId: the publisher's own id, here ``messageid`` (docs/formats.md)."""
        return event_id_for(
            publisher_id=self.messageid, topic=self.message.topic, payload=self.message.payload
        )


def _object(rng: random.Random, index: int) -> tuple[dict[str, Any], str, float, tuple[int, int, int, int]]:
    """One ``object``: typed (person/vehicle, with confidence) or label-as-key without a confidence."""
    left, top = rng.randint(0, 1600), rng.randint(0, 900)
    right, bottom = left + rng.randint(10, 300), top + rng.randint(10, 170)
    bbox = {"topleftx": left, "toplefty": top, "bottomrightx": right, "bottomrighty": bottom}
    tracking = str(100 + index) if index % 4 else UNTRACKED
    kind = index % 3
    if kind == 0:
        confidence = round(rng.uniform(0.3, 1.0), 4)
        details: dict[str, Any] = {"gender": "female", "age": 30, "hair": "", "confidence": confidence}
        label = "person"
    elif kind == 1:
        confidence = round(rng.uniform(0.3, 1.0), 4)
        details = {"type": "truck", "make": "", "color": "red", "license": "XY123", "confidence": confidence}
        label = "vehicle"
    else:  # deepstream-test5's FrameMeta path: the detector label as the key, no confidence
        confidence, details, label = 0.0, {}, "forklift"
    obj = {"id": tracking, "speed": 0.0, "direction": 0.0, "orientation": 0.0, label: details, "bbox": bbox}
    return obj, label, confidence, (left, top, right, bottom)


def _stream(prefix: str, kind: str, seed: int) -> tuple[list[Expected], list[CorpusMessage]]:
    """Valid messages of every sensor (several objects per frame), then malformed ones."""
    rng = random.Random(seed)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    valid: list[Expected] = []
    index = 0
    for frame in range(FRAMES):
        for sensor in SENSORS:
            captured = start + timedelta(milliseconds=frame * 33 + SENSORS.index(sensor))
            for _ in range(OBJECTS_PER_FRAME):
                index += 1
                obj, label, confidence, (left, top, right, bottom) = _object(rng, index)
                messageid = f"{kind}-{seed}-{index:04d}-{rng.getrandbits(32):08x}"
                document = {
                    "messageid": messageid,
                    "mdsversion": "1.0",
                    "@timestamp": captured.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "sensor": {"id": sensor, "type": "Camera", "description": "loading dock"},
                    "object": obj,
                    "event": {"id": f"ev-{index}", "type": "moving"},
                    "videoPath": "",
                }
                message = CorpusMessage(
                    topic=f"{prefix}.{kind}.site-a",
                    payload=orjson.dumps(document),
                    event_type="custom",
                    reason=None,
                    key=sensor.encode(),
                )
                box = ((left + right) / 2, (top + bottom) / 2, float(right - left), float(bottom - top))
                valid.append(Expected(message, messageid, label, box, confidence, sensor, captured))
    return valid, _malformed(prefix, kind, valid[0].message.payload)


def _malformed(prefix: str, kind: str, good: bytes) -> list[CorpusMessage]:
    """Broken variants of a valid message, each with the reason it must be dead-lettered with."""
    topic = f"{prefix}.{kind}.site-a"

    def variant(change: Any, reason: str, tag: str) -> CorpusMessage:
        document = orjson.loads(good)
        document["messageid"] = f"{kind}-broken-{tag}"
        change(document)
        return CorpusMessage(topic, orjson.dumps(document), None, reason, key=b"dock-cam-1")

    def drop_corner(d: dict[str, Any]) -> None:
        del d["object"]["bbox"]["topleftx"]

    def text_confidence(d: dict[str, Any]) -> None:
        d["object"] = {"person": {"confidence": "high"}, "bbox": d["object"]["bbox"]}

    def numeric_messageid(d: dict[str, Any]) -> None:
        d["messageid"] = 42

    def bbox_list(d: dict[str, Any]) -> None:
        d["object"]["bbox"] = [1, 2, 3, 4]

    def no_mdsversion(d: dict[str, Any]) -> None:
        del d["mdsversion"]

    nan = good.replace(b'"topleftx":', b'"topleftx":NaN,"was":', 1).replace(
        b'"messageid":"', f'"messageid":"{kind}-broken-nan'.encode(), 1
    )
    broken = [
        variant(drop_corner, "missing_field", "corner"),
        variant(text_confidence, "invalid_type", "confidence"),
        variant(numeric_messageid, "invalid_type", "messageid"),
        CorpusMessage(topic, nan, None, "non_finite_number", key=b"dock-cam-1"),
        CorpusMessage(topic, good[: len(good) // 2], None, "invalid_json", key=b"dock-cam-1"),
    ]
    if kind == "named":
        broken.append(variant(bbox_list, "invalid_type", "bbox"))
    else:
        # Detected: without its mdsversion mark a message is no DeepStream message, nor any other.
        broken.append(variant(no_mdsversion, "unknown_format", "mark"))
    return broken


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    with open_stack(KafkaTransport(kafka_bootstrap), tmp_path, drain_deadline=DRAIN_DEADLINE) as built:
        yield built


def test_deepstream_stream_keyed_by_sensor_becomes_events(stack: Stack) -> None:
    prefix = stack.transport.topics.prefix
    frames = {sensor: jpeg_bytes(64, 48, (40 * n, 90, 200 - 40 * n)) for n, sensor in enumerate(SENSORS)}
    with ImageHost({f"/sensors/{s}/frame.jpg": data for s, data in frames.items()}) as images:
        stack.routes.write_text(ROUTES.format(prefix=prefix.replace("-", "\\-"), images=images.base_url))
        named, named_bad = _stream(prefix, "named", seed=31)
        auto, auto_bad = _stream(prefix, "auto", seed=32)
        valid, invalid = named + auto, named_bad + auto_bad
        assert len({e.event_id for e in valid}) == len(valid)
        stack.transport.prepare([e.message for e in valid])
        consumer = stack.consumer("deepstream", **{"images.url_allowed_hosts": ["127.0.0.1"]}).start()
        consumer.wait_ready()
        # Interleaved as one camera pipeline per sensor would produce them, malformed ones among them.
        messages = [e.message for e in valid]
        for position, bad in enumerate(invalid):
            messages.insert(position * 7 + 3, bad)
        stack.transport.publish(messages)

        wanted = {e.event_id for e in valid}
        dead_wanted = {(m.payload, m.reason) for m in invalid}
        wait_until(
            lambda: (
                wanted <= stack.api.events().keys()
                and dead_wanted <= {(r.payload, r.reason) for r in stack.dead_letters()}
            ),
            120,
            "every DeepStream event delivered and every malformed message dead-lettered",
            0.5,
        )
        assert consumer.terminate(DRAIN_DEADLINE + 10) == 0, consumer.log_tail()

    events = stack.api.events()
    uploads = stack.api.uploads()
    assert events.keys() == wanted, "an event arrived that no message asked for"
    for expected in valid:
        body = events[expected.event_id]
        assert body["eventType"] == "custom"
        assert body["streamId"] == expected.sensor
        assert body["deviceId"] == "site-a"
        assert body["eventData"]["externalId"] == expected.messageid
        assert body["eventData"]["value"] == expected.label
        assert datetime.fromisoformat(body["timestamp"]) == expected.captured
        (image,) = body["images"]
        assert uploads[image["inputSourceId"]] == frames[expected.sensor]
        (detection,) = image["objectDetections"]
        x, y, width, height = expected.box
        assert detection == {
            "class": expected.label,
            "x": x,
            "y": y,
            "width": width,
            "height": height,
            "confidence": expected.confidence,
        }
        attributes = [{"class": name, "confidence": 0.0} for name in ATTRIBUTES[expected.label]]
        assert image.get("classifications", []) == attributes
        document = orjson.loads(expected.message.payload)
        tracking = document["object"]["id"]
        metadata = body.get("customMetadata", {})
        assert metadata.get("tracking_id") == (None if tracking == UNTRACKED else tracking)
        assert metadata["ds_event_type"] == "moving"
    dead = [(r.payload, r.reason) for r in stack.dead_letters()]
    assert sorted(dead) == sorted((m.payload, m.reason) for m in invalid)
